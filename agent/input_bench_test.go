package agent

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// BenchmarkKeystrokeEcho types one key at a time into `cat` on a PTY
// through a real server and agent (TLS, tokens, fsync on) and measures the
// time until the key's echo comes back on the attach stream: client →
// server → agent → PTY → echo → agent's log pump → stored log → client.
func BenchmarkKeystrokeEcho(b *testing.B) {
	c := startCluster(b, 4)
	defer c.stop()
	ctx := context.Background()
	id, err := c.cl.Submit(ctx, &pb.JobSpec{Command: []string{"cat"}, Stdin: pb.StdinMode_STDIN_TERMINAL})
	if err != nil {
		b.Fatal(err)
	}
	st, err := c.cl.Attach(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer st.CloseSend()
	if err := st.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Open{Open: &pb.AttachOpen{JobId: id, Output: true, Claim: true}}}); err != nil {
		b.Fatal(err)
	}
	var out []byte
	limit := int64(0)
	recvUntil := func(cond func() bool) {
		for !cond() {
			m, err := st.Recv()
			if err != nil {
				b.Fatal(err)
			}
			out = append(out, m.GetOutput().GetData()...)
			if in := m.GetInput(); in.GetHeld() {
				limit = max(limit, in.GetLimit())
			}
		}
	}
	recvUntil(func() bool { return limit > 0 })
	lat := make([]time.Duration, 0, b.N)
	sent := int64(0)
	for i := 0; b.Loop(); i++ {
		key := []byte{'a' + byte(i%26)}
		if i%64 == 63 {
			key[0] = 0x15 // Ctrl-U empties the line (a canonical line holds 4,095 bytes); echoed as erasure
		}
		recvUntil(func() bool { return sent < limit })
		start := time.Now()
		if err := st.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Input{Input: key}}); err != nil {
			b.Fatal(err)
		}
		sent++
		n := len(out)
		recvUntil(func() bool { return bytes.IndexByte(out[n:], key[0]) >= 0 || (key[0] == 0x15 && len(out) > n) })
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "echo-p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "echo-p99-ns")
	if _, err := c.cl.Cancel(ctx, id, "benchmark over"); err != nil {
		b.Fatal(err)
	}
}
