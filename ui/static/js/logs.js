// Following a job's output over HTTP: GET /v1/jobs/{id}/logs?follow=1, a
// Server-Sent Events stream whose "output" events carry the bytes in
// base64, each with the id ATTEMPT:OFFSET (the attempt, and the offset
// after its bytes). It goes on with the attempts of later retries and
// ends with an "end" event once the job has ended and every byte was
// sent. After a dropped connection, sse() resumes with Last-Event-ID from
// the byte after the last one shown, so the terminal gets every byte
// once.

import { APIError, sse } from './api.js';

function b64bytes(s) {
  const bin = atob(s || '');
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// follow streams the output of job id into onData(attempt, bytes), calls
// onAttempt(n) when the output of an attempt starts, and onEnd once the
// job has ended and all of it was shown; until then, or until signal
// aborts. onError gets a refusal (an APIError).
export function follow(id, { onData, onAttempt, onEnd, onError, onState }, signal) {
  let attempt = 0; // the attempt being shown; 0 before its first byte
  let ended = false;
  sse(`/v1/jobs/${encodeURIComponent(id)}/logs?follow=1`, {
    signal,
    onState,
    onError,
    onEnd: () => ended, // a stream cut before "end" is resumed
    onEvent: (ev) => {
      if (ev.event === 'end') {
        ended = true;
        if (onEnd) onEnd();
        return;
      }
      if (ev.event === 'error') {
        let body = null;
        try { body = JSON.parse(ev.data); } catch { /* not JSON */ }
        if (onError) onError(new APIError(0, body, ev.data));
        return;
      }
      if (ev.event !== 'output') return;
      const a = Number(String(ev.id).split(':')[0]) || 1;
      if (a !== attempt) {
        attempt = a;
        if (onAttempt) onAttempt(a);
      }
      const bytes = b64bytes(ev.data);
      if (bytes.length) onData(a, bytes);
    },
  });
}
