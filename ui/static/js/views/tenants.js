// Tenants: weight, quota and its use, burst state, share against fair
// share (with the share over time, sampled while the page is open), an
// edit form for roles that manage tenants, and each tenant's usage. Both
// are read again as jobs end (from /v1/events, at most once per
// eventGap); the tenants also every few seconds, to sample their shares.

import { get, put, APIError } from '../api.js';
import { h, svg } from '../dom.js';
import { subscribe } from '../events.js';
import { bar, dur, enumName, num, pct, res, timeEl } from '../format.js';

const every = 5000; // how often the page samples the tenants' shares
const keep = 10 * 60 * 1000; // the share over time covers at most the last ten minutes
const eventGap = 2000; // at most one refresh per eventGap on job events

// history of shares by tenant, kept while the tab lives: {at, share, fair}.
const history = new Map();

// scaleTop is the top of the share line's scale: the smallest of 10%,
// 25%, 50% and 100% at or above every value drawn, so that a tenant
// holding a few percent still shows a line, not a flat floor.
function scaleTop(points) {
  const m = Math.max(...points.map((p) => Math.max(p.share, p.fair)));
  return [0.1, 0.25, 0.5, 1].find((t) => m <= t) || 1;
}

// sparkline draws a tenant's share (solid) and fair share (dashed) over
// the time sampled, across the whole width however long that is, over a
// scale from 0 to scaleTop, both written under it.
export function sparkline(points) {
  const w = 160, hgt = 34;
  const g = svg('svg', { class: 'spark', viewBox: `0 0 ${w} ${hgt}`, width: w, height: hgt, role: 'img' });
  const box = h('div.spark-box', g);
  if (points.length < 2) {
    g.setAttribute('aria-label', 'share over time: not sampled yet');
    box.append(h('div.sub.spark-cap', 'over time: sampling…'));
    return box;
  }
  const t0 = points[0].at;
  const span = Math.max(1, points[points.length - 1].at - t0);
  const top = scaleTop(points);
  const lo = hgt - 3, hi = 4; // where 0 and top are drawn
  const x = (p) => (1 + ((p.at - t0) / span) * (w - 2)).toFixed(1);
  const y = (v) => (lo - (Math.min(v, top) / top) * (lo - hi)).toFixed(1);
  const path = (k) => points.map((p, i) => `${i ? 'L' : 'M'}${x(p)},${y(p[k])}`).join(' ');
  g.setAttribute('aria-label', `share over the last ${dur(span)}, on a scale of 0 to ${pct(top)}`);
  g.append(svg('path', { d: `M0,${hi - 2.5}H${w}`, class: 'spark-top' }), svg('path', { d: `M0,${lo + 2.5}H${w}`, class: 'spark-axis' }),
    svg('path', { d: path('fair'), class: 'spark-fair' }), svg('path', { d: path('share'), class: 'spark-share' }));
  box.append(h('div.sub.spark-cap', `last ${dur(span)} · 0–${pct(top)}`));
  return box;
}

// throttle returns a function that runs fn at most once per gap: calls
// meanwhile are folded into one run at the end of the gap, after them,
// so the last change always shows. Nothing runs once signal aborts.
function throttle(fn, gap, signal) {
  let timer = null;
  let last = 0;
  signal.addEventListener('abort', () => clearTimeout(timer));
  return () => {
    if (timer !== null || signal.aborted) return;
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      if (!signal.aborted) fn();
    }, Math.max(0, last + gap - Date.now()));
  };
}

// quotaUse is "3/10 queued", "2/4 slots" … for the limits a tenant has.
function quotaUse(t) {
  const q = t.tenant;
  const out = [];
  const mq = num(q.maxQueued);
  if (mq) out.push(h('div.res', h('span.res-label', 'queued'), bar(num(t.queued) / mq), ` ${num(t.queued)}/${mq}`));
  const mr = q.maxRunning || {};
  const run = t.running || {};
  for (const [k, label, unit] of [['slots', 'slots', ''], ['cpuMillis', 'cpu', 'm'], ['memoryMib', 'mem', ' MiB']]) {
    if (num(mr[k])) out.push(h('div.res', h('span.res-label', label), bar(num(run[k]) / num(mr[k])), ` ${num(run[k])}/${num(mr[k])}${unit}`));
  }
  return out.length ? out : h('span.sub', 'no limit');
}

