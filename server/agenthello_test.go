package server

import (
	"fmt"
	"testing"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestAgentHelloWithManyRefs connects an agent whose Hello holds more
// results (or running attempts) than the send queue takes: a large worker
// that was away while thousands of short jobs ended, or that runs more
// attempts than the server knows of. Every one of them is answered (an ack
// for each result, a stop order for each unknown attempt) before the
// stream's sender starts; the stream must stay up and deliver them all,
// or the agent reconnects with the same Hello and is cut again, forever.
func TestAgentHelloWithManyRefs(t *testing.T) {
	n := sendQueue + 100
	for _, tc := range []struct {
		name string
		fill func(h *pb.Hello)
		want func(m *pb.ServerMessage) bool
	}{
		{"Finished", func(h *pb.Hello) {
			for i := range n {
				h.Finished = append(h.Finished, &pb.JobFinished{JobId: fmt.Sprintf("gone-%d", i), Attempt: 1})
			}
		}, func(m *pb.ServerMessage) bool { return m.GetAck().GetResult() }},
		{"Running", func(h *pb.Hello) {
			for i := range n {
				h.Running = append(h.Running, &pb.JobRef{JobId: fmt.Sprintf("gone-%d", i), Attempt: 1})
			}
		}, func(m *pb.ServerMessage) bool { return m.GetCancel() != nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := setup(t)
			h := hello("w1", 1)
			tc.fill(h)
			a := connectAgent(t, s, h)
			for got := 0; got < n; {
				m, err := a.stream.Recv()
				if err != nil {
					t.Fatalf("after %d of %d answers the stream ended: %v", got, n, err)
				}
				if tc.want(m) {
					got++
				}
			}
		})
	}
}
