// Workers: each with its state, resources (capacity, allocated, measured
// use), labels and running jobs; drain and undrain ask for confirmation
// and are shown only to roles that manage workers.

import { get, post } from '../api.js';
import { h } from '../dom.js';
import { subscribe } from '../events.js';
import { ago, badge, bar, enumName, labels, num, shortId } from '../format.js';

export const workerState = (w) => (w.leaving ? 'LEAVING' : enumName(w.state, 'WORKER_STATE_') || 'UNKNOWN');

// every is how often the page reads the workers again: their heartbeats
// (load, memory) change without an event.
const every = 5000;

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

export async function render(root, ctx) {
  const tbody = h('tbody#workers-body');
  const summary = h('p.summary#workers-summary');
  root.append(h('h1', 'Workers'), summary, h('div.scroll', h('table.list.workers', h('thead', h('tr',
    h('th', 'Worker'), h('th', 'State'), h('th', 'Resources'), h('th.hide-s', 'Labels'), h('th', 'Running'), h('th.hide-s', 'Heartbeat'), h('th', ''))), tbody)));

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
    const r = await get('/v1/workers', {}, ctx.signal);
    if (n !== seq) return;
    const ws = (r.workers || []).slice().sort((a, b) => (a.name || a.id).localeCompare(b.name || b.id));
    const counts = {};
    for (const w of ws) counts[workerState(w)] = (counts[workerState(w)] || 0) + 1;
    summary.textContent = ws.length ? Object.entries(counts).map(([s, n]) => `${n} ${s.toLowerCase()}`).join(' · ') : 'No worker has registered. Start one with hodei agent.';
    tbody.replaceChildren(...ws.map((w) => {
      const st = workerState(w);
      const running = w.running || [];
      const btn = !ctx.can('manageWorkers') || st === 'DOWN' ? null :
        (enumName(w.state, 'WORKER_STATE_') === 'DRAINING' && !w.leaving ?
          h('button.secondary.undrain', { type: 'button', onclick: () => act(w, 'undrain') }, 'Undrain') :
          h('button.danger.drain', { type: 'button', onclick: () => act(w, 'drain') }, 'Drain'));
      return h('tr', { 'data-id': w.id, 'data-state': st },
        h('td', h('div', w.name || w.id), h('div.mono.sub', w.hostname || ''), h('div.mono.sub', w.id), w.revoked ? h('div.warn', 'revoked') : null),
        h('td', badge(st), w.version ? h('div.sub', w.version) : null),
        h('td', usage(w)),
        h('td.hide-s', labels(w.labels)),
        h('td', running.length ? h('div.jobrefs', running.slice(0, 20).map((id) => h('a.mono', { href: '#/jobs/' + encodeURIComponent(id) }, shortId(id))), running.length > 20 ? ` +${running.length - 20}` : '') : '—'),
        h('td.hide-s', ago(w.lastHeartbeatUnixNano)),
        h('td', btn));
    }));
  };
  await load();
  const t = setInterval(() => load().catch(() => {}), every);
  ctx.signal.addEventListener('abort', () => clearInterval(t));
  subscribe({}, { worker: () => load().catch(() => {}), reset: () => load().catch(() => {}) }, ctx.signal);
}
