// Pipelines: the list, and one pipeline as its DAG drawn in SVG, each
// step coloured by the state of its jobs, live from /v1/events.

import { get, post } from '../api.js';
import { h, svg } from '../dom.js';
import { subscribe } from '../events.js';
import { hashOf, pagerLinks } from '../pager.js';
import { badge, enumName, jobState, num, shortId, terminal, timeEl } from '../format.js';

export const pageSize = 50;

const pipeState = (p) => enumName(p && p.state, 'PIPELINE_STATE_') || 'PENDING';

// newer remembers the page tokens of the pages before the one shown, so
// that "Newer" goes back without a call that pages backwards.
const newer = [];

// renderList shows one page of pipelines, newest first, through
// ListPipelines' page token: the server finds the page in an ordered index
// and reads only its pipelines' jobs, so a page costs its size however
// many pipelines are kept.
export async function renderList(root, ctx) {
  const f = { tenant: ctx.params.get('tenant') || '', page: ctx.params.get('page') || '' };
  if (!f.page) newer.length = 0;
  const tenantSel = h('select#p-tenant', {
    name: 'tenant', 'aria-label': 'Tenant',
    onchange: () => { newer.length = 0; ctx.go('#/pipelines' + hashOf({ tenant: tenantSel.value })); },
  }, h('option', { value: '' }, 'all tenants'));
  get('/v1/tenants', {}, ctx.signal).then((r) => {
    for (const t of r.tenants || []) {
      const n = t.tenant.name;
      tenantSel.append(h('option', { value: n, selected: n === f.tenant }, n));
    }
  }).catch(() => {
    if (f.tenant) tenantSel.append(h('option', { value: f.tenant, selected: true }, f.tenant));
  });

  const r = await get('/v1/pipelines', { pageSize, pageToken: f.page, tenant: f.tenant }, ctx.signal);
  const list = r.pipelines || [];
  const tbody = h('tbody#pipelines-body');
  for (const p of list) {
    const pl = p.pipeline;
    tbody.append(h('tr', { 'data-id': pl.id },
      h('td.mono', h('a', { href: '#/pipelines/' + encodeURIComponent(pl.id), title: pl.id }, shortId(pl.id))),
      h('td', pl.name || ''), h('td.hide-s', pl.tenant || ''), h('td', badge(pipeState(p))),
      h('td.num', (pl.steps || []).length), h('td.hide-s', timeEl(pl.createdUnixNano))));
  }
  const pager = h('nav.pager#pipelines-pager', pagerLinks({
    page: f.page, next: r.nextPageToken, at: (page) => '#/pipelines' + hashOf({ ...f, page }), trail: newer,
    ids: ['pipelines-newest', 'pipelines-newer', 'pipelines-older'], labels: ['« Newest', '‹ Newer', 'Older ›'],
  }));
  const none = f.tenant ? `No pipeline of tenant ${f.tenant}.` : 'No pipeline yet. Run one with hodei pipeline run FILE.';
  root.append(h('h1', 'Pipelines'), h('form.filters#pipeline-filters', { onsubmit: (ev) => ev.preventDefault() }, tenantSel),
    h('p.summary#pipelines-summary', list.length ? `showing ${list.length} pipeline${list.length === 1 ? '' : 's'}, newest first` : (f.page ? 'No older pipeline.' : none)),
    h('div.scroll', h('table.list', h('thead', h('tr', h('th', 'ID'), h('th', 'Name'), h('th.hide-s', 'Tenant'), h('th', 'State'), h('th.num', 'Steps'), h('th.hide-s', 'Created'))), tbody)),
    pager);
}