function burst(t) {
  const q = t.tenant;
  if (!q.burst) return h('span.sub', 'none');
  const st = enumName(t.burstState, 'BURST_STATE_') || 'NONE';
  return h('div', `×${q.burst} for ${dur(num(q.burstForMs))}, cooldown ${dur(num(q.cooldownMs))}`,
    h('div', h('span.badge', { class: 'b-' + st.toLowerCase() }, st.toLowerCase()), num(t.burstUntilUnixNano) ? [' until ', timeEl(t.burstUntilUnixNano)] : ''));
}

// limit words a limit as the confirmation shows it: 0 (or empty) is none.
const limit = (n) => (n ? String(n) : 'no limit');

function editForm(t, ctx, reload) {
  const q = t.tenant;
  const mr = q.maxRunning || {};
  const f = h('form.edit', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const fd = new FormData(f);
      const maxQueued = Number(fd.get('maxQueued')) || 0, slots = Number(fd.get('slots')) || 0;
      const tenant = { name: q.name, weight: Number(fd.get('weight')), maxQueued: String(maxQueued), maxRunning: { slots: String(slots) } };
      if (!confirm(`Set tenant ${q.name}: weight ${tenant.weight}, max queued ${limit(maxQueued)}, max running slots ${limit(slots)}?`)) return;
      try {
        await put('/v1/tenants/' + encodeURIComponent(q.name), { tenant, fields: ['weight', 'max_queued', 'max_running.slots'] });
        ctx.flash(`Tenant ${q.name} updated.`, 'ok');
        reload();
      } catch (e) { ctx.flash(e); }
    },
  },
  h('label', 'weight ', h('input', { name: 'weight', type: 'number', step: 'any', min: '0', value: q.weight || 1, size: 4 })),
  h('label', 'max queued ', h('input', { name: 'maxQueued', type: 'number', min: '0', value: num(q.maxQueued) || '', placeholder: 'no limit', size: 6 })),
  h('label', 'max slots ', h('input', { name: 'slots', type: 'number', min: '0', value: num(mr.slots) || '', placeholder: 'no limit', size: 4 })),
  h('button', { type: 'submit' }, 'Save'));
  return h('details.edit', h('summary', 'Edit'), f);
}

