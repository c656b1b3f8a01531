package server

import (
	"context"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/cluster"
	pb "github.com/hodei-jobs/hodei/proto"
)

// BenchmarkAgentStream measures one agent's stream through the real server
// (TLS, mTLS) in both directions: "orders" pushes b.N orders to the agent
// the way the scheduler does (registry → outbox → sender), at most 1,024
// waiting, while the agent reads them; "logs" has the agent send b.N log chunks of 1 KiB of a
// running job while it reads their acknowledgements, each one written to
// the job's log by the server's receive loop.
func BenchmarkAgentStream(b *testing.B) {
	b.Run("orders", func(b *testing.B) {
		s := setup(b)
		a := connectAgent(b, s, hello("w1", 1))
		c, ok := s.srv.agents.conns.Load("w1")
		if !ok {
			b.Fatal("w1 is not registered")
		}
		order := cancelMsg(cluster.CancelOrder{JobID: "01JBENCHBENCHBENCHBENCHBEN", Attempt: 1, Grace: time.Second, Reason: "bench"})
		// At most window orders wait, as a pass places at most what the
		// agent's slots allow: a full queue would cut the stream.
		const window = 1024
		inFlight := make(chan struct{}, window)
		got := make(chan error, 1)
		b.ResetTimer()
		go func() {
			for range b.N {
				if _, err := a.stream.Recv(); err != nil {
					got <- err
					return
				}
				<-inFlight
			}
			got <- nil
		}()
		for range b.N {
			inFlight <- struct{}{}
			if !c.enqueue(order) {
				b.Fatal("send queue full")
			}
		}
		if err := <-got; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "orders/s")
	})
	b.Run("logs", func(b *testing.B) {
		s := setup(b)
		a := connectAgent(b, s, hello("w1", 1))
		resp, err := s.jobs.Submit(context.Background(), &pb.SubmitRequest{Spec: &pb.JobSpec{Command: []string{"true"}}})
		if err != nil {
			b.Fatal(err)
		}
		id := resp.GetId()
		if m, err := a.stream.Recv(); err != nil || m.GetAssign().GetJob().GetId() != id {
			b.Fatalf("assign: %v, %v", m, err)
		}
		if err := a.stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Started{Started: &pb.JobStarted{JobId: id, Attempt: 1}}}); err != nil {
			b.Fatal(err)
		}
		data := make([]byte, 1024)
		acked := make(chan error, 1)
		b.SetBytes(int64(len(data)))
		b.ResetTimer()
		go func() {
			for n := 0; n < b.N; {
				m, err := a.stream.Recv()
				if err != nil {
					acked <- err
					return
				}
				if ack := m.GetAck(); ack != nil && ack.GetLogOffset() > 0 {
					n++
				}
			}
			acked <- nil
		}()
		for i := range b.N {
			chunk := &pb.LogChunk{JobId: id, Attempt: 1, Offset: int64(i * len(data)), Data: data}
			if err := a.stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Log{Log: chunk}}); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-acked; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "chunks/s")
	})
}
