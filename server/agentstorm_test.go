package server

import (
	"context"
	"sync"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestAgentReconnectStorm opens and drops streams of one worker from
// many goroutines at once, then connects it once more and waits for the
// dropped streams' handlers to end: the last stream must be the worker's
// (registered, the worker connected) and get the work.
func TestAgentReconnectStorm(t *testing.T) {
	s := setup(t)
	conn := s.agentConn(t, "w1")
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 40 {
				ctx, cancel := context.WithCancel(context.Background())
				stream, err := pb.NewAgentServiceClient(conn).Connect(ctx)
				if err == nil {
					err = stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: hello("w1", 1)}})
				}
				if err == nil {
					_, _ = stream.Recv() // the Welcome, or the cut by a newer stream
				}
				cancel()
			}
		})
	}
	wg.Wait()
	last := connectAgent(t, s, hello("w1", 1))
	// The dropped streams' handlers end on their own; then only the last
	// is registered.
	deadline := time.Now().Add(10 * time.Second)
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for {
		_, ok := s.srv.agents.conns.Load("w1")
		settled := ok && s.srv.agents.conns.Size() == 1
		connected := false
		for _, w := range s.srv.sched.Workers() {
			if w.Worker.ID == "w1" {
				connected = w.Connected
			}
		}
		if settled && connected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the storm: registered %v, connected %v", ok, connected)
		}
		<-poll.C // the server's state has no event to wait on: polled, to a deadline
	}
	id := s.submit(t, &pb.JobSpec{Command: []string{"true"}})
	if got := last.recv().GetAssign().GetJob().GetId(); got != id {
		t.Fatalf("the last stream got assign %q, want %s", got, id)
	}
}
