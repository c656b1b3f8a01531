package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/pki"
	pb "github.com/hodei-jobs/hodei/proto"
)

// Environment of the agents process that BenchmarkIdleAgentMemory starts.
const (
	benchAgentsEnv = "HODEI_BENCH_AGENTS" // how many agents
	benchAddrEnv   = "HODEI_BENCH_ADDR"
	benchCAEnv     = "HODEI_BENCH_CA" // CA file
	benchTokenEnv  = "HODEI_BENCH_TOKEN"
)

// BenchmarkIdleAgentMemory measures what an idle connected agent costs the
// server: a real server with TLS and tokens, and N agents that join, say
// Hello over their own mTLS connection, send one Heartbeat (as a connected
// agent does every interval) and then only wait, in a separate process so
// that their memory is not counted. It reports the server's live heap,
// goroutine stacks and goroutines per agent, after a GC, over the same
// figures before the agents came. The heartbeat counts: a goroutine's
// stack grows to what its deepest call needed and shrinks (at a GC) only
// while it uses under a quarter of it, so what a stream's goroutines do
// once, not only where they wait, sets their stacks for as long as the
// stream lives. Run with -benchtime=1x.
func BenchmarkIdleAgentMemory(b *testing.B) {
	for _, n := range []int{200, 1000} {
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			srv, err := New(context.Background(), Config{DataDir: dir, GRPCAddr: "127.0.0.1:0", HTTPAddr: "-",
				Settings: cluster.Settings{Heartbeat: time.Minute}}) // idle: no heartbeat during the measure
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
			tok, err := srv.IssueToken(ctx, auth.Agent, "bench-agents")
			if err != nil {
				b.Fatal(err)
			}
			before := serverMem()

			cmd := exec.Command(os.Args[0], "-test.run=^TestBenchAgentsProcess$")
			cmd.Env = append(os.Environ(), benchAgentsEnv+"="+strconv.Itoa(n), benchAddrEnv+"="+srv.GRPCAddr(),
				benchCAEnv+"="+filepath.Join(dir, TLSDir, pki.CAFile), benchTokenEnv+"="+tok)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				b.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() { stdin.Close(); _ = cmd.Wait() }()
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || line != "ready\n" {
				b.Fatalf("agents process: %q, %v", line, err)
			}
			deadline := time.Now().Add(time.Minute)
			poll := time.NewTicker(10 * time.Millisecond)
			defer poll.Stop()
			for heartbeated(srv) < n {
				if time.Now().After(deadline) {
					b.Fatalf("%d of %d agents connected and heard from", heartbeated(srv), n)
				}
				<-poll.C // polling the server's state, to a deadline
			}
			after := serverMem()
			for b.Loop() {
			}
			b.ReportMetric(float64(after.heap-before.heap)/float64(n), "heap-B/agent")
			b.ReportMetric(float64(after.stack-before.stack)/float64(n), "stack-B/agent")
			b.ReportMetric(float64(after.heap+after.stack-before.heap-before.stack)/float64(n), "B/agent")
			b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(n), "goroutines/agent")
			b.ReportMetric(0, "ns/op")
		})
	}
}

type memFigures struct {
	heap, stack int64
	goroutines  int
}

// serverMem is the live heap and stack after a full collection.
func serverMem() memFigures {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memFigures{heap: int64(ms.HeapAlloc), stack: int64(ms.StackInuse), goroutines: runtime.NumGoroutine()}
}

// benchLoad is the load the bench agents' heartbeat reports.
const benchLoad = 1.5

// heartbeated counts the connected workers whose heartbeat was handled.
func heartbeated(srv *Server) int {
	n := 0
	for _, w := range srv.sched.Workers() {
		if w.Connected && w.Stats.Load1 == benchLoad {
			n++
		}
	}
	return n
}

// TestBenchAgentsProcess is the agents side of BenchmarkIdleAgentMemory;
// it does nothing unless started by it.
func TestBenchAgentsProcess(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(benchAgentsEnv))
	if n == 0 {
		t.Skip("started by BenchmarkIdleAgentMemory only")
	}
	addr, tok := os.Getenv(benchAddrEnv), os.Getenv(benchTokenEnv)
	caPEM, err := os.ReadFile(os.Getenv(benchCAEnv))
	if err != nil {
		t.Fatal(err)
	}
	joinCfg, err := pki.ClientConfig(caPEM, nil, pki.ServerName(addr))
	if err != nil {
		t.Fatal(err)
	}
	jc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(joinCfg)),
		grpc.WithPerRPCCredentials(tokenCreds(tok)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		mu    sync.Mutex
		conns []*grpc.ClientConn
		wg    sync.WaitGroup
		sem   = make(chan struct{}, 32)
	)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id := fmt.Sprintf("bench-%05d", i)
			keyPEM, csr, err := pki.NewKeyAndCSR(id)
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := pb.NewAgentServiceClient(jc).Join(ctx, &pb.JoinRequest{WorkerId: id, CsrDer: csr, Hostname: "bench"})
			if err != nil {
				t.Errorf("join %s: %v", id, err)
				return
			}
			cert, err := tls.X509KeyPair(resp.GetCertificatePem(), keyPEM)
			if err != nil {
				t.Error(err)
				return
			}
			cfg, err := pki.ClientConfig(caPEM, &cert, pki.ServerName(addr))
			if err != nil {
				t.Error(err)
				return
			}
			cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			conns = append(conns, cc)
			mu.Unlock()
			stream, err := pb.NewAgentServiceClient(cc).Connect(ctx)
			if err == nil {
				err = stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: hello(id, 4)}})
			}
			if err == nil {
				_, err = stream.Recv() // Welcome
			}
			if err == nil {
				err = stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Heartbeat{Heartbeat: &pb.Heartbeat{Load1: benchLoad}}})
			}
			if err != nil {
				t.Errorf("connect %s: %v", id, err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // until the benchmark is done
	cancel()
	for _, cc := range conns {
		cc.Close()
	}
	jc.Close()
	os.Exit(0) // the streams' goroutines need not be waited for here
}
