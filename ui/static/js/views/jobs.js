// The jobs page: filters (state, tenant, labels), a search by id prefix
// (resolved by the server, as the CLI does) or by name (a shell pattern;
// a plain word is a name prefix), and cursor paging newest first through
// ListJobs' page token: one page of at most pageSize jobs per call, never
// the whole store. Rows change and new jobs appear live from /v1/events.

import { APIError, get } from '../api.js';
import { h } from '../dom.js';
import { subscribe } from '../events.js';
import { hashOf, pagerLinks } from '../pager.js';
import { badge, dur, jobState, labels, ms, runtime, shortId, timeEl } from '../format.js';

export const pageSize = 50;
const states = ['PENDING', 'SCHEDULED', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED'];

// newer remembers the page tokens of the pages before the one shown, so
// that "Newer" goes back without a call that pages backwards.
const newer = [];

// ranCell is how long a job ran, or has been running: while it runs,
// data-started (its start, Unix ms) lets tickRan keep it counting.
export function ranCell(tag, j) {
  const start = ms(j.startedUnixNano);
  return h(tag, start && !ms(j.finishedUnixNano) ? { 'data-started': start } : null, runtime(j));
}

// tickRan makes every running time under root (ranCell's) count, once a
// second, until signal aborts.
export function tickRan(root, signal) {
  const t = setInterval(() => {
    for (const el of root.querySelectorAll('[data-started]')) el.textContent = dur(Date.now() - Number(el.dataset.started));
  }, 1000);
  signal.addEventListener('abort', () => clearInterval(t));
}

// parseLabels turns "k=v,k2=v2" into {k: v, k2: v2}, or throws naming the
// bad part.
export function parseLabels(s) {
  const out = {};
  for (const part of (s || '').split(',').map((x) => x.trim()).filter(Boolean)) {
    const i = part.indexOf('=');
    if (i <= 0) throw new Error(`label filter "${part}": write KEY=VALUE`);
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

// globRe turns a shell pattern (path.Match) into a RegExp, to tell whether
// a job arriving live matches the name filter.
export function globRe(p) {
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\' && i + 1 < p.length) re += '\\' + p[++i];
    else if (c === '[') {
      const j = p.indexOf(']', i + 1);
      if (j < 0) { re += '\\['; continue; }
      let cls = p.slice(i + 1, j);
      if (cls.startsWith('!') || cls.startsWith('^')) cls = '^' + cls.slice(1);
      re += '[' + cls.replace(/\\/g, '\\\\') + ']';
      i = j;
    } else re += c.replace(/[.+^${}()|\]\\]/g, '\\$&');
  }
  return new RegExp('^' + re + '$');
}

// nameFilter is the name pattern a search word stands for: itself when it
// is a pattern, else every name that starts with it.
const nameFilter = (q) => (/[*?[\\]/.test(q) ? q : q + '*');

// idLike reports whether a search word could be the start of a job id
// (Crockford base32, as ULIDs are written).
const idLike = (q) => /^[0-9A-HJKMNP-TV-Z]{4,26}$/i.test(q);

export async function render(root, ctx) {
  const p = ctx.params;
  const f = { state: p.get('state') || '', tenant: p.get('tenant') || '', label: p.get('label') || '', q: p.get('q') || '', page: p.get('page') || '' };
  if (!f.page) newer.length = 0;

  const setHash = (over) => ctx.go('#/jobs' + hashOf({ ...f, ...over }));

  const tenantSel = h('select#f-tenant', { name: 'tenant', 'aria-label': 'Tenant' }, h('option', { value: '' }, 'all tenants'));
  const form = h('form.filters#job-filters', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const fd = new FormData(form);
      const q = String(fd.get('q') || '').trim();
      if (q && idLike(q)) {
        try {
          const r = await get('/v1/resolve', { kind: 'ID_KIND_JOB', prefix: q });
          if (r.id) { ctx.go('#/jobs/' + encodeURIComponent(r.id)); return; }
        } catch (e) {
          // not a job id: search names instead, unless it named several ids
          if (e instanceof APIError && e.httpStatus === 400) { ctx.flash(e); return; }
        }
      }
      newer.length = 0;
      setHash({ state: fd.get('state'), tenant: fd.get('tenant'), label: String(fd.get('label') || '').trim(), q, page: '' });
    },
  },
  h('input#f-q', { name: 'q', type: 'search', placeholder: 'id or name (prefix, or a pattern like build-*)', value: f.q, 'aria-label': 'Search' }),
  h('select#f-state', { name: 'state', 'aria-label': 'State' }, h('option', { value: '' }, 'any state'),
    states.map((s) => h('option', { value: s, selected: s === f.state }, s.toLowerCase()))),
  tenantSel,
  h('input#f-label', { name: 'label', placeholder: 'labels k=v,k2=v2', value: f.label, 'aria-label': 'Labels' }),
  h('button', { type: 'submit' }, 'Apply'),
  (f.state || f.tenant || f.label || f.q) ? h('a.button.secondary', { href: '#/jobs' }, 'Clear') : null);

  const summary = h('p.summary#jobs-summary');
  const tbody = h('tbody#jobs-body');
  const table = h('table.list.jobs', h('thead', h('tr',
    h('th.hide-s', 'ID'), h('th', 'Name'), h('th.hide-s', 'Tenant'), h('th', 'State'), h('th.hide-s', 'Attempt'),
    h('th.hide-s', 'Worker'), h('th.hide-s', 'Created'), h('th', 'Ran'), h('th.hide-m', 'Labels'))), tbody);
  const pager = h('nav.pager#jobs-pager');
  const live = h('span.live#jobs-live', { title: 'live updates from /v1/events' }, '○ connecting');
  root.append(h('div.head', h('h1', 'Jobs'), live), form, summary, h('div.scroll', table), pager);

  get('/v1/tenants', {}, ctx.signal).then((r) => {
    for (const t of r.tenants || []) {
      const n = t.tenant.name;
      tenantSel.append(h('option', { value: n, selected: n === f.tenant }, n));
    }
  }).catch(() => {
    if (f.tenant) tenantSel.append(h('option', { value: f.tenant, selected: true }, f.tenant));
  });

  // Live: every job event of the tenant shown (the server filters by
  // tenant); the other filters are checked here, so that a row whose
  // state moves out of a state filter still shows its new state. The
  // stream starts before the page is read, and what arrives meanwhile is
  // applied after it, so that no job submitted in between is missed.
  let apply = null;
  const early = [];
  subscribe(f.tenant ? { tenant: f.tenant } : {}, {
    state: (s) => { live.textContent = s === 'open' ? '● live' : '○ reconnecting'; live.classList.toggle('on', s === 'open'); },
    error: (e) => { live.textContent = '○ no live updates'; live.title = e.explain(); },
    reset: () => ctx.reload(),
    job: (j) => {
      if (apply) apply(j);
      else if (early.length < pageSize * 4) early.push(j);
    },
  }, ctx.signal);

  let lbl = {};
  try { lbl = parseLabels(f.label); } catch (e) { ctx.flash(e); }
  const q = { newestFirst: true, pageSize, pageToken: f.page, count: true };
  if (f.state) q.state = 'JOB_STATE_' + f.state;
  if (f.tenant) q.tenant = f.tenant;
  if (f.q) q.name = nameFilter(f.q);
  for (const [k, v] of Object.entries(lbl)) q[`labels[${k}]`] = v;
  const r = await get('/v1/jobs', q, ctx.signal);
  const jobs = r.jobs || [];
  const total = Number(r.total || 0);
  const onFirst = !f.page;
  summary.textContent = jobs.length === 0 ? 'No job matches.' :
    `${total ? (r.totalIsLowerBound ? 'at least ' : '') + total + ' match' + (total === 1 ? 'es' : '') + '; ' : ''}showing ${jobs.length}, newest first`;

  const rows = new Map();
  const rowOf = (j) => {
    const st = jobState(j);
    const tr = h('tr', { 'data-id': j.id, 'data-state': st, 'data-version': j.version || 0 },
      h('td.mono.id.hide-s', h('a', { href: '#/jobs/' + encodeURIComponent(j.id) }, shortId(j.id))),
      h('td.name', h('a', { href: '#/jobs/' + encodeURIComponent(j.id), title: j.id }, (j.spec && j.spec.name) || '(no name)')),
      h('td.hide-s', (j.spec && j.spec.tenant) || ''),
      h('td', badge(st)),
      h('td.hide-s.num', j.attempt || ''),
      h('td.hide-s.mono', j.worker || ''),
      h('td.hide-s', timeEl(j.createdUnixNano)),
      ranCell('td.num.ran', j),
      h('td.hide-m', labels(j.spec && j.spec.labels)));
    return tr;
  };
  for (const j of jobs) {
    const tr = rowOf(j);
    rows.set(j.id, tr);
    tbody.append(tr);
  }

  pager.replaceChildren(...pagerLinks({
    page: f.page, next: r.nextPageToken, at: (page) => '#/jobs' + hashOf({ ...f, page }), trail: newer,
    ids: ['page-newest', 'page-newer', 'page-older'], labels: ['« Newest', '‹ Newer', 'Older ›'],
  }));

  const nameRe = f.q ? globRe(nameFilter(f.q)) : null;
  const matches = (j) => {
    if (f.state && jobState(j) !== f.state) return false;
    if (f.tenant && (j.spec && j.spec.tenant) !== f.tenant) return false;
    for (const [k, v] of Object.entries(lbl)) if (((j.spec && j.spec.labels) || {})[k] !== v) return false;
    if (nameRe && !nameRe.test((j.spec && j.spec.name) || '')) return false;
    return true;
  };
  let added = 0;
  const note = h('p.note#jobs-newer', { hidden: true });
  summary.after(note);
  apply = (j) => {
    const old = rows.get(j.id);
    if (old) {
      if (Number(old.dataset.version || 0) > Number(j.version || 0)) return;
      const tr = rowOf(j);
      old.replaceWith(tr);
      rows.set(j.id, tr);
      return;
    }
    if (!onFirst || !matches(j)) return;
    const first = tbody.firstElementChild;
    if (first && first.dataset.id > j.id) return; // older than the page's newest: it is on a later page
    if (added >= pageSize) { // the page stays bounded: offer a reload instead
      note.hidden = false;
      note.replaceChildren('More new jobs arrived. ', h('a', { href: '#', onclick: (ev) => { ev.preventDefault(); ctx.reload(); } }, 'Show the newest'));
      return;
    }
    added++;
    const tr = rowOf(j);
    tr.classList.add('new');
    rows.set(j.id, tr);
    tbody.prepend(tr);
    if (summary.textContent === 'No job matches.') summary.textContent = '';
  };
  for (const j of early.splice(0)) apply(j);
  tickRan(tbody, ctx.signal);
}
