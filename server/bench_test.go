package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/hodei-jobs/hodei/proto"
)

// BenchmarkSubmit measures durable submits through the real gRPC API on
// loopback: every answer comes after the job's bbolt commit is fsync'd.
// Each client submits one job at a time. conn=shared: the clients share one
// connection, as goroutines sharing a client.Client do; conn=each: every
// client dials its own, as separate processes do.
func BenchmarkSubmit(b *testing.B) {
	for _, clients := range []int{1, 16, 64} {
		for _, shared := range []bool{true, false} {
			if clients == 1 && !shared {
				continue
			}
			name := fmt.Sprintf("clients=%d/conn=%s", clients, map[bool]string{true: "shared", false: "each"}[shared])
			b.Run(name, func(b *testing.B) { benchSubmit(b, clients, shared) })
		}
	}
}

func benchSubmit(b *testing.B, clients int, shared bool) {
	srv, err := New(context.Background(), Config{DataDir: b.TempDir(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "-"})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	conns := make([]pb.JobServiceClient, clients)
	var cc *grpc.ClientConn
	for i := range conns {
		if cc == nil || !shared {
			cc, err = grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
		}
		conns[i] = pb.NewJobServiceClient(cc)
		if _, err := conns[i].Submit(ctx, &pb.SubmitRequest{Spec: benchSpec}); err != nil {
			b.Fatal(err) // connect and warm up before the clock starts
		}
	}
	before := srv.store.Stats()
	var (
		left      atomic.Int64
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, b.N)
		wg        sync.WaitGroup
	)
	left.Store(int64(b.N))
	b.ResetTimer()
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := make([]time.Duration, 0, b.N/clients+1)
			for left.Add(-1) >= 0 {
				t := time.Now()
				if _, err := c.Submit(ctx, &pb.SubmitRequest{Spec: benchSpec}); err != nil {
					b.Error(err)
					return
				}
				own = append(own, time.Since(t))
			}
			mu.Lock()
			latencies = append(latencies, own...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(latencies)
	n := len(latencies)
	after := srv.store.Stats()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "jobs/s")
	b.ReportMetric(float64(latencies[n/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(latencies[n*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(after.Requests-before.Requests)/float64(max(after.Commits-before.Commits, 1)), "jobs/commit")
	b.ReportMetric(0, "ns/op") // the rate above is the figure; ns/op mixes in client count
}

var benchSpec = &pb.JobSpec{
	Name:    "bench",
	Command: []string{"/bin/echo", "hello", "world"},
	Labels:  map[string]string{"team": "bench", "kind": "submit"},
	Env:     map[string]string{"MODE": "bench"},
}
