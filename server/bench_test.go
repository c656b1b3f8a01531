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
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/hodei-jobs/hodei/proto"
)

// BenchmarkSubmit measures durable submits through the real gRPC API on
// loopback: every answer comes after the job's bbolt commit is fsync'd.
// Each client submits one job at a time. conn=shared: the clients share one
// connection, as goroutines sharing a client.Client do; conn=each: every
// client dials its own, as separate processes do.
// With auth=on the server runs with tokens and TLS, as in production;
// auth=off is the same with --insecure-no-auth.
func BenchmarkSubmit(b *testing.B) {
	for _, clients := range []int{1, 16, 64} {
		for _, shared := range []bool{true, false} {
			if clients == 1 && !shared {
				continue
			}
			for _, secure := range []bool{true, false} {
				name := fmt.Sprintf("clients=%d/conn=%s/auth=%s", clients, map[bool]string{true: "shared", false: "each"}[shared],
					map[bool]string{true: "on", false: "off"}[secure])
				b.Run(name, func(b *testing.B) {
					bs := startBenchServer(b, secure)
					defer bs.stop()
					r := bs.submit(b, clients, shared, b.N)
					b.ReportMetric(r.rate, "jobs/s")
					b.ReportMetric(float64(r.p50.Nanoseconds()), "p50-ns")
					b.ReportMetric(float64(r.p99.Nanoseconds()), "p99-ns")
					b.ReportMetric(r.perCommit, "jobs/commit")
					b.ReportMetric(0, "ns/op") // the rate above is the figure; ns/op mixes in client count
				})
			}
		}
	}
}

// BenchmarkSubmitAuthCost runs 64 clients on a shared connection against
// two servers at once, one with tokens and TLS and one with
// --insecure-no-auth, alternating rounds so both see the same machine,
// and reports what authentication and TLS cost in throughput.
func BenchmarkSubmitAuthCost(b *testing.B) {
	on, off := startBenchServer(b, true), startBenchServer(b, false)
	defer on.stop()
	defer off.stop()
	const rounds = 20
	per := max(b.N/rounds, 64)
	var tOn, tOff time.Duration
	var p99On, p99Off []time.Duration
	b.ResetTimer()
	for i := range rounds {
		// Which server goes first alternates, so that a drift of the
		// machine's speed weighs on both alike.
		for _, secure := range [][2]bool{{true, false}, {false, true}}[i%2] {
			if secure {
				r := on.submit(b, 64, true, per)
				tOn += r.elapsed
				p99On = append(p99On, r.p99)
			} else {
				r := off.submit(b, 64, true, per)
				tOff += r.elapsed
				p99Off = append(p99Off, r.p99)
			}
		}
	}
	b.StopTimer()
	rateOn, rateOff := float64(per*rounds)/tOn.Seconds(), float64(per*rounds)/tOff.Seconds()
	slices.Sort(p99On)
	slices.Sort(p99Off)
	b.ReportMetric(rateOn, "auth-jobs/s")
	b.ReportMetric(rateOff, "noauth-jobs/s")
	b.ReportMetric(float64(p99On[rounds/2].Nanoseconds()), "auth-p99-ns")
	b.ReportMetric(float64(p99Off[rounds/2].Nanoseconds()), "noauth-p99-ns")
	b.ReportMetric(100*(1-rateOn/rateOff), "cost-%")
	b.ReportMetric(0, "ns/op")
}

// benchServer is a real server on loopback for the submit benchmarks.
type benchServer struct {
	srv  *Server
	dial func(b *testing.B) *grpc.ClientConn
	stop func()
}

// serveBench starts a real server with cfg (its DataDir a new temporary
// dir, its addresses loopback with no HTTP) and returns it and a function
// that stops it and waits for it, safe to call more than once; the
// benchmark's cleanup calls it too.
func serveBench(b *testing.B, cfg Config) (*Server, func()) {
	cfg.DataDir, cfg.GRPCAddr, cfg.HTTPAddr = b.TempDir(), "127.0.0.1:0", "-"
	srv, err := New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("server: %v", err)
		}
	})
	b.Cleanup(stop)
	return srv, stop
}

func startBenchServer(b *testing.B, secure bool) *benchServer {
	srv, stop := serveBench(b, Config{InsecureNoAuth: !secure})
	bs := &benchServer{srv: srv, stop: stop}
	bs.dial = func(b *testing.B) *grpc.ClientConn {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if secure {
			s := &sut{srv: srv, dir: srv.cfg.DataDir}
			opts = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(s.clientTLS(b, nil))),
				grpc.WithPerRPCCredentials(tokenCreds(s.adminToken(b)))}
		}
		cc, err := grpc.NewClient(srv.GRPCAddr(), opts...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cc.Close() })
		return cc
	}
	return bs
}

// submitResult is one round of submits.
type submitResult struct {
	elapsed   time.Duration
	rate      float64
	p50, p99  time.Duration
	perCommit float64
}

// submit runs n durable submits from clients goroutines, each one at a
// time, on one shared connection or one each.
func (bs *benchServer) submit(b *testing.B, clients int, shared bool, n int) submitResult {
	ctx := context.Background()
	conns := make([]pb.JobServiceClient, clients)
	var cc *grpc.ClientConn
	for i := range conns {
		if cc == nil || !shared {
			cc = bs.dial(b)
		}
		conns[i] = pb.NewJobServiceClient(cc)
		if _, err := conns[i].Submit(ctx, &pb.SubmitRequest{Spec: benchSpec}); err != nil {
			b.Fatal(err) // connect and warm up before the clock starts
		}
	}
	before := bs.srv.store.Stats()
	var (
		left      atomic.Int64
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, n)
		wg        sync.WaitGroup
	)
	left.Store(int64(n))
	start := time.Now()
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := make([]time.Duration, 0, n/clients+1)
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
	elapsed := time.Since(start)
	slices.Sort(latencies)
	k := len(latencies)
	after := bs.srv.store.Stats()
	return submitResult{
		elapsed: elapsed, rate: float64(k) / elapsed.Seconds(),
		p50: latencies[k/2], p99: latencies[k*99/100],
		perCommit: float64(after.Requests-before.Requests) / float64(max(after.Commits-before.Commits, 1)),
	}
}

var benchSpec = &pb.JobSpec{
	Name:    "bench",
	Command: []string{"/bin/echo", "hello", "world"},
	Labels:  map[string]string{"team": "bench", "kind": "submit"},
	Env:     map[string]string{"MODE": "bench"},
}
