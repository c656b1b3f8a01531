package server

// Server-Sent Events over the gRPC streams Watch and Logs, for browsers
// (EventSource) and curl. Each handler is a gRPC client of the server over
// the gateway's in-process connection, so authentication, scope, the
// per-token stream limit and the end of streams at shutdown are the gRPC
// ones. Memory per stream is bounded as the gRPC stream's is: the handler
// holds one message at a time, and a client that does not read stops it
// (HTTP/2 and gRPC flow control), while the journal or the log file keeps
// what it has not read.

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/hodei-jobs/hodei/proto"
)

// sseHeartbeat is how often an SSE stream with nothing to send writes a
// comment, so that proxies and browsers keep it open.
const sseHeartbeat = 15 * time.Second

// sseWriteTimeout is how long an SSE client may take none of what is sent
// to it before its stream is ended (it resumes with Last-Event-ID).
var sseWriteTimeout = 30 * time.Second // a variable for tests

// events serves GET /v1/events: WatchRequest from the query (tenant, job
// or job_id, pipeline, state), resumed from the Last-Event-ID header or
// ?last_event_id=. Each event is "id: CURSOR", "event: job|worker|pipeline|reset",
// "data: " the JobEvent in protojson.
func (r *rest) events(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	wr := &pb.WatchRequest{AllKinds: true}
	if v := q.Get("job"); v != "" { // the short name of job_id
		wr.JobId = v
		q.Del("job")
	}
	after := req.Header.Get("Last-Event-ID")
	if v := q.Get("last_event_id"); v != "" {
		after = v
	}
	q.Del("last_event_id")
	for _, k := range []string{"after", "allKinds", "all_kinds"} {
		if q.Has(k) {
			writeHTTPError(w, badRequest(k, fmt.Sprintf("%s is set by the server; resume with the Last-Event-ID header or last_event_id", k)))
			return
		}
	}
	if err := (strictQuery{}).Parse(wr, q, utilities.NewDoubleArray(nil)); err != nil {
		writeHTTPError(w, queryError(err))
		return
	}
	wr.After = after
	sc, release, err := r.streams.acquire()
	if err != nil {
		writeHTTPError(w, errorOf(err))
		return
	}
	defer release()
	ctx, cancel := context.WithCancel(r.outgoing(req))
	defer cancel()
	stream, err := sc.jobs.Watch(ctx, wr)
	if err != nil {
		writeHTTPError(w, restField(errorOf(err), wr.ProtoReflect().Descriptor(), nil, nil, "Watch"))
		return
	}
	sse(w, req, stream.Recv, stream.Header, wr.ProtoReflect().Descriptor(), func(ev *pb.JobEvent) (id, event string, data []byte, err error) {
		kind := jobEvent.String()
		switch {
		case ev.GetReset_():
			kind = "reset"
		case ev.GetWorker() != nil:
			kind = workerEvent.String()
		case ev.GetPipeline() != nil:
			kind = pipelineEvent.String()
		}
		data, err = protojson.Marshal(ev)
		return ev.GetCursor(), kind, data, err
	})
}

