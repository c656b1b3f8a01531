// One job: its status (state, attempts, reasons, times, usage), its spec,
// and its output live, rendered as a terminal. Cancel asks for
// confirmation and is shown only to roles that may cancel; the server
// decides, and its refusal is shown.

import { post, get } from '../api.js';
import { h } from '../dom.js';
import { subscribe } from '../events.js';
import { badge, dur, enumName, jobState, labels, num, res, terminal, timeEl } from '../format.js';
import { follow } from '../logs.js';
import { ranCell, tickRan } from './jobs.js';
import { maxScreen, Terminal } from '../terminal.js';

function dl(pairs) {
  return h('dl.kv', pairs.filter(([, v]) => v !== '' && v !== null && v !== undefined && v !== false &&
    !(Array.isArray(v) && v.length === 0)).map(([k, v]) => [h('dt', k), h('dd', v)]));
}

function statusOf(j, ctx) {
  const s = j.spec || {};
  const st = jobState(j);
  const tries = (s.retries || 0) + 1;
  const exit = terminal(st) && j.startedUnixNano ? (num(j.signal) ? `killed by signal ${j.signal}` : String(j.exitCode || 0)) : '';
  const pending = j.pending ? `${enumName(j.pending.kind, 'PENDING_KIND_').toLowerCase().replace(/_/g, ' ')}: ${j.pending.message || ''}` : '';
  const u = j.usage || {};
  return dl([
    ['State', badge(st)],
    ['Attempt', j.attempt ? `${j.attempt} of ${tries}` : ''],
    ['Preemptions', j.preemptions || ''],
    ['Worker', j.worker ? (ctx.can('manageWorkers') ? h('a.mono', { href: '#/workers' }, j.worker) : h('span.mono', j.worker)) : ''],
    ['Exit', exit],
    ['Reason', j.reason || ''],
    ['Why pending', st === 'PENDING' ? pending : ''],
    ['Cancel requested', j.cancelRequested || ''],
    ['SLA', j.deadlineMissed ? h('span.warn', 'deadline missed') : ''],
    ['Created', timeEl(j.createdUnixNano)],
    ['Not before', timeEl(j.notBeforeUnixNano)],
    ['Scheduled', timeEl(j.scheduledUnixNano)],
    ['Started', timeEl(j.startedUnixNano)],
    ['Finished', timeEl(j.finishedUnixNano)],
    ['Ran', j.startedUnixNano ? ranCell('span.ran', j) : ''],
    ['CPU time', num(u.cpuTimeNs) ? dur(num(u.cpuTimeNs) / 1e6) : ''],
    ['Peak memory', num(u.maxRssKib) ? `${(num(u.maxRssKib) / 1024).toFixed(1)} MiB` : ''],
  ]);
}

function specOf(j) {
  const s = j.spec || {};
  const env = Object.entries(s.env || {}).map(([k, v]) => `${k}=${v}`);
  const secrets = Object.keys(s.secretEnv || {}).map((k) => `${k}=***`);
  return dl([
    ['Command', s.command && s.command.length ? h('code.cmd', s.command.join(' ')) : ''],
    ['Script', s.script ? h('pre.script', s.script) : ''],
    ['Tenant', s.tenant || 'default'],
    ['Labels', labels(s.labels)],
    ['Pipeline', s.pipeline ? h('a', { href: '#/pipelines/' + encodeURIComponent(s.pipeline) }, `${s.pipeline} · step ${s.step || ''}`) : ''],
    ['Array', s.array ? `${s.array} [${s.arrayIndex || 0}]` : ''],
    ['Depends on', (s.dependsOn || []).map((d) => h('a.mono.dep', { href: '#/jobs/' + encodeURIComponent(d) }, d))],
    ['Env', env.length ? h('pre.env', env.concat(secrets).join('\n')) : (secrets.length ? h('pre.env', secrets.join('\n')) : '')],
    ['Workdir', s.workdir || ''],
    ['Terminal', s.noPty ? 'no PTY' : `PTY ${s.rows || 24}×${s.cols || 80}`],
    ['Timeout', num(s.timeoutMs) ? dur(num(s.timeoutMs)) : ''],
    ['Retries', s.retries ? `${s.retries}, backoff ${dur(num(s.backoffMs) || 1000)}` : ''],
    ['Priority', s.priority !== undefined ? String(s.priority) : '500'],
    ['Effective priority', jobState(j) === 'PENDING' && j.effectivePriority ? j.effectivePriority.toFixed(1) : ''],
    ['Deadline', timeEl(s.deadlineUnixNano)],
    ['Resources', res(s.resources)],
    ['Selector', labels(s.selector)],
    ['Preemptible', s.preemptible ? 'yes' : ''],
  ]);
}

