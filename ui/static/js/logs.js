// Following a job's output over HTTP: GET /v1/jobs/{id}/logs?follow=1, a
// stream of the attempt's bytes (LogData: attempt, offset, base64 data)
// that goes on with later retries until the job ends. After a dropped
// connection it resumes from the attempt and byte offset after the last
// byte shown, so the terminal gets every byte once.

import { qs, sse } from './api.js';

function b64bytes(s) {
  const bin = atob(s || '');
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// follow streams the output of job id into onData(attempt, bytes) and
// calls onAttempt(n) when an attempt's output starts, until the job ends
// (onEnd) or signal aborts.
export function follow(id, { onData, onAttempt, onEnd, onError, onState }, signal) {
  let attempt = 0; // the attempt being shown; 0 before the first byte
  let offset = 0; // bytes of it shown so far
  const url = () => `/v1/jobs/${encodeURIComponent(id)}/logs` + qs(attempt ?
    { follow: 1, attempt, offset, laterAttempts: true } : { follow: 1 });
  sse(url, {
    signal,
    onState,
    onError,
    onEnd: () => { if (onEnd) onEnd(); return true; },
    onEvent: (ev) => {
      let d;
      try { d = JSON.parse(ev.data); } catch { return; }
      const a = Number(d.attempt || 0);
      const off = Number(d.offset || 0);
      let bytes = b64bytes(d.data);
      if (a !== attempt) {
        attempt = a;
        offset = 0;
        if (onAttempt) onAttempt(a);
      }
      if (off < offset) bytes = bytes.subarray(Math.min(bytes.length, offset - off)); // seen already
      if (bytes.length === 0) return;
      offset = off + (d.data ? b64bytes(d.data).length : 0);
      onData(a, bytes);
    },
  });
}
