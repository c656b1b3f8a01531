package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/client"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// fakeAttach is a JobService whose Attach runs attach, for the pump's
// tests.
type fakeAttach struct {
	hodeipb.UnimplementedJobServiceServer
	attach func(hodeipb.JobService_AttachServer) error
}

func (f *fakeAttach) Attach(st hodeipb.JobService_AttachServer) error { return f.attach(st) }

// startFakeAttach serves attach on loopback and returns a client of it.
func startFakeAttach(t *testing.T, attach func(hodeipb.JobService_AttachServer) error) *client.Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hodeipb.RegisterJobServiceServer(srv, &fakeAttach{attach: attach})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	cl, err := client.Dial(context.Background(), lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cl.Close()
		srv.Stop()
		<-done
	})
	return cl
}

// attached answers an AttachOpen: Attached, and the input held with
// limit bytes of credit.
func attached(st hodeipb.JobService_AttachServer, limit int64) (*hodeipb.AttachOpen, error) {
	m, err := st.Recv()
	if err != nil {
		return nil, err
	}
	open := m.GetOpen()
	if err := st.Send(&hodeipb.AttachResponse{Msg: &hodeipb.AttachResponse_Attached{Attached: &hodeipb.Attached{JobId: open.GetJobId(), Attempt: 1}}}); err != nil {
		return nil, err
	}
	return open, st.Send(&hodeipb.AttachResponse{Msg: &hodeipb.AttachResponse_Input{Input: &hodeipb.InputState{Held: true, Limit: limit}}})
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond every 5 ms until it holds, failing after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// TestRunPumpFailureKeepsEscapes: when the server ends hodei run's input
// stream (here on a resize), the pump says why on stderr, drops the keys
// typed after without saying so again, and still reads them for the
// escapes: Enter ~. detaches.
func TestRunPumpFailureKeepsEscapes(t *testing.T) {
	cl := startFakeAttach(t, func(st hodeipb.JobService_AttachServer) error {
		if _, err := attached(st, 1<<20); err != nil {
			return err
		}
		for {
			m, err := st.Recv()
			if err != nil {
				return err
			}
			if m.GetResize() != nil {
				return status.Error(codes.InvalidArgument, "resize: no such size")
			}
		}
	})
	pr, pw := io.Pipe()
	var notes syncBuffer
	p := newPump(cl, pumpConfig{jobID: "j", src: pr, esc: newEscaper(), claim: true, notes: &notes,
		size: func() *hodeipb.TerminalSize { return &hodeipb.TerminalSize{Rows: 24, Cols: 80} }})
	type result struct {
		j   *hodeipb.Job
		err error
	}
	done := make(chan result, 1)
	go func() {
		j, err := p.run(context.Background(), func() { pw.CloseWithError(io.ErrClosedPipe) })
		done <- result{j, err}
	}()
	waitFor(t, "the input to be held", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.held
	})
	p.resize()
	const why = "your keys no longer reach the job: resize: no such size"
	waitFor(t, "the pump to say why the input stopped", func() bool { return strings.Contains(notes.String(), why) })
	if _, err := pw.Write([]byte("ls\r")); err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Write([]byte("~.")); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.j != nil || r.err != nil {
			t.Fatalf("the pump ended with %v, %v; want a detach", r.j, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Enter ~. did not detach after the input failed; notes %q", notes.String())
	}
	if n := strings.Count(notes.String(), why); n != 1 {
		t.Fatalf("notes %q: the reason %d times, want once", notes.String(), n)
	}
}

// TestPumpSendsKeysBeforeTheDetach: keys read in the same chunk as the
// Enter ~. that follows them are sent before the stream closes.
func TestPumpSendsKeysBeforeTheDetach(t *testing.T) {
	got := make(chan string, 1)
	cl := startFakeAttach(t, func(st hodeipb.JobService_AttachServer) error {
		if _, err := attached(st, 1<<20); err != nil {
			return err
		}
		var in []byte
		for {
			m, err := st.Recv()
			if err == io.EOF { // the client detached
				got <- string(in)
				return nil
			}
			if err != nil {
				return err
			}
			in = append(in, m.GetInput()...)
		}
	})
	pr, pw := io.Pipe()
	p := newPump(cl, pumpConfig{jobID: "j", src: pr, esc: newEscaper(), claim: true, notes: io.Discard})
	done := make(chan error, 1)
	go func() {
		_, err := p.run(context.Background(), func() { pw.CloseWithError(io.ErrClosedPipe) })
		done <- err
	}()
	waitFor(t, "the input to be held", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.held
	})
	if _, err := pw.Write([]byte("touch pasted\r~.")); err != nil {
		t.Fatal(err)
	}
	select {
	case in := <-got:
		if in != "touch pasted\r" {
			t.Fatalf("the server got %q before the detach, want the keys typed before it", in)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not detach")
	}
	if err := <-done; err != nil {
		t.Fatalf("detach: %v", err)
	}
}

// TestPumpSendsAgainWhatWasNotAcked: on a new stream (the server came
// back), the pump names the same input and the offset of the first byte
// the job's agent had not written (acked), and sends from there.
func TestPumpSendsAgainWhatWasNotAcked(t *testing.T) {
	input := []byte(strings.Repeat("0123456789", 10))
	type stream struct {
		open *hodeipb.AttachOpen
		in   []byte
	}
	streams := make(chan stream, 2)
	acked := make(chan struct{})
	calls := 0
	cl := startFakeAttach(t, func(st hodeipb.JobService_AttachServer) error {
		calls++
		open, err := attached(st, 1<<20)
		if err != nil {
			return err
		}
		var in []byte
		for {
			m, err := st.Recv()
			if err != nil {
				return err
			}
			in = append(in, m.GetInput()...)
			if m.GetEnd() == nil {
				continue
			}
			streams <- stream{open, in}
			if calls == 1 {
				// The agent wrote 40 bytes; then the server goes away.
				if err := st.Send(&hodeipb.AttachResponse{Msg: &hodeipb.AttachResponse_Input{Input: &hodeipb.InputState{Held: true, Limit: 1 << 20, Acked: 40}}}); err != nil {
					return err
				}
				<-acked
				return status.Error(codes.Unavailable, "the server went away")
			}
			return st.Send(&hodeipb.AttachResponse{Msg: &hodeipb.AttachResponse_Ended{Ended: &hodeipb.AttachEnded{Job: &hodeipb.Job{Id: "j"}}}})
		}
	})
	p := newPump(cl, pumpConfig{jobID: "j", claim: true, notes: io.Discard})
	p.pending, p.srcEOF = append([]byte(nil), input...), true
	errc := make(chan error, 1)
	go func() { errc <- p.session(context.Background(), func() {}) }()
	first := <-streams
	waitFor(t, "the ack to be taken", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.base == 40
	})
	close(acked)
	if err := <-errc; status.Code(err) != codes.Unavailable {
		t.Fatalf("the first stream ended with %v", err)
	}
	if err := p.session(context.Background(), func() {}); err != nil {
		t.Fatalf("the second stream: %v", err)
	}
	second := <-streams
	if string(first.in) != string(input) || first.open.GetInputOffset() != 0 || first.open.GetInputSource() == "" {
		t.Fatalf("first stream: open %v, input %q; want a named input from 0 and all of it", first.open, first.in)
	}
	if second.open.GetInputSource() != first.open.GetInputSource() || second.open.GetInputOffset() != 40 || string(second.in) != string(input[40:]) {
		t.Fatalf("second stream: open %v, input %q; want the same input from 40 and the bytes from there", second.open, second.in)
	}
}