// stepProgress sums a step's jobs up as `hodei pipeline get` does, for
// both the graph and the steps table (one answer, so they never differ):
// state is COMPLETED when every job completed; FAILED or CANCELLED when
// every job ended and one failed or was cancelled; PENDING while none has
// started (a job in its first attempt, still pending); RUNNING otherwise,
// scheduled jobs included. counts is "0/2 completed, 1 scheduled,
// 1 pending". A job the page does not have is one retention deleted once
// the pipeline ended, and one not read yet before (waiting). A step with
// no job yet is PENDING.
export function stepProgress(ids, jobsById, ended) {
  const by = {};
  let gone = 0;
  let waiting = 0;
  for (const id of ids) {
    const j = jobsById.get(id);
    if (!j) {
      if (ended) gone++;
      else waiting++;
      continue;
    }
    const st = jobState(j);
    by[st] = (by[st] || 0) + 1;
    if (st === 'PENDING' && num(j.attempt) <= 1) waiting++;
  }
  const total = ids.length;
  const n = (st) => by[st] || 0;
  const done = gone + n('COMPLETED') + n('FAILED') + n('CANCELLED');
  let state = 'RUNNING';
  if (total === 0 || waiting === total) state = 'PENDING'; // no job made yet, or none started
  else if (n('COMPLETED') === total) state = 'COMPLETED';
  else if (done === total && n('FAILED')) state = 'FAILED';
  else if (done === total && n('CANCELLED')) state = 'CANCELLED';
  else if (done === total) state = 'COMPLETED'; // the rest was deleted by retention
  const parts = [`${n('COMPLETED')}/${total} completed`];
  for (const st of ['PENDING', 'SCHEDULED', 'RUNNING', 'FAILED', 'CANCELLED']) if (n(st)) parts.push(`${n(st)} ${st.toLowerCase()}`);
  if (gone) parts.push(`${gone} deleted`);
  return { state, completed: n('COMPLETED'), total, counts: parts.join(', ') };
}

// layout places each step in a column by the length of the longest chain
// of needs before it, and returns {col, row} by step name.
export function layout(steps) {
  const by = new Map(steps.map((s) => [s.name, s]));
  const depth = new Map();
  const visit = (name, seen) => {
    if (depth.has(name)) return depth.get(name);
    if (seen.has(name)) return 0; // a cycle cannot pass validation; do not loop anyway
    seen.add(name);
    const s = by.get(name);
    let d = 0;
    for (const n of (s && s.needs) || []) if (by.has(n)) d = Math.max(d, visit(n, seen) + 1);
    depth.set(name, d);
    return d;
  };
  for (const s of steps) visit(s.name, new Set());
  const rows = [];
  const pos = new Map();
  for (const s of steps) {
    const c = depth.get(s.name);
    rows[c] = (rows[c] || 0);
    pos.set(s.name, { col: c, row: rows[c]++ });
  }
  return { pos, cols: rows.length, rowsMax: Math.max(1, ...rows) };
}

const W = 168, H = 54, GX = 56, GY = 18, PAD = 12;

