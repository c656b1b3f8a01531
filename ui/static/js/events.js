// Live events from GET /v1/events (Server-Sent Events): job, worker and
// pipeline changes as they are committed, filtered by the server by
// tenant, job, pipeline and state. The stream resumes after a dropped
// connection with Last-Event-ID, so nothing is missed or seen twice.

import { qs, sse } from './api.js';

// subscribe calls handlers.job(job), handlers.worker(worker, removed),
// handlers.pipeline(pipelineStatus) or handlers.reset() for each event
// matching filters ({tenant, job, pipeline, state}) until signal aborts.
// handlers.state gets 'open' and 'retrying'; handlers.error a refused
// stream.
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

// dispatch hands one decoded event to its handler by its SSE event type:
// job, worker (data.worker; data.workerRemoved when it is gone),
// pipeline (data.pipeline: the PipelineStatus without its jobs) or reset
// (events were missed: reload what is shown).
function dispatch(type, data, handlers) {
  switch (type) {
    case 'job': if (data.job && handlers.job) handlers.job(data.job); break;
    case 'worker': if (data.worker && handlers.worker) handlers.worker(data.worker, !!data.workerRemoved); break;
    case 'pipeline': if (data.pipeline && handlers.pipeline) handlers.pipeline(data.pipeline); break;
    case 'reset': if (handlers.reset) handlers.reset(); break;
  }
}
