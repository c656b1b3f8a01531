package server

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/cluster"
	pb "github.com/hodei-jobs/hodei/proto"
)

// TestAgentStreamIsCut ends an idle agent's stream from the server while
// its handler waits in Recv (it has no goroutine beside it that could
// return instead). The agent sees Canceled: gRPC answers so when the
// context of a pending Recv ends, before the handler returns; the server
// logs the cause, and the agent reconnects (and a revoked one is refused
// then).
func TestAgentStreamIsCut(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(t *testing.T, s *sut)
	}{
		{"Replaced", func(t *testing.T, s *sut) {
			b := connectAgent(t, s, hello("w1", 1))
			// The newer stream is the worker's: it gets the work.
			id := s.submit(t, &pb.JobSpec{Command: []string{"true"}})
			if got := b.recv().GetAssign().GetJob().GetId(); got != id {
				t.Fatalf("the newer stream got assign %q, want %s", got, id)
			}
		}},
		{"Revoked", func(t *testing.T, s *sut) {
			if _, err := s.admin.RevokeWorker(context.Background(), &pb.RevokeWorkerRequest{Id: "w1"}); err != nil {
				t.Fatal(err)
			}
		}},
		{"SendQueueFull", func(t *testing.T, s *sut) {
			c, ok := s.srv.agents.conns.Load("w1")
			if !ok {
				t.Fatal("w1 is not registered")
			}
			// The agent reads nothing: flow control stops the sender and
			// the queue fills.
			for i := 0; c.enqueue(cancelMsg(cluster.CancelOrder{JobID: "j", Attempt: 1})); i++ {
				if i > 1<<20 {
					t.Fatal("the send queue never filled")
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := setup(t)
			a := connectAgent(t, s, hello("w1", 1))
			tc.cut(t, s)
			ended := make(chan error, 1)
			go func() {
				for {
					if _, err := a.stream.Recv(); err != nil {
						ended <- err
						return
					}
				}
			}()
			select {
			case err := <-ended:
				if status.Code(err) != codes.Canceled {
					t.Fatalf("stream ended with %v, want Canceled", err)
				}
			case <-time.After(10 * time.Second):
				a.close() // ends the reader
				t.Fatal("the agent's stream was not cut")
			}
		})
	}
}

// TestAgentStreamRefusesABadMessage sends a second Hello on an open
// stream: the stream ends InvalidArgument naming the field, the status the
// handler returns (the stream's context ended before it returned).
func TestAgentStreamRefusesABadMessage(t *testing.T) {
	s := setup(t)
	a := connectAgent(t, s, hello("w1", 1))
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: hello("w1", 1)}})
	_, err := a.stream.Recv()
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "hello") {
		t.Fatalf("second hello: %v, want InvalidArgument naming hello", err)
	}
}

// recorder is a stream that records what an outbox sends; the first send
// of gate blocks until gate is closed.
type recorder struct {
	mu      sync.Mutex
	sent    []string
	more    chan struct{} // a token after each send; see waitSent
	entered chan struct{}
	gate    chan struct{}
	err     error
}

func (r *recorder) send(m *pb.ServerMessage) error {
	r.mu.Lock()
	r.sent = append(r.sent, m.GetCancel().GetJobId())
	first := len(r.sent) == 1
	select {
	case r.moreChan() <- struct{}{}:
	default:
	}
	r.mu.Unlock()
	if first && r.gate != nil {
		close(r.entered)
		<-r.gate
	}
	return r.err
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sent)
}

func order(id string) *pb.ServerMessage { return cancelMsg(cluster.CancelOrder{JobID: id}) }

// moreChan returns r.more, making it; the caller holds r.mu.
func (r *recorder) moreChan() chan struct{} {
	if r.more == nil {
		r.more = make(chan struct{}, 1)
	}
	return r.more
}

// waitSent waits until r has recorded n messages, woken by each send.
func (r *recorder) waitSent(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		sent, more := len(r.sent), r.moreChan()
		r.mu.Unlock()
		if sent >= n {
			return
		}
		select {
		case <-more:
		case <-timeout:
			t.Fatalf("sent %d of %d", len(r.got()), n)
		}
	}
}

func TestOutbox(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		r := &recorder{}
		o := &outbox{send: r.send, fail: func(err error) { t.Errorf("fail: %v", err) }}
		o.push(order("a"))
		o.push(order("b"))
		if len(r.got()) != 0 {
			t.Fatal("sent before start")
		}
		o.start()
		o.push(order("c"))
		r.waitSent(t, 3)
		o.push(order("d")) // the sender may have ended: a new one starts
		r.waitSent(t, 4)
		o.close()
		if got := r.got(); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
			t.Fatalf("sent %v", got)
		}
	})
	t.Run("Full", func(t *testing.T) {
		// The sender is stuck in its first send (flow control): the queue
		// behind it fills.
		r := &recorder{entered: make(chan struct{}), gate: make(chan struct{})}
		o := &outbox{send: r.send, fail: func(err error) { t.Errorf("fail: %v", err) }}
		o.start()
		o.push(order("first"))
		<-r.entered
		for range sendQueue {
			if !o.push(order("x")) {
				t.Fatal("refused below the limit")
			}
		}
		if o.push(order("x")) {
			t.Fatal("took one past the limit")
		}
		close(r.gate)
		o.close()
	})
	t.Run("NoLimitBeforeStart", func(t *testing.T) {
		// The answer to a Hello is queued before the sender starts; it is
		// as long as the Hello asks for.
		r := &recorder{}
		o := &outbox{send: r.send, fail: func(err error) { t.Errorf("fail: %v", err) }}
		for range sendQueue + 10 {
			if !o.push(order("x")) {
				t.Fatal("refused before start")
			}
		}
		o.start()
		r.waitSent(t, sendQueue+10)
		o.close()
	})
	t.Run("CloseWaitsForTheSender", func(t *testing.T) {
		r := &recorder{entered: make(chan struct{}), gate: make(chan struct{})}
		o := &outbox{send: r.send, fail: func(err error) { t.Errorf("fail: %v", err) }}
		o.start()
		o.push(order("a"))
		<-r.entered // the sender is in send
		o.push(order("b"))
		closed := make(chan struct{})
		go func() { o.close(); close(closed) }()
		select {
		case <-closed:
			t.Fatal("close returned while a send was in flight")
		default:
		}
		close(r.gate)
		<-closed
		sent := len(r.got())
		if !o.push(order("c")) {
			t.Fatal("a push after close is refused; want it dropped")
		}
		o.start()
		if len(r.got()) != sent || o.sending {
			t.Fatalf("sent after close: %v", r.got())
		}
	})
	t.Run("SendFails", func(t *testing.T) {
		r := &recorder{err: errors.New("broken")}
		failed := make(chan error, 2)
		o := &outbox{send: r.send, fail: func(err error) { failed <- err }}
		o.push(order("a"))
		o.push(order("b"))
		o.start()
		if err := <-failed; err != r.err {
			t.Fatalf("fail(%v), want the send's error", err)
		}
		o.push(order("c")) // dropped: the stream is broken
		o.close()
		if len(failed) != 0 || !slices.Equal(r.got(), []string{"a"}) {
			t.Fatalf("sent %v, %d more failures; want only a sent", r.got(), len(failed))
		}
	})
}
