// Tenants: weight, quota and its use, burst state, share against fair
// share (with the share over time, sampled while the page is open), and
// an edit form for roles that manage tenants.

import { get, put, APIError } from '../api.js';
import { h, svg } from '../dom.js';
import { bar, dur, enumName, num, pct, res, timeEl } from '../format.js';

const every = 5000; // how often the page samples the tenants' shares
const samples = 120; // kept per tenant: ten minutes at every

// history of shares by tenant, kept while the tab lives.
const history = new Map();

function sparkline(points) {
  const w = 120, hgt = 28;
  const g = svg('svg', { class: 'spark', viewBox: `0 0 ${w} ${hgt}`, width: w, height: hgt, 'aria-label': 'share over time' });
  if (points.length < 2) return g;
  const step = w / (samples - 1);
  const x0 = w - (points.length - 1) * step;
  const d = points.map((p, i) => `${i ? 'L' : 'M'}${(x0 + i * step).toFixed(1)},${(hgt - 2 - p.share * (hgt - 4)).toFixed(1)}`).join(' ');
  const f = points.map((p, i) => `${i ? 'L' : 'M'}${(x0 + i * step).toFixed(1)},${(hgt - 2 - p.fair * (hgt - 4)).toFixed(1)}`).join(' ');
  g.append(svg('path', { d: f, class: 'spark-fair' }), svg('path', { d, class: 'spark-share' }));
  return g;
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

function editForm(t, ctx, reload) {
  const q = t.tenant;
  const mr = q.maxRunning || {};
  const f = h('form.edit', {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const fd = new FormData(f);
      const tenant = { name: q.name, weight: Number(fd.get('weight')), maxQueued: String(Number(fd.get('maxQueued')) || 0), maxRunning: { slots: String(Number(fd.get('slots')) || 0) } };
      if (!confirm(`Set tenant ${q.name}: weight ${tenant.weight}, max queued ${tenant.maxQueued || 'unlimited'}, max running slots ${tenant.maxRunning.slots || 'unlimited'}?`)) return;
      try {
        await put('/v1/tenants/' + encodeURIComponent(q.name), { tenant, fields: ['weight', 'max_queued', 'max_running.slots'] });
        ctx.flash(`Tenant ${q.name} updated.`, 'ok');
        reload();
      } catch (e) { ctx.flash(e); }
    },
  },
  h('label', 'weight ', h('input', { name: 'weight', type: 'number', step: 'any', min: '0', value: q.weight || 1, size: 4 })),
  h('label', 'max queued ', h('input', { name: 'maxQueued', type: 'number', min: '0', value: num(q.maxQueued), size: 6 })),
  h('label', 'max slots ', h('input', { name: 'slots', type: 'number', min: '0', value: num(mr.slots), size: 4 })),
  h('button', { type: 'submit' }, 'Save'));
  return h('details.edit', h('summary', 'Edit'), f);
}

export async function render(root, ctx) {
  const tbody = h('tbody#tenants-body');
  const usageBox = h('section#usage');
  root.append(h('h1', 'Tenants'), h('p.summary', 'Share: the tenant\'s fraction of the slots in use; the mark is its fair share (its weight over the weights of tenants with work). The line shows both over the last minutes this page was open.'),
    h('div.scroll', h('table.list.tenants', h('thead', h('tr', h('th', 'Tenant'), h('th.num', 'Weight'), h('th', 'Share'), h('th', 'Queue'), h('th', 'Quota use'), h('th.hide-s', 'Burst'))), tbody)), usageBox);

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
      while (hs.length > samples) hs.shift();
      history.set(q.name, hs);
      return h('tr', { 'data-name': q.name },
        h('td', h('strong', q.name), q.runAs ? h('div.sub', `runs as ${q.runAs}`) : null, q.preemptible ? h('div.sub', 'preemptible') : null,
          ctx.can('manageTenants') ? editForm(t, ctx, () => load().catch((e) => ctx.flash(e))) : null),
        h('td.num', String(q.weight || 1)),
        h('td', h('div', bar(t.share || 0, t.fairShare || 0, `share ${pct(t.share)}, fair share ${pct(t.fairShare)}`), ` ${pct(t.share)} of ${pct(t.fairShare)}`), sparkline(hs)),
        h('td', `${num(t.pendingJobs)} pending`, h('div.sub', `${num(t.queued)} not finished`), res(t.pending) ? h('div.sub', 'asks ' + res(t.pending)) : null, res(t.running) ? h('div.sub', 'holds ' + res(t.running)) : null),
        h('td', quotaUse(t)),
        h('td.hide-s', burst(t)));
    }));
  };
  await load();
  const t = setInterval(() => load().catch(() => {}), every);
  ctx.signal.addEventListener('abort', () => clearInterval(t));
  showUsage(usageBox, ctx);
}

// showUsage shows what each tenant's ended attempts used over the last
// 30 days (GET /v1/usage, grouped by tenant: the server's daily roll-ups,
// which outlive the jobs): attempts, wall time, CPU time, slot time and
// the largest peak memory.
async function showUsage(box, ctx) {
  let r;
  try {
    r = await get('/v1/usage', { groupBy: 'tenant' }, ctx.signal);
  } catch (e) {
    if (!ctx.signal.aborted) box.append(h('h2', 'Usage'), h('p.error', e instanceof APIError ? e.explain() : String(e)));
    return;
  }
  const rows = r.rows || [];
  const us = (v) => dur(num(v) / 1000);
  const line = (u, total) => h(total ? 'tr.total' : 'tr', { 'data-group': total ? '' : (u.group || '') },
    h('td', total ? 'total' : (u.group || '(none)')), h('td.num', String(num(u.attempts))), h('td.num', us(u.wallMicros)),
    h('td.num', us(u.cpuMicros)), h('td.num', us(u.slotMicros)), h('td.num.hide-s', num(u.maxRssKib) ? `${(num(u.maxRssKib) / 1024).toFixed(1)} MiB` : ''));
  box.append(h('h2', 'Usage'), h('p.summary', `Ended attempts from ${r.from || ''} to ${r.to || ''} (UTC days), as hodei usage shows them.`),
    rows.length ? h('div.scroll', h('table.list#usage-table', h('thead', h('tr', h('th', 'Tenant'), h('th.num', 'Attempts'), h('th.num', 'Wall time'), h('th.num', 'CPU time'), h('th.num', 'Slot time'), h('th.num.hide-s', 'Peak memory'))),
      h('tbody', rows.map((u) => line(u, false)), rows.length > 1 && r.total ? line(r.total, true) : null))) : h('p.sub#usage-table', 'No attempt has ended in these days.'));
}
