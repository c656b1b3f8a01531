// Formatting of API values for people. The API sends int64 as strings and
// enums by name (JOB_STATE_RUNNING); times are Unix nanoseconds.

import { h } from './dom.js';

// enumName strips an enum's prefix: enumName('JOB_STATE_RUNNING') is 'RUNNING'.
export function enumName(v, prefix) {
  if (v === undefined || v === null || v === '') return '';
  const s = String(v);
  return s.startsWith(prefix) ? s.slice(prefix.length) : s;
}

export const jobState = (j) => enumName(j && j.state, 'JOB_STATE_') || 'UNSPECIFIED';

// num reads an int64 (a string) or a number; absent is 0.
export function num(v) {
  if (v === undefined || v === null || v === '') return 0;
  return Number(v);
}

// ms turns Unix nanoseconds into a JavaScript time (milliseconds); 0 stays 0.
export const ms = (ns) => Math.floor(num(ns) / 1e6);

// when shows a time as "12:03:04" today, else "2026-03-01 12:03"; '' for 0.
export function when(ns) {
  const t = ms(ns);
  if (!t) return '';
  const d = new Date(t);
  const now = new Date();
  const pad = (n) => String(n).padStart(2, '0');
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === now.toDateString()) return hms;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms.slice(0, 5)}`;
}

// timeEl is a <time> with the full ISO time as its title.
export function timeEl(ns) {
  const t = ms(ns);
  if (!t) return '';
  return h('time', { datetime: new Date(t).toISOString(), title: new Date(t).toISOString() }, when(ns));
}

// dur shows milliseconds as "850ms", "12.3s", "4m05s", "2h03m", "3d04h".
export function dur(msv) {
  if (msv < 0) msv = 0;
  if (msv < 1000) return `${Math.round(msv)}ms`;
  const s = msv / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(hr / 24)}d${String(hr % 24).padStart(2, '0')}h`;
}

// ago shows how long ago a time was: "5s ago".
export function ago(ns) {
  const t = ms(ns);
  if (!t) return '';
  return dur(Date.now() - t) + ' ago';
}

// runtime is how long a job ran, or has been running.
export function runtime(j) {
  const start = ms(j.startedUnixNano);
  if (!start) return '';
  const end = ms(j.finishedUnixNano) || Date.now();
  return dur(end - start);
}

// badge is a state shown as a coloured label.
export function badge(state) {
  const s = String(state || '').toLowerCase();
  return h('span.badge', { class: 's-' + s, 'data-state': state }, state);
}

// shortId is how an id is shown: whole, as the CLI shows it (the first
// ten characters of a ULID are its millisecond, shared by jobs submitted
// together, so no shorter start is sure to tell them apart).
export const shortId = (id) => String(id || '');

// labels renders a map of labels as k=v chips.
export function labels(m) {
  const entries = Object.entries(m || {}).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return '';
  return h('span.chips', entries.map(([k, v]) => h('span.chip', `${k}=${v}`)));
}

// res shows resources: "2 slots, 500m CPU, 256 MiB".
export function res(r) {
  if (!r) return '';
  const parts = [];
  if (num(r.slots)) parts.push(`${num(r.slots)} slot${num(r.slots) === 1 ? '' : 's'}`);
  if (num(r.cpuMillis)) parts.push(`${num(r.cpuMillis)}m CPU`);
  if (num(r.memoryMib)) parts.push(`${num(r.memoryMib)} MiB`);
  return parts.join(', ');
}

// pct shows a fraction as a percentage.
export const pct = (f) => `${(100 * (f || 0)).toFixed(f && f < 0.1 ? 1 : 0)}%`;

// bar is a horizontal bar for a fraction (0–1), with an optional marker
// at another fraction (a fair share, a limit).
export function bar(frac, marker, title) {
  const b = h('span.bar', { title: title || '' });
  const fill = h('span.fill');
  fill.style.width = `${Math.min(100, Math.max(0, 100 * (frac || 0)))}%`;
  if (frac > 1) b.classList.add('over');
  b.append(fill);
  if (marker !== undefined && marker !== null) {
    const m = h('span.mark');
    m.style.left = `${Math.min(100, Math.max(0, 100 * marker))}%`;
    b.append(m);
  }
  return b;
}

// terminal reports whether a job state is final.
export const terminal = (s) => s === 'COMPLETED' || s === 'FAILED' || s === 'CANCELLED';
