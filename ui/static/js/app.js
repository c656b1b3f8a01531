// The page's shell: login, who you are, hash routing between the views.
// Each view gets an AbortSignal that aborts when the user leaves it, which
// stops its streams and timers.

import { APIError, get, setToken, token } from './api.js';
import { clear, h } from './dom.js';
import * as overview from './views/overview.js';
import * as jobs from './views/jobs.js';
import * as jobView from './views/job.js';
import * as pipelines from './views/pipelines.js';
import * as workers from './views/workers.js';
import * as tenants from './views/tenants.js';
import * as cron from './views/cron.js';

// grants mirrors the server's role table (auth/role.go), only to hide what
// a role may not do; the server decides.
const grants = {
  admin: ['readJobs', 'submit', 'cancel', 'readTenants', 'manageTenants', 'manageWorkers'],
  operator: ['readJobs', 'cancel', 'readTenants', 'manageTenants', 'manageWorkers'],
  submitter: ['readJobs', 'submit', 'cancel', 'readTenants'],
  viewer: ['readJobs', 'readTenants'],
};

const routes = [
  [/^\/?$/, overview.render, 'overview'],
  [/^\/jobs\/?$/, jobs.render, 'jobs'],
  [/^\/jobs\/([^/]+)$/, jobView.render, 'jobs'],
  [/^\/pipelines\/?$/, pipelines.renderList, 'pipelines'],
  [/^\/pipelines\/([^/]+)$/, pipelines.renderOne, 'pipelines'],
  [/^\/workers\/?$/, workers.render, 'workers'],
  [/^\/tenants\/?$/, tenants.render, 'tenants'],
  [/^\/cron\/?$/, cron.render, 'cron'],
];

let me = null; // the token's description, from /v1/whoami
let current = null; // AbortController of the view shown

const view = document.getElementById('view');
const loginSection = document.getElementById('login');

// flash shows a message at the top of the page: kind 'error' or 'ok'.
export function flash(msg, kind = 'error') {
  const el = document.getElementById('flash');
  const text = msg instanceof APIError ? msg.explain() : msg instanceof Error ? msg.message : String(msg);
  el.replaceChildren(h('div.msg', { class: kind }, text, h('button.close', { type: 'button', title: 'Dismiss', onclick: () => el.replaceChildren() }, '×')));
  if (kind !== 'error') setTimeout(() => { if (el.firstChild && el.firstChild.textContent.startsWith(text)) el.replaceChildren(); }, 4000);
}

function can(perm) {
  const role = me ? me.role : '';
  return (grants[role] || []).includes(perm);
}

function showLogin(err) {
  if (current) current.abort();
  me = null;
  document.getElementById('nav').hidden = true;
  document.getElementById('me').hidden = true;
  for (const c of [...view.children]) if (c !== loginSection && c.tagName !== 'NOSCRIPT') c.remove();
  loginSection.hidden = false;
  const e = document.getElementById('login-error');
  e.hidden = !err;
  e.textContent = err ? (err instanceof APIError ? err.explain() : String(err.message || err)) : '';
  document.getElementById('token').focus();
}

async function login() {
  try {
    me = await get('/v1/whoami');
  } catch (e) {
    if (e instanceof APIError && e.httpStatus === 401) setToken('');
    showLogin(e);
    return false;
  }
  loginSection.hidden = true;
  const meEl = document.getElementById('me');
  const scope = me.tenants && me.tenants.length ? ` · tenants ${me.tenants.join(', ')}` : '';
  meEl.replaceChildren(
    h('span#whoami', { title: me.id ? `token ${me.id}` : '' }, me.name || '(unnamed token)'),
    ' ', h('span.role#role', me.role || 'no auth'), scope,
    ' ', h('button.link#logout', { type: 'button', onclick: () => { setToken(''); showLogin(); } }, 'Log out'));
  meEl.hidden = false;
  const nav = document.getElementById('nav');
  // A page the role may not read at all (workers, for a viewer) has no link.
  for (const a of nav.querySelectorAll('a[data-needs]')) a.hidden = !can(a.dataset.needs);
  nav.hidden = false;
  document.body.dataset.role = me.role || '';
  return true;
}

// route shows the view the location's hash names.
async function route() {
  if (!me) return;
  if (current) current.abort();
  current = new AbortController();
  document.getElementById('flash').replaceChildren();
  const signal = current.signal;
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query] = raw.split('?');
  const params = new URLSearchParams(query || '');
  for (const c of [...view.children]) if (c !== loginSection && c.tagName !== 'NOSCRIPT') c.remove();
  const root = h('div.page');
  view.append(root);
  for (const [re, fn, name] of routes) {
    const m = path.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.route === name);
    document.body.dataset.page = name;
    const ctx = { signal, me, can, flash, params, go: (hash) => { location.hash = hash; }, reload: () => { if (!signal.aborted) route(); } };
    try {
      await fn(root, ctx, ...m.slice(1).map(decodeURIComponent));
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof APIError && e.httpStatus === 401) { setToken(''); showLogin(e); return; }
      clear(root).append(h('p.error.page-error', e instanceof APIError ? e.explain() : String(e)));
    }
    return;
  }
  root.append(h('h1', 'Not found'), h('p', 'No page at ', h('code', raw), '. ', h('a', { href: '#/' }, 'Overview')));
}

document.getElementById('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const t = document.getElementById('token').value.trim();
  if (!t) return;
  setToken(t);
  if (await login()) {
    document.getElementById('token').value = '';
    route();
  }
});

window.addEventListener('hashchange', route);

(async () => {
  if (token() || await noAuthServer()) {
    if (await login()) await route();
  } else {
    showLogin();
  }
  // For BenchmarkWebPageFirstLoad: when the first screen was ready,
  // counted from the start of the navigation.
  performance.mark('hodei-ready');
})();

// noAuthServer reports whether the server answers without a token (one run
// with --insecure-no-auth).
async function noAuthServer() {
  try {
    await get('/v1/whoami');
    return true;
  } catch {
    return false;
  }
}