export async function render(root, ctx) {
  const tbody = h('tbody#tenants-body');
  const usageBox = h('section#usage');
  // On a phone each row stacks into a card (table.stack), its cells labelled.
  root.append(h('h1', 'Tenants'), h('p.summary', 'Share: the tenant\'s fraction of the slots in use; the mark is its fair share (its weight over the weights of tenants with work). Under it, both over the time this page has been open: share solid, fair share dashed, on the scale written below.'),
    h('div.scroll', h('table.list.stack.tenants', h('thead', h('tr', h('th', 'Tenant'), h('th.num', 'Weight'), h('th', 'Share'), h('th', 'Queue'), h('th', 'Quota use'), h('th', 'Burst'))), tbody)), usageBox);

  let seq = 0; // an answer older than the last one asked for is not shown
  const load = async () => {
    const n = ++seq;
    const r = await get('/v1/tenants', {}, ctx.signal);
    if (n !== seq) return;
    const ts = r.tenants || [];
    const now = Date.now();
    tbody.replaceChildren(...ts.map((t) => {
      const q = t.tenant;
      const hs = history.get(q.name) || [];
      if (!hs.length || now - hs[hs.length - 1].at >= every / 2) hs.push({ at: now, share: t.share || 0, fair: t.fairShare || 0 });
      while (hs.length && now - hs[0].at > keep) hs.shift();
      history.set(q.name, hs);
      return h('tr', { 'data-name': q.name },
        h('td.lead', h('strong', q.name), q.runAs ? h('div.sub', `runs as ${q.runAs}`) : null, q.preemptible ? h('div.sub', 'preemptible') : null,
          ctx.can('manageTenants') ? editForm(t, ctx, () => load().catch((e) => ctx.flash(e))) : null),
        h('td.num.act.weight', { 'data-label': 'weight' }, String(q.weight || 1)),
        h('td', { 'data-label': 'Share' }, h('div', bar(t.share || 0, t.fairShare || 0, `share ${pct(t.share)}, fair share ${pct(t.fairShare)}`), ` ${pct(t.share)} of ${pct(t.fairShare)}`), sparkline(hs)),
        h('td', { 'data-label': 'Queue' }, h('div', `${num(t.pendingJobs)} pending`), h('div.sub', `${num(t.queued)} not finished`), res(t.pending) ? h('div.sub', 'asks ' + res(t.pending)) : null, res(t.running) ? h('div.sub', 'holds ' + res(t.running)) : null),
        h('td', { 'data-label': 'Quota use' }, quotaUse(t)),
        h('td', { 'data-label': 'Burst' }, burst(t)));
    }));
  };
  const usage = usageView(usageBox, ctx);
  await Promise.all([load(), usage()]);
  const t = setInterval(() => load().catch(() => {}), every);
  ctx.signal.addEventListener('abort', () => clearInterval(t));
  // A job that ends changes its tenant's queue and share, and adds its
  // attempt to the usage: read both again, at most once per eventGap.
  const again = throttle(() => { load().catch(() => {}); usage(); }, eventGap, ctx.signal);
  subscribe({}, { job: again, reset: again }, ctx.signal);
}

// usageView returns a function that shows, in box, what each tenant's
// ended attempts used over the last 30 days (GET /v1/usage, grouped by
// tenant: the server's daily roll-ups, which outlive the jobs): attempts,
// wall time, CPU time, slot time and the largest peak memory. Each call
// reads them again; an answer older than the last one shown is dropped.
function usageView(box, ctx) {
  let seq = 0;
  return async () => {
    const n = ++seq;
    let r;
    try {
      r = await get('/v1/usage', { groupBy: 'tenant' }, ctx.signal);
    } catch (e) {
      if (!ctx.signal.aborted && n === seq) box.replaceChildren(h('h2', 'Usage'), h('p.error', e instanceof APIError ? e.explain() : String(e)));
      return;
    }
    if (n !== seq) return;
    const rows = r.rows || [];
    const us = (v) => dur(num(v) / 1000);
    const line = (u, total) => h(total ? 'tr.total' : 'tr', { 'data-group': total ? '' : (u.group || '') },
      h('td', total ? 'total' : (u.group || '(none)')), h('td.num.attempts', String(num(u.attempts))), h('td.num', us(u.wallMicros)),
      h('td.num', us(u.cpuMicros)), h('td.num', us(u.slotMicros)), h('td.num.hide-s', num(u.maxRssKib) ? `${(num(u.maxRssKib) / 1024).toFixed(1)} MiB` : ''));
    box.replaceChildren(h('h2', 'Usage'), h('p.summary', `Ended attempts from ${r.from || ''} to ${r.to || ''} (UTC days), as hodei usage shows them.`),
      rows.length ? h('div.scroll', h('table.list#usage-table', h('thead', h('tr', h('th', 'Tenant'), h('th.num', 'Attempts'), h('th.num', 'Wall time'), h('th.num', 'CPU time'), h('th.num', 'Slot time'), h('th.num.hide-s', 'Peak memory'))),
        h('tbody', rows.map((u) => line(u, false)), rows.length > 1 && r.total ? line(r.total, true) : null))) : h('p.sub#usage-table', 'No attempt has ended in these days.'));
  };
}
