// Cron schedules: each with its expression, its next and last runs and
// the state of what it last submitted; pause, resume and run now ask for
// confirmation and are shown only to roles that may do them (pausing is
// cancelling, resuming and running are submitting).

import { get, post } from '../api.js';
import { h } from '../dom.js';
import { ago, num, shortId, timeEl } from '../format.js';

const every = 10000;

export async function render(root, ctx) {
  const tbody = h('tbody#cron-body');
  const summary = h('p.summary');
  root.append(h('h1', 'Cron schedules'), summary, h('div.scroll', h('table.list.cron', h('thead', h('tr',
    h('th', 'Name'), h('th', 'Schedule'), h('th', 'Next run'), h('th.hide-s', 'Last run'), h('th.hide-s', 'Last job'), h('th', ''))), tbody)));

  const act = async (s, verb, question) => {
    if (!confirm(question)) return;
    try {
      const r = await post(`/v1/cron/${encodeURIComponent(s.name)}:${verb}`, { tenant: s.tenant || '' });
      ctx.flash(verb === 'run' && r.id ? `Started ${r.id}.` : `${s.name}: ${verb} done.`, 'ok');
      load();
    } catch (e) { ctx.flash(e); }
  };

  let seq = 0; // an answer older than the last one asked for is not shown
  const load = async () => {
    const n = ++seq;
    const r = await get('/v1/cron', {}, ctx.signal);
    if (n !== seq) return;
    const ss = (r.schedules || []).slice().sort((a, b) => (a.tenant + '/' + a.name).localeCompare(b.tenant + '/' + b.name));
    summary.textContent = ss.length ? `${ss.length} schedule${ss.length === 1 ? '' : 's'}` : 'No cron schedule. Add one with hodei cron add.';
    tbody.replaceChildren(...ss.map((s) => {
      const what = s.pipeline && s.pipeline.steps ? `pipeline ${s.pipeline.name || ''}` : ((s.job && s.job.name) || (s.job && s.job.command || []).join(' ') || (s.job && s.job.script) || '');
      const btns = [];
      if (s.paused && ctx.can('submit')) btns.push(h('button.secondary.resume', { type: 'button', onclick: () => act(s, 'resume', `Resume schedule ${s.name}?`) }, 'Resume'));
      if (!s.paused && ctx.can('cancel')) btns.push(h('button.secondary.pause', { type: 'button', onclick: () => act(s, 'pause', `Pause schedule ${s.name}? It submits nothing until resumed.`) }, 'Pause'));
      if (ctx.can('submit')) btns.push(h('button.run', { type: 'button', onclick: () => act(s, 'run', `Run schedule ${s.name} now, once?`) }, 'Run now'));
      const last = s.lastJob ? h('span', h('a.mono', { href: (s.pipeline && s.pipeline.steps ? '#/pipelines/' : '#/jobs/') + encodeURIComponent(s.lastJob) }, shortId(s.lastJob)), ' ', s.lastState ? h('span.badge', { class: 's-' + String(s.lastState).toLowerCase() }, s.lastState) : '') : '—';
      return h('tr', { 'data-name': s.name },
        h('td', h('strong', s.name), h('div.sub', `${s.tenant || 'default'} · ${what}`), s.paused ? h('span.badge.s-paused', 'paused') : null),
        h('td', h('code', s.schedule), h('div.sub', s.timezone || 'UTC'), s.overlap && s.overlap !== 'allow' ? h('div.sub', 'overlap ' + s.overlap) : null),
        h('td', s.paused ? '—' : timeEl(s.nextRunUnixNano)),
        h('td.hide-s', timeEl(s.lastRunUnixNano), num(s.lastRunUnixNano) ? h('div.sub', ago(s.lastRunUnixNano)) : null,
          num(s.skipped) ? h('div.sub', `${num(s.skipped)} skipped${s.lastSkip ? ': ' + s.lastSkip : ''}`) : null),
        h('td.hide-s', last),
        h('td.actions', btns));
    }));
  };
  await load();
  const t = setInterval(() => load().catch(() => {}), every);
  ctx.signal.addEventListener('abort', () => clearInterval(t));
}