// logs serves GET /v1/jobs/{id}/logs: LogsRequest from the query (offset,
// attempt, stream, follow), resumed from Last-Event-ID. Each event is
// "id: ATTEMPT:NEXT-OFFSET", "event: output", "data: " the bytes in
// base64; with follow the stream ends with "event: end" once the job has
// ended and all its output was sent.
func (r *rest) logs(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	lr := &pb.LogsRequest{Id: req.PathValue("id")}
	resume := req.Header.Get("Last-Event-ID")
	if v := q.Get("last_event_id"); v != "" {
		resume = v
	}
	q.Del("last_event_id")
	if err := (strictQuery{}).Parse(lr, q, utilities.NewDoubleArray(nil)); err != nil {
		writeHTTPError(w, queryError(err))
		return
	}
	if resume != "" {
		a, o, ok := strings.Cut(resume, ":")
		attempt, aerr := strconv.ParseInt(a, 10, 32)
		offset, oerr := strconv.ParseInt(o, 10, 64)
		if !ok || aerr != nil || oerr != nil || attempt < 1 || offset < 0 {
			writeHTTPError(w, badRequest("Last-Event-ID", fmt.Sprintf("%q is not ATTEMPT:OFFSET, the id of a log event", clip(resume, 64))))
			return
		}
		// The byte after the last one received, and the attempts after it.
		lr.Attempt, lr.Offset, lr.LaterAttempts = int32(attempt), offset, true
	}
	sc, release, err := r.streams.acquire()
	if err != nil {
		writeHTTPError(w, errorOf(err))
		return
	}
	defer release()
	ctx, cancel := context.WithCancel(r.outgoing(req))
	defer cancel()
	stream, err := sc.jobs.Logs(ctx, lr)
	if err != nil {
		writeHTTPError(w, restField(errorOf(err), lr.ProtoReflect().Descriptor(), nil, nil, "Logs"))
		return
	}
	ended := sse(w, req, stream.Recv, stream.Header, lr.ProtoReflect().Descriptor(), func(d *pb.LogData) (id, event string, data []byte, err error) {
		next := d.GetOffset() + int64(len(d.GetData()))
		data = make([]byte, base64.StdEncoding.EncodedLen(len(d.GetData())))
		base64.StdEncoding.Encode(data, d.GetData())
		return fmt.Sprintf("%d:%d", d.GetAttempt(), next), "output", data, nil
	})
	if ended {
		// EventSource reconnects when a stream closes: this says not to.
		fmt.Fprint(w, "event: end\ndata: {}\n\n")
		flush(w)
	}
}

// sse runs one SSE response over a gRPC server stream: it waits for the
// stream's header (so that a refusal is a JSON error with its status),
// then writes each message as an event, flushing each, with a heartbeat
// comment every sseHeartbeat; a refusal names the field of the request in
// by its JSON name. It reports whether the stream ended
// normally (io.EOF); an error after the header is sent as "event: error"
// with the JSON error, and the response ends.
func sse[M proto.Message](w http.ResponseWriter, req *http.Request, recv func() (M, error), header func() (metadata.MD, error),
	in protoreflect.MessageDescriptor, encode func(M) (id, event string, data []byte, err error)) (ended bool) {
	md, err := header()
	if err == nil && md == nil { // ended without a header: its status says how
		if _, err = recv(); !errors.Is(err, io.EOF) {
			writeHTTPError(w, restField(errorOf(err), in, nil, nil, ""))
			return false
		}
		startSSE(w)
		return true
	}
	if err != nil {
		writeHTTPError(w, restField(errorOf(err), in, nil, nil, ""))
		return false
	}
	type msg struct {
		m   M
		err error
	}
	// One receiver, owned here: the caller's deferred cancel ends its
	// stream, and it is waited for.
	msgs := make(chan msg)
	done := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := recv()
			select {
			case msgs <- msg{m, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()

	startSSE(w)
	rc := http.NewResponseController(w)
	// send writes one event or comment and flushes it, giving up on a
	// client that takes none of it for sseWriteTimeout: what it holds
	// (buffers, its gRPC stream) goes with it.
	send := func(format string, args ...any) error {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return err
		}
		return rc.Flush()
	}
	beat := time.NewTicker(sseHeartbeat)
	defer beat.Stop()
	for {
		var next msg
	wait:
		for {
			select {
			case next = <-msgs:
				break wait
			case <-req.Context().Done():
				return false
			case <-beat.C:
				if err := send(": keep-alive\n\n"); err != nil {
					return false
				}
			}
		}
		if next.err != nil {
			if errors.Is(next.err, io.EOF) {
				return true
			}
			if req.Context().Err() != nil {
				return false // the client left
			}
			b, _ := errorJSON.Marshal(restField(errorOf(next.err), in, nil, nil, "").body)
			_ = send("event: error\ndata: %s\n\n", b)
			return false
		}
		id, event, data, err := encode(next.m)
		if err != nil {
			return false
		}
		if err := send("id: %s\nevent: %s\ndata: %s\n\n", id, event, data); err != nil {
			return false // the client left, or stopped reading
		}
	}
}

// startSSE writes the header of an event stream.
func startSSE(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	flush(w)
}

// flush sends what w holds to the client.
func flush(w http.ResponseWriter) {
	_ = http.NewResponseController(w).Flush()
}
