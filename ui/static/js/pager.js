// The links of a list the API pages forward only (a page token to the next
// page): back to the first page, back to the page before (from a trail of
// the tokens of the pages before this one, kept across renders), and on to
// the next. Jobs and pipelines page from the newest; workers by id.

import { h } from './dom.js';

// hashOf is the query of a route's hash for the filters in f, empty ones
// left out: '' or '?k=v&…'.
export function hashOf(f) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v) q.set(k, v);
  const s = q.toString();
  return s ? '?' + s : '';
}

// pagerLinks returns the links for the page whose token is page (''
// for the first), given next (the next page's token, '' for none), at
// (the href of a page's token), trail (the tokens before page; the links
// keep it up to date as they are followed), and for each link its element
// id and label: [first, back, next].
export function pagerLinks({ page, next, at, trail, ids, labels }) {
  return [
    page ? h('a.button.secondary#' + ids[0], { href: at(''), onclick: () => { trail.length = 0; } }, labels[0]) : null,
    page && trail.length ? h('a.button.secondary#' + ids[1], { href: at(trail[trail.length - 1]), onclick: () => { trail.pop(); } }, labels[1]) : null,
    next ? h('a.button.secondary#' + ids[2], { href: at(next), onclick: () => { trail.push(page); } }, labels[2]) : null,
  ].filter(Boolean);
}
