package server

import (
	"bufio"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// sseEvent is one event of an SSE stream.
type sseEvent struct{ id, event, data string }

// sseClient reads one SSE response; events arrive on C, which is closed
// when the stream ends. close drops the connection.
type sseClient struct {
	C      <-chan sseEvent
	resp   *http.Response
	cancel context.CancelFunc
	done   chan struct{}
}

// openSSE starts GET path with token and lastID as Last-Event-ID ("":
// none) and fails the test unless it is a 200 event stream.
func (s *sut) openSSE(t testing.TB, token, path, lastID string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", s.httpURL(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	ch := make(chan sseEvent, 64)
	c := &sseClient{C: ch, resp: resp, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" || ev.data != "" {
					select {
					case ch <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data += line[6:]
			}
		}
	}()
	t.Cleanup(c.close)
	return c
}

// close drops the connection and waits for the reader.
func (c *sseClient) close() {
	c.cancel()
	c.resp.Body.Close()
	<-c.done
}

// next returns the next event, failing the test after a deadline.
func (c *sseClient) next(t testing.TB) (sseEvent, bool) {
	t.Helper()
	select {
	case ev, ok := <-c.C:
		return ev, ok
	case <-time.After(20 * time.Second):
		t.Fatal("no event within 20 s")
		return sseEvent{}, false
	}
}

// seqOf is the sequence number of an event cursor.
func seqOf(t testing.TB, id string) uint64 {
	t.Helper()
	_, s, _ := strings.Cut(id, ".")
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("event id %q: %v", id, err)
	}
	return n
}

// TestSSEEventsResume follows GET /v1/events while jobs run on a real
// agent, drops the connection in the middle, and resumes with
// Last-Event-ID: the events received on both connections are exactly the
// journal's, in order, with no gap and no duplicate, the same as a gRPC
// watch that never dropped received.
func TestSSEEventsResume(t *testing.T) {
	s := setup(t)
	startAgent(t, s, t.TempDir(), slog.New(slog.DiscardHandler))
	tok := s.adminToken(t)
	// The reference: a gRPC watch of the same events, never dropped.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ref, err := s.jobs.Watch(ctx, &pb.WatchRequest{AllKinds: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ref.Header(); err != nil {
		t.Fatal(err)
	}
	first := s.openSSE(t, tok, "/v1/events", "")

	const n = 12
	ids := make([]string, n)
	for i := range ids {
		ids[i] = s.submit(t, &pb.JobSpec{Command: []string{"sh", "-c", "echo " + strconv.Itoa(i)}})
	}
	var got []sseEvent
	for len(got) < 10 {
		ev, ok := first.next(t)
		if !ok {
			t.Fatal("the stream ended")
		}
		got = append(got, ev)
	}
	first.close() // dropped while the jobs go on changing state
	second := s.openSSE(t, tok, "/v1/events", got[len(got)-1].id)
	// Until every job has ended: the last event of each is terminal.
	ended := map[string]bool{}
	for len(ended) < n {
		ev, ok := second.next(t)
		if !ok {
			t.Fatal("the resumed stream ended")
		}
		got = append(got, ev)
		if ev.event == "job" {
			var je pb.JobEvent
			if err := protojson.Unmarshal([]byte(ev.data), &je); err != nil {
				t.Fatal(err)
			}
			if job.State(je.GetJob().GetState()).Terminal() {
				ended[je.GetJob().GetId()] = true
			}
		}
	}
	for i, ev := range got {
		if i > 0 && seqOf(t, ev.id) != seqOf(t, got[i-1].id)+1 {
			t.Fatalf("event %d: id %s after %s: a gap or a repeat", i, ev.id, got[i-1].id)
		}
		want, err := ref.Recv()
		for err == nil && i == 0 && seqOf(t, want.GetCursor()) < seqOf(t, ev.id) {
			want, err = ref.Recv() // before the SSE stream began
		}
		if err != nil {
			t.Fatal(err)
		}
		var je pb.JobEvent
		if err := protojson.Unmarshal([]byte(ev.data), &je); err != nil {
			t.Fatal(err)
		}
		if je.GetCursor() != ev.id || want.GetCursor() != ev.id || je.GetJob().GetVersion() != want.GetJob().GetVersion() ||
			je.GetJob().GetId() != want.GetJob().GetId() || (ev.event == "worker") != (want.GetWorker() != nil) {
			t.Fatalf("event %d: REST %s %s, gRPC %v", i, ev.event, ev.data, want)
		}
	}
}

