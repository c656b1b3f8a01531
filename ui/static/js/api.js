// The page's only way to the server: the REST/JSON API under /v1/ and its
// Server-Sent Events, with the token as "Authorization: Bearer". The token
// lives in sessionStorage: it is gone when the tab closes, and other tabs
// and sites never see it.

const tokenKey = 'hodei.token';

export function token() {
  return sessionStorage.getItem(tokenKey) || '';
}

export function setToken(t) {
  if (t) sessionStorage.setItem(tokenKey, t);
  else sessionStorage.removeItem(tokenKey);
}

// APIError is a refused or failed call: the HTTP status and the server's
// JSON error ({code, status, message, field}) when it sent one.
export class APIError extends Error {
  constructor(httpStatus, body, text) {
    const msg = (body && body.message) || text || `HTTP ${httpStatus}`;
    super(msg);
    this.httpStatus = httpStatus;
    this.status = (body && body.status) || '';
    this.field = (body && body.field) || '';
    this.serverMessage = msg;
  }

  // explain says what happened in words for people.
  explain() {
    switch (this.httpStatus) {
      case 401: return `Not logged in or the token is no longer valid (401): ${this.serverMessage}`;
      case 403: return `Refused (403): your token may not do this. The server said: ${this.serverMessage}`;
      case 404: return `Not found (404): ${this.serverMessage}`;
      default: return `${this.status || 'Error'} (${this.httpStatus}): ${this.serverMessage}` +
        (this.field ? ` [field ${this.field}]` : '');
    }
  }
}

function headers(extra) {
  const h = { Accept: 'application/json', ...extra };
  const t = token();
  if (t) h.Authorization = 'Bearer ' + t;
  return h;
}

// qs turns {a: 1, b: '', c: [x, y]} into "?a=1&c=x&c=y" (empty values left out).
export function qs(q) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q || {})) {
    if (v === undefined || v === null || v === '' || v === false) continue;
    if (Array.isArray(v)) for (const x of v) p.append(k, x);
    else p.append(k, String(v));
  }
  const s = p.toString();
  return s ? '?' + s : '';
}

// call makes one JSON call and returns the decoded answer, or throws an
// APIError.
export async function call(method, path, body, signal) {
  const init = { method, headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }), cache: 'no-store', signal };
  if (body !== undefined) init.body = JSON.stringify(body);
  const r = await fetch(path, init);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : {}; } catch { data = null; }
  if (!r.ok) throw new APIError(r.status, data, text.trim());
  return data || {};
}

export const get = (path, q, signal) => call('GET', path + qs(q), undefined, signal);
export const post = (path, body) => call('POST', path, body === undefined ? {} : body);
export const put = (path, body) => call('PUT', path, body);

// sleep waits ms, or until signal aborts.
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

// sse reads a Server-Sent Events stream with fetch (EventSource cannot send
// an Authorization header) and calls onEvent({id, event, data}) for each
// event. It reconnects after a dropped connection with Last-Event-ID, so
// that the server resumes where it stopped, until signal aborts. A refused
// stream (4xx) is not retried: onError gets its APIError. onState gets
// 'open' and 'retrying' as the connection comes and goes. url may be a
// function of the last event id, for streams that resume by a query
// parameter instead. When the server ends the stream, onEnd (if given)
// decides: true stops, false reconnects.
export async function sse(url, { onEvent, onError, onState, onEnd, signal }) {
  let lastId = '';
  let retry = 1000;
  while (!signal.aborted) {
    try {
      const h = headers({ Accept: 'text/event-stream' });
      if (lastId) h['Last-Event-ID'] = lastId;
      const u = typeof url === 'function' ? url(lastId) : url;
      const r = await fetch(u, { headers: h, signal, cache: 'no-store' });
      if (!r.ok) {
        const text = await r.text();
        let body = null;
        try { body = JSON.parse(text); } catch { /* not JSON */ }
        const err = new APIError(r.status, body, text.trim());
        if (r.status >= 400 && r.status < 500) { if (onError) onError(err); return; }
        throw err;
      }
      if (onState) onState('open');
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      let ev = { id: '', event: '', data: [] };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.search(/\r\n|\r|\n/)) >= 0) {
          if (buf[i] === '\r' && i === buf.length - 1) break; // maybe \r\n split across reads
          const line = buf.slice(0, i);
          buf = buf.slice(i + (buf.startsWith('\r\n', i) ? 2 : 1));
          if (line === '') {
            if (ev.data.length) {
              if (ev.id) lastId = ev.id;
              try {
                onEvent({ id: ev.id || lastId, event: ev.event || 'message', data: ev.data.join('\n') });
              } catch (err) {
                setTimeout(() => { throw err; }); // a bug of the page's, not the stream's: report it, go on
              }
            }
            ev = { id: '', event: '', data: [] };
            continue;
          }
          if (line.startsWith(':')) continue;
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          let val = c < 0 ? '' : line.slice(c + 1);
          if (val.startsWith(' ')) val = val.slice(1);
          if (field === 'data') ev.data.push(val);
          else if (field === 'id') ev.id = val;
          else if (field === 'event') ev.event = val;
          else if (field === 'retry' && /^\d+$/.test(val)) retry = Number(val);
        }
      }
      if (onEnd && onEnd()) return;
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof APIError && onError && e.httpStatus < 500) { onError(e); return; }
    }
    if (signal.aborted) return;
    if (onState) onState('retrying');
    await sleep(retry, signal);
  }
}
