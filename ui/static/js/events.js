// Live events from GET /v1/events (Server-Sent Events): job, worker and
// pipeline changes as they are committed, filtered by the server by
// tenant, job, pipeline and state. The stream resumes after a dropped
// connection with Last-Event-ID, so nothing is missed or seen twice.

import { qs, sse } from './api.js';

// subscribe calls handlers.job(job), handlers.worker(worker) or
// handlers.pipeline(pipeline) for each event matching filters ({tenant,
// job, pipeline, state}) until signal aborts. handlers.state gets 'open'
// and 'retrying'; handlers.error a refused stream.
export function subscribe(filters, handlers, signal) {
  const url = '/v1/events' + qs(filters);
  sse(url, {
    signal,
    onState: handlers.state,
    onError: handlers.error,
    onEvent: (ev) => {
      let data;
      try { data = JSON.parse(ev.data); } catch { return; }
      dispatch(ev.event, data, handlers);
    },
  });
}

// dispatch hands one decoded event to its handler: by the SSE event type
// when the server names one, else by the field the JSON carries.
function dispatch(type, data, handlers) {
  const t = (type || '').toLowerCase();
  const job = data.job || (t === 'job' ? data : null);
  const worker = data.worker || (t === 'worker' ? data : null);
  const pipeline = data.pipeline || (t === 'pipeline' ? data : null);
  if (job && handlers.job) handlers.job(job);
  if (worker && handlers.worker) handlers.worker(worker);
  if (pipeline && handlers.pipeline) handlers.pipeline(pipeline);
}
