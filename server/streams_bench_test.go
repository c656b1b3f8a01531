package server

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/hodei-jobs/hodei/proto"
)

// runningJobWithOutput starts a job on a scripted agent and stores size
// bytes of its output; the job stays Running.
func runningJobWithOutput(tb testing.TB, s *sut, size int) string {
	tb.Helper()
	a := connectAgent(tb, s, hello("w1", 1))
	resp, err := s.jobs.Submit(context.Background(), &pb.SubmitRequest{Spec: &pb.JobSpec{Command: []string{"yes"}}})
	if err != nil {
		tb.Fatal(err)
	}
	id := resp.GetId()
	if got := a.recv().GetAssign().GetJob().GetId(); got != id {
		tb.Fatalf("assigned %s, want %s", got, id)
	}
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Started{Started: &pb.JobStarted{JobId: id, Attempt: 1}}})
	chunk := bytes.Repeat([]byte("y\r\n"), 32<<10/3)
	for off := 0; off < size; off += len(chunk) {
		a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Log{Log: &pb.LogChunk{JobId: id, Attempt: 1, Offset: int64(off), Data: chunk}}})
		a.recvAck()
	}
	return id
}

// liveHeap is the heap in use after two collections (the second empties
// sync.Pool's victim cache, where grpc-go keeps freed buffers).
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// settledHeap polls liveHeap until it stops growing (three polls in a
// row within 1%), or for at most 20 s, and returns the last value.
func settledHeap() uint64 {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	last, same := liveHeap(), 0
	for same < 3 {
		select {
		case <-deadline:
			return last
		case <-tick.C:
		}
		cur := liveHeap()
		if cur <= last+last/100 {
			same++
		} else {
			same = 0
		}
		last = max(last, cur)
	}
	return last
}

// BenchmarkNonReadingStreams opens streams that follow a job's output
// (logs -f, attach) and never read, as a hostile viewer can, and reports
// the heap the process holds per stream once they are stuck: the
// server's queued output, and the client's receive window (64 KiB each,
// set so that the client's share stays small and known).
//
//	go test -run '^$' -bench NonReadingStreams -benchtime 1x ./server
func BenchmarkNonReadingStreams(b *testing.B) {
	const streams = 100
	s := setup(b)
	id := runningJobWithOutput(b, s, 8<<20)
	for _, kind := range []string{"logs", "attach"} {
		b.Run("kind="+kind, func(b *testing.B) {
			var perStream float64
			for b.Loop() {
				conn, err := grpc.NewClient(s.srv.GRPCAddr(),
					grpc.WithTransportCredentials(credentials.NewTLS(s.clientTLS(b, nil))),
					grpc.WithPerRPCCredentials(tokenCreds(s.adminToken(b))),
					grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<20))
				if err != nil {
					b.Fatal(err)
				}
				jobs := pb.NewJobServiceClient(conn)
				ctx, cancel := context.WithCancel(context.Background())
				if _, err := jobs.Get(ctx, &pb.GetJobRequest{Id: id}); err != nil { // connected
					b.Fatal(err)
				}
				before := liveHeap()
				for range streams {
					switch kind {
					case "logs":
						if _, err := jobs.Logs(ctx, &pb.LogsRequest{Id: id, Follow: true}); err != nil {
							b.Fatal(err)
						}
					case "attach":
						st, err := jobs.Attach(ctx)
						if err != nil {
							b.Fatal(err)
						}
						open := &pb.AttachOpen{JobId: id, Output: true, ReadOnly: true, ResumeAttempt: 1}
						if err := st.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Open{Open: open}}); err != nil {
							b.Fatal(err)
						}
					}
				}
				after := settledHeap()
				perStream = float64(int64(after)-int64(before)) / streams
				cancel()
				conn.Close()
			}
			b.ReportMetric(perStream, "heap-B/stream")
		})
	}
}