// drawGraph draws the steps as boxes in columns by depth, arrows from
// each need; progress is stepProgress by step name.
function drawGraph(p, progress) {
  const steps = (p.pipeline && p.pipeline.steps) || [];
  const { pos, cols, rowsMax } = layout(steps);
  const width = PAD * 2 + cols * W + (cols - 1) * GX;
  const height = PAD * 2 + rowsMax * H + (rowsMax - 1) * GY;
  const g = svg('svg', { id: 'dag', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': 'pipeline graph' });
  g.append(svg('defs', {}, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
    svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead' }))));
  const xy = (name) => { const q = pos.get(name); return [PAD + q.col * (W + GX), PAD + q.row * (H + GY)]; };
  for (const s of steps) {
    for (const n of s.needs || []) {
      if (!pos.has(n)) continue;
      const [x1, y1] = xy(n);
      const [x2, y2] = xy(s.name);
      const ax = x1 + W, ay = y1 + H / 2, bx = x2, by = y2 + H / 2;
      const mx = (ax + bx) / 2;
      g.append(svg('path', { class: 'edge', d: `M${ax},${ay} C${mx},${ay} ${mx},${by} ${bx - 2},${by}`, 'marker-end': 'url(#arrow)' }));
    }
  }
  for (const s of steps) {
    const pr = progress.get(s.name);
    const st = pr.state;
    const [x, y] = xy(s.name);
    const first = (s.jobs || [])[0];
    const node = svg('a', { href: first ? '#/jobs/' + encodeURIComponent(first) : '#', class: 'node s-' + st.toLowerCase(), 'data-step': s.name, 'data-state': st },
      svg('title', {}, `${s.name}: ${st} (${pr.counts})`),
      svg('rect', { x, y, width: W, height: H, rx: 8 }),
      svg('text', { x: x + 12, y: y + 22, class: 'step-name' }, s.name.length > 20 ? s.name.slice(0, 19) + '…' : s.name),
      svg('text', { x: x + 12, y: y + 42, class: 'step-state' }, st + (pr.total > 1 ? ` ${pr.completed}/${pr.total}` : '')));
    g.append(node);
  }
  return g;
}

export async function renderOne(root, ctx, id) {
  let p = await get('/v1/pipelines/' + encodeURIComponent(id), {}, ctx.signal);
  id = p.pipeline.id;
  const jobsById = new Map((p.jobs || []).map((j) => [j.id, j]));
  const head = h('div.head');
  const graph = h('div.dag-wrap.card#pipeline-graph');
  const stepsBody = h('tbody#steps-body');
  root.append(h('p.crumbs', h('a', { href: '#/pipelines' }, 'Pipelines'), ' / ', id), head,
    h('p.summary', `tenant ${p.pipeline.tenant || 'default'} · created `, timeEl(p.pipeline.createdUnixNano)), graph,
    h('h2', 'Steps'), h('div.scroll', h('table.list', h('thead', h('tr', h('th', 'Step'), h('th', 'Needs'), h('th', 'State'), h('th', 'Jobs'))), stepsBody)));

  const draw = () => {
    head.replaceChildren(h('h1', p.pipeline.name || 'Pipeline', ' ', badge(pipeState(p))));
    if (ctx.can('cancel') && !terminal(pipeState(p))) {
      head.append(h('button.danger#cancel-pipeline', {
        type: 'button',
        onclick: async () => {
          if (!confirm(`Cancel pipeline ${p.pipeline.name || ''} ${id} and every step not finished?`)) return;
          try { await post(`/v1/pipelines/${encodeURIComponent(id)}:cancel`, { reason: 'cancelled from the web page' }); ctx.flash('Cancel requested.', 'ok'); refresh(); } catch (e) { ctx.flash(e); }
        },
      }, 'Cancel pipeline'));
    }
    const steps = p.pipeline.steps || [];
    const ended = terminal(pipeState(p));
    const progress = new Map(steps.map((s) => [s.name, stepProgress(s.jobs || [], jobsById, ended)]));
    graph.replaceChildren(drawGraph(p, progress));
    stepsBody.replaceChildren(...steps.map((s) => h('tr', { 'data-step': s.name },
      h('td', s.name), h('td', (s.needs || []).join(', ')),
      h('td.step-state', badge(progress.get(s.name).state)),
      h('td', h('div.sub', progress.get(s.name).counts), (s.jobs || []).map((jid) => {
        const j = jobsById.get(jid);
        return h('span.jobref', h('a.mono', { href: '#/jobs/' + encodeURIComponent(jid) }, shortId(jid)), ' ', j ? badge(jobState(j)) : '');
      })))));
  };
  draw();

  // refresh reads the pipeline again; one asked for while a read is on
  // its way runs after it, so the last change is never left out.
  let refreshing = false;
  let again = false;
  const refresh = () => {
    if (refreshing) { again = true; return; }
    refreshing = true;
    get('/v1/pipelines/' + encodeURIComponent(id), {}, ctx.signal).then((np) => {
      p = np;
      for (const j of p.jobs || []) { const old = jobsById.get(j.id); if (!old || num(j.version) >= num(old.version)) jobsById.set(j.id, j); }
      draw();
    }).catch((e) => { if (!ctx.signal.aborted) ctx.flash(e); }).finally(() => {
      refreshing = false;
      if (again && !ctx.signal.aborted) { again = false; refresh(); }
    });
  };
  subscribe({ pipeline: id }, {
    job: (j) => {
      const old = jobsById.get(j.id);
      if (old && num(j.version) < num(old.version)) return;
      const known = !!old;
      jobsById.set(j.id, j);
      if (!known) { refresh(); return; } // a step's jobs were made: read the pipeline again
      draw();
      if (terminal(jobState(j))) refresh(); // the pipeline's own state may have changed
    },
    pipeline: (ps) => { p = { ...p, state: ps.state, pipeline: ps.pipeline || p.pipeline }; draw(); },
    reset: () => refresh(),
    state: (s) => { if (s === 'open') refresh(); }, // what changed before the stream started
  }, ctx.signal);
}
