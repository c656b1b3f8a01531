// Workers: each with its state, resources (capacity, allocated, measured
// use), labels and running jobs; drain and undrain ask for confirmation
// and are shown only to roles that manage workers. One page of pageSize
// workers in id order at a time, through ListWorkers' page token, so that
// the page and its reloads cost a page among ten thousand workers.

import { get, post } from '../api.js';
import { h } from '../dom.js';
import { subscribe } from '../events.js';
import { pagerLinks } from '../pager.js';
import { ago, badge, bar, enumName, labels, num, shortId } from '../format.js';

export const workerState = (w) => (w.leaving ? 'LEAVING' : enumName(w.state, 'WORKER_STATE_') || 'UNKNOWN');

// every is how often the page reads the workers again: their heartbeats
// (load, memory) change without an event.
const every = 5000;

export const pageSize = 50;

// before remembers the page tokens of the pages before the one shown, so
// that "Previous" goes back without a call that pages backwards.
const before = [];

function usage(w) {
  const cap = w.capacity || {};
  const al = w.allocated || {};
  const line = (label, used, total, unit) => (total ? h('div.res', h('span.res-label', label), bar(used / total), ` ${used}/${total}${unit}`) : null);
  return h('div.resources',
    line('slots', num(al.slots), num(cap.slots), ''),
    line('cpu', num(al.cpuMillis), num(cap.cpuMillis), 'm'),
    line('mem', num(al.memoryMib), num(cap.memoryMib), ' MiB'),
    h('div.measured', `cpu ${(w.cpuPercent || 0).toFixed(0)}% · mem ${num(w.memoryUsedMib)} MiB · load ${(w.load1 || 0).toFixed(2)}`));
}

// cannotSee is what a role that may not list workers (viewer, submitter:
// the server refuses them) sees instead of the page: a plain sentence,
// not a refusal, as the nav has no link to this page for them.
export function cannotSee(ctx) {
  return h('p.summary#workers-none', `Your role (${ctx.me.role}) cannot see workers: listing them takes an operator or admin token.`);
}

export async function render(root, ctx) {
  if (!ctx.can('manageWorkers')) {
    root.append(h('h1', 'Workers'), cannotSee(ctx));
    return;
  }
  const page = ctx.params.get('page') || '';
  if (!page) before.length = 0;
  const tbody = h('tbody#workers-body');
  const summary = h('p.summary#workers-summary');
  const pager = h('nav.pager#workers-pager');
  // On a phone each row stacks into a card (table.stack): name and its
  // Drain button on top, then state, resources and running jobs.
  root.append(h('h1', 'Workers'), summary, h('div.scroll', h('table.list.stack.workers', h('thead', h('tr',
    h('th', 'Worker'), h('th', 'State'), h('th', 'Resources'), h('th.hide-s', 'Labels'), h('th', 'Running'), h('th.hide-s', 'Heartbeat'), h('th', ''))), tbody)), pager);
  const at = (token) => '#/workers' + (token ? '?page=' + encodeURIComponent(token) : '');

  const act = async (w, verb) => {
    const what = verb === 'drain' ? 'Drain' : 'Undrain';
    const msg = verb === 'drain' ? `Drain worker ${w.name || w.id}? It takes no new jobs; its running jobs finish.` : `Undrain worker ${w.name || w.id}? It takes new jobs again.`;
    if (!confirm(msg)) return;
    try {
      await post(`/v1/workers/${encodeURIComponent(w.id)}:${verb}`, {});
      ctx.flash(`${what}ed ${w.name || w.id}.`, 'ok');
      load();
    } catch (e) { ctx.flash(e); }
  };

  let seq = 0; // an answer older than the last one asked for is not shown
  const load = async () => {
    const n = ++seq;
    const r = await get('/v1/workers', { pageSize, pageToken: page }, ctx.signal);
    if (n !== seq) return;
    const ws = r.workers || []; // in id order, as the pages go
    const counts = {};
    for (const w of ws) counts[workerState(w)] = (counts[workerState(w)] || 0) + 1;
    summary.textContent = ws.length ? (page || r.nextPageToken ? `this page: ${ws.length} workers: ` : '') + Object.entries(counts).map(([s, n]) => `${n} ${s.toLowerCase()}`).join(' · ') :
      (page ? 'No more workers.' : 'No worker has registered. Start one with hodei agent.');
    pager.replaceChildren(...pagerLinks({
      page, next: r.nextPageToken, at, trail: before,
      ids: ['workers-first', 'workers-prev', 'workers-next'], labels: ['« First', '‹ Previous', 'Next ›'],
    }));
    tbody.replaceChildren(...ws.map((w) => {
      const st = workerState(w);
      const running = w.running || [];
      const btn = !ctx.can('manageWorkers') || st === 'DOWN' ? null :
        (enumName(w.state, 'WORKER_STATE_') === 'DRAINING' && !w.leaving ?
          h('button.secondary.undrain', { type: 'button', onclick: () => act(w, 'undrain') }, 'Undrain') :
          h('button.danger.drain', { type: 'button', onclick: () => act(w, 'drain') }, 'Drain'));
      return h('tr', { 'data-id': w.id, 'data-state': st },
        h('td.lead', h('div', w.name || w.id), h('div.mono.sub', w.hostname || ''), h('div.mono.sub', w.id), w.revoked ? h('div.warn', 'revoked') : null),
        h('td', { 'data-label': 'State' }, badge(st), w.version ? h('span.sub', ' ', w.version) : null),
        h('td', usage(w)),
        h('td.hide-s', labels(w.labels)),
        h('td', { 'data-label': 'Running' }, running.length ? h('div.jobrefs', running.slice(0, 20).map((id) => h('a.mono', { href: '#/jobs/' + encodeURIComponent(id) }, shortId(id))), running.length > 20 ? ` +${running.length - 20}` : '') : '—'),
        h('td.hide-s', ago(w.lastHeartbeatUnixNano)),
        h('td.act', btn));
    }));
  };
  await load();
  const t = setInterval(() => load().catch(() => {}), every);
  ctx.signal.addEventListener('abort', () => clearInterval(t));
  subscribe({}, { worker: () => load().catch(() => {}), reset: () => load().catch(() => {}) }, ctx.signal);
}