// TestSSEEventsFilters checks the query filters and the refusals.
func TestSSEEventsFilters(t *testing.T) {
	s := setup(t)
	tok := s.adminToken(t)
	viewer, _ := s.createToken(t, "viewer")
	s.setTenant(t, &pb.Tenant{Name: "other"})
	c := s.openSSE(t, viewer, "/v1/events?tenant=other&state=JOB_STATE_PENDING", "")
	s.submit(t, &pb.JobSpec{Command: []string{"true"}})
	want := s.submit(t, &pb.JobSpec{Tenant: "other", Command: []string{"true"}})
	ev, _ := c.next(t)
	var je pb.JobEvent
	if err := protojson.Unmarshal([]byte(ev.data), &je); err != nil || ev.event != "job" || je.GetJob().GetId() != want {
		t.Fatalf("first event %v (%v), want job %s", ev, err, want)
	}
	for _, bad := range []struct {
		path, lastID string
		status       int
	}{
		{"/v1/events?bogus=1", "", 400},
		{"/v1/events?state=NOPE", "", 400},
		{"/v1/events", "not-a-cursor", 400},
		{"/v1/events?job=7ZZZZZZZZZ", "", 404},
	} {
		req, _ := http.NewRequest("GET", s.httpURL(bad.path), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if bad.lastID != "" {
			req.Header.Set("Last-Event-ID", bad.lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != bad.status || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s (Last-Event-ID %q): %d %s, want %d", bad.path, bad.lastID, resp.StatusCode, b, bad.status)
		}
	}
	// A cursor of another run of the server: a reset, then on.
	r := s.openSSE(t, tok, "/v1/events", "zzz.5")
	if ev, _ := r.next(t); ev.event != "reset" {
		t.Errorf("stale cursor: first event %v, want reset", ev)
	}
}

// TestSSELogs follows a job's output over GET /v1/jobs/{id}/logs and
// resumes it from Last-Event-ID: the bytes equal the stored log.
func TestSSELogs(t *testing.T) {
	s := setup(t)
	startAgent(t, s, t.TempDir(), slog.New(slog.DiscardHandler))
	tok := s.adminToken(t)
	id := s.submit(t, &pb.JobSpec{NoPty: true, Script: `i=0; while [ $i -lt 300 ]; do echo "line $i"; i=$((i+1)); done`})
	c := s.openSSE(t, tok, "/v1/jobs/"+id+"/logs?follow=1", "")
	var out []byte
	var last string
	for len(out) < 100 {
		ev, ok := c.next(t)
		if !ok || ev.event != "output" {
			t.Fatalf("event %v", ev)
		}
		b, err := base64.StdEncoding.DecodeString(ev.data)
		if err != nil {
			t.Fatal(err)
		}
		out, last = append(out, b...), ev.id
	}
	c.close()
	c = s.openSSE(t, tok, "/v1/jobs/"+id+"/logs?follow=1", last)
	for {
		ev, ok := c.next(t)
		if !ok {
			t.Fatal("ended without an end event")
		}
		if ev.event == "end" {
			break
		}
		b, _ := base64.StdEncoding.DecodeString(ev.data)
		out = append(out, b...)
	}
	s.waitDone(t, id)
	var want strings.Builder
	for i := range 300 {
		want.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	if string(out) != want.String() {
		t.Errorf("followed %d bytes, want %d:\n%q", len(out), want.Len(), out)
	}
}