export async function render(root, ctx, id) {
  let j = await get('/v1/jobs/' + encodeURIComponent(id), {}, ctx.signal);
  id = j.id;
  const title = h('h1', (j.spec && j.spec.name) || 'Job', ' ', h('span.mono.sub', id));
  const actions = h('div.actions');
  const statusBox = h('section.card#job-status', h('h2', 'Status'), statusOf(j, ctx));
  const specBox = h('section.card#job-spec', h('h2', 'Spec'), specOf(j));
  const pre = h('pre.terminal#log', { tabindex: 0, 'aria-label': 'Output' });
  const logState = h('span.live#log-live', '○ connecting');
  const logBox = h('section.card.log-card', h('div.head', h('h2', 'Output'), logState), pre);
  root.append(h('p.crumbs', h('a', { href: '#/jobs' }, 'Jobs'), ' / ', id), h('div.head', title, actions), h('div.grid2', statusBox, specBox), logBox);

  // update shows nj unless what is shown is newer: the answer to the
  // cancel can arrive after the event of the job's end.
  const update = (nj) => {
    if (num(nj.version) < num(j.version)) return;
    j = nj;
    statusBox.replaceChildren(h('h2', 'Status'), statusOf(j, ctx));
    drawActions();
  };
  const drawActions = () => {
    actions.replaceChildren();
    if (ctx.can('cancel') && !terminal(jobState(j))) {
      actions.append(h('button.danger#cancel', {
        type: 'button',
        onclick: async () => {
          if (!confirm(`Cancel job ${(j.spec && j.spec.name) || ''} ${id}? Its process gets SIGTERM, then SIGKILL.`)) return;
          try {
            update(await post(`/v1/jobs/${encodeURIComponent(id)}:cancel`, { reason: `cancelled from the web page by ${ctx.me.name || ctx.me.role}` }));
            ctx.flash('Cancel requested.', 'ok');
          } catch (e) {
            ctx.flash(e);
          }
        },
      }, 'Cancel job'));
    }
  };
  drawActions();
  tickRan(statusBox, ctx.signal);

  // The stream starts from now: once it is open, read the job again, so
  // that a change between the first read and the stream's start shows.
  const reread = () => get('/v1/jobs/' + encodeURIComponent(id), {}, ctx.signal)
    .then(update).catch(() => {});
  subscribe({ job: id }, {
    state: (s) => { if (s === 'open') reread(); },
    reset: reread,
    job: (nj) => { if (nj.id === id) update(nj); },
  }, ctx.signal);

  // The screen is the job's PTY (it wraps where the job's own terminal
  // did); output without a PTY was never sized, so it wraps only at the
  // widest line the page keeps.
  const sp = j.spec || {};
  const term = new Terminal(pre, sp.rows || 24, sp.noPty ? maxScreen : sp.cols || 80);
  follow(id, {
    onAttempt: (a) => { if (a > 1 || num(j.attempt) > 1) term.note(`── attempt ${a} ──`); },
    onData: (a, bytes) => term.write(bytes),
    onState: (s) => { logState.textContent = s === 'open' ? '● live' : '○ reconnecting'; logState.classList.toggle('on', s === 'open'); },
    onEnd: () => { logState.textContent = 'ended'; logState.classList.remove('on'); },
    onError: (e) => { logState.textContent = '○ ' + e.explain(); },
  }, ctx.signal);
}
