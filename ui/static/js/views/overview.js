// The overview: workers by state (for the roles that may see workers),
// the queue of each tenant with its share and quota use, the latest
// failures, and the jobs that missed their deadline (SLA) among the
// newest. Each is one bounded call; the page reads them again every few
// seconds and on events.

import { APIError, get } from '../api.js';
import { h } from '../dom.js';
import { subscribe } from '../events.js';
import { ago, badge, bar, jobState, num, pct, shortId, terminal } from '../format.js';

const every = 5000;
const failures = 10; // the newest failed jobs shown
const slaWindow = 200; // how many of the newest jobs are checked for SLA misses

function card(id, title, body) {
  return h('section.card', { id }, h('h2', title), body);
}

function refused(e) {
  return h('p.sub', e instanceof APIError ? e.explain() : String(e));
}

async function workersCard(ctx) {
  try {
    // The counts only: what this card shows costs a count, not a list of every worker.
    const r = await get('/v1/workers', { countsOnly: true }, ctx.signal);
    const c = r.counts || {};
    const counts = { READY: num(c.ready), DRAINING: num(c.draining), LEAVING: num(c.leaving), DOWN: num(c.down), UNKNOWN: num(c.unknown) };
    const slots = num(c.slots), used = num(c.slotsUsed);
    return h('div', h('div.stats', Object.entries(counts).filter(([s, n]) => n || s === 'READY' || s === 'DOWN').map(([s, n]) =>
      h('a.stat', { href: '#/workers', class: 's-' + s.toLowerCase(), 'data-state': s }, h('span.n', String(n)), h('span.l', s.toLowerCase())))),
    slots ? h('div.res', h('span.res-label', 'slots'), bar(used / slots), ` ${used}/${slots} in use`) : null);
  } catch (e) {
    return refused(e);
  }
}

async function queueCard(ctx) {
  try {
    const r = await get('/v1/tenants', {}, ctx.signal);
    const ts = (r.tenants || []).slice().sort((a, b) => num(b.pendingJobs) - num(a.pendingJobs) || a.tenant.name.localeCompare(b.tenant.name));
    if (!ts.length) return h('p.sub', 'No tenant.');
    return h('div.scroll', h('table.list.compact', h('thead', h('tr', h('th', 'Tenant'), h('th.num', 'Pending'), h('th.num', 'Running'), h('th', 'Share / fair'), h('th.hide-m', 'Quota use'))),
      h('tbody', ts.map((t) => {
        const q = t.tenant;
        const mr = q.maxRunning || {};
        const limits = [];
        if (num(q.maxQueued)) limits.push(`queued ${num(t.queued)}/${num(q.maxQueued)}`);
        if (num(mr.slots)) limits.push(`slots ${num(t.running && t.running.slots)}/${num(mr.slots)}`);
        return h('tr', { 'data-name': q.name },
          h('td', h('a', { href: '#/jobs?tenant=' + encodeURIComponent(q.name) }, q.name)),
          h('td.num', String(num(t.pendingJobs))),
          h('td.num', String(num(t.running && t.running.slots))),
          h('td', bar(t.share || 0, t.fairShare || 0), ` ${pct(t.share)} / ${pct(t.fairShare)}`),
          h('td.hide-m', limits.join(' · ') || h('span.sub', 'no limit')));
      }))));
  } catch (e) {
    return refused(e);
  }
}

function jobList(jobs, extra) {
  return h('ul.joblist', jobs.map((j) => h('li', { 'data-id': j.id },
    h('a.mono', { href: '#/jobs/' + encodeURIComponent(j.id) }, shortId(j.id)), ' ',
    h('span.name', (j.spec && j.spec.name) || ''), ' ', badge(jobState(j)), ' ', h('span.sub', extra(j)))));
}

async function failuresCard(ctx) {
  try {
    const r = await get('/v1/jobs', { state: 'JOB_STATE_FAILED', newestFirst: true, pageSize: failures }, ctx.signal);
    const jobs = r.jobs || [];
    if (!jobs.length) return h('p.sub', 'No failed job.');
    return h('div', jobList(jobs, (j) => `${j.reason || 'exit ' + (j.exitCode || 0)} · ${ago(j.finishedUnixNano)}`),
      h('a', { href: '#/jobs?state=FAILED' }, 'All failed jobs'));
  } catch (e) {
    return refused(e);
  }
}

async function slaCard(ctx) {
  try {
    const r = await get('/v1/jobs', { newestFirst: true, pageSize: slaWindow }, ctx.signal);
    const now = Date.now() * 1e6;
    const missed = (r.jobs || []).filter((j) => j.deadlineMissed ||
      (!terminal(jobState(j)) && jobState(j) !== 'RUNNING' && num(j.spec && j.spec.deadlineUnixNano) && num(j.spec.deadlineUnixNano) < now));
    if (!missed.length) return h('p.sub', `No deadline missed among the newest ${slaWindow} jobs.`);
    return h('div', h('p.sub', `${missed.length} of the newest ${slaWindow} jobs missed their deadline:`),
      jobList(missed.slice(0, 20), (j) => (j.deadlineMissed ? 'started after its deadline' : 'still waiting past its deadline')));
  } catch (e) {
    return refused(e);
  }
}

export async function render(root, ctx) {
  const grid = h('div.cards');
  root.append(h('h1', 'Overview'), grid);
  let seq = 0; // an answer older than the last one asked for is not shown
  const load = async () => {
    const n = ++seq;
    // Workers are shown only to roles that may read them (not viewers or
    // submitters: the server refuses them even the counts).
    const workers = ctx.can('manageWorkers');
    const [w, q, f, s] = await Promise.all([workers ? workersCard(ctx) : null, queueCard(ctx), failuresCard(ctx), slaCard(ctx)]);
    if (ctx.signal.aborted || n !== seq) return;
    grid.replaceChildren(...[workers ? card('ov-workers', 'Workers', w) : null, card('ov-queue', 'Queue per tenant', q),
      card('ov-failures', 'Recent failures', f), card('ov-sla', 'SLA misses', s)].filter(Boolean));
  };
  await load();
  let pending = false;
  const again = () => {
    if (pending) return;
    pending = true;
    setTimeout(() => { pending = false; if (!ctx.signal.aborted) load().catch(() => {}); }, 1000);
  };
  const t = setInterval(again, every);
  ctx.signal.addEventListener('abort', () => clearInterval(t));
  subscribe({}, { job: again, worker: ctx.can('manageWorkers') ? again : null, reset: again }, ctx.signal);
}
