package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
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
	benchAgentsEnv  = "HODEI_BENCH_AGENTS" // how many agents
	benchAddrEnv    = "HODEI_BENCH_ADDR"   // where they join (and connect, unless benchConnectEnv)
	benchCAEnv      = "HODEI_BENCH_CA"     // CA file
	benchTokenEnv   = "HODEI_BENCH_TOKEN"
	benchConnectEnv = "HODEI_BENCH_CONNECT" // where they connect, in two phases (see TestBenchAgentsProcess)
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
//
// The bare sub-benchmarks measure the floor under that: the same agents
// join through a real server, which then stops, and connect to a bare
// grpc.Server with the real server's transport settings (benchBareGRPC)
// whose Connect only receives; the figures are those of the Connect phase
// alone.
func BenchmarkIdleAgentMemory(b *testing.B) {
	sizes := []int{200, 1000}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) { benchIdleReal(b, n) })
	}
	b.Run("bare", func(b *testing.B) {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) { benchIdleBare(b, n) })
		}
	})
}

// benchIdleReal measures n agents joined to and connected to a real server.
func benchIdleReal(b *testing.B, n int) {
	srv, dir, tok, _ := startIdleBenchServer(b)
	before := serverMem()
	p := startBenchAgents(b, n, dir, tok, srv.GRPCAddr(), "")
	p.expect(b, "ready")
	waitCount(b, n, "agents connected and heard from", func() int { return heartbeated(srv) })
	reportAgentMem(b, n, before, serverMem())
}

// benchIdleBare measures n agents connected to a bare grpc.Server: they
// join through a real server first, which stops once they have (its
// housekeeping would move the heap), and the figures cover the Connect
// phase only.
func benchIdleBare(b *testing.B, n int) {
	srv, dir, tok, stop := startIdleBenchServer(b)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	svc := &bareAgentService{}
	gs := benchBareGRPC(srv.tlsConfig)
	pb.RegisterAgentServiceServer(gs, svc)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	b.Cleanup(func() { gs.Stop(); <-served })

	p := startBenchAgents(b, n, dir, tok, srv.GRPCAddr(), lis.Addr().String())
	p.expect(b, "joined")
	stop()
	before := serverMem()
	p.send(b, "connect")
	p.expect(b, "ready")
	waitCount(b, n, "agents connected and heard from", func() int { return int(svc.heartbeats.Load()) })
	reportAgentMem(b, n, before, serverMem())
}

// benchBareGRPC is a grpc.Server with the transport settings of the real
// server's (newGRPC) and nothing else: no interceptors, no tap, the
// default codec.
func benchBareGRPC(tlsConfig *tls.Config) *grpc.Server {
	return grpc.NewServer(grpc.MaxRecvMsgSize(maxRecvMsg), grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		grpc.Creds(credentials.NewTLS(tlsConfig)), grpc.ReadBufferSize(0))
}

// bareAgentService is an AgentService whose Connect only receives: it
// answers the Hello with an empty Welcome, so that the agents' side is the
// same as with a real server, and counts the heartbeats.
type bareAgentService struct {
	pb.UnimplementedAgentServiceServer
	heartbeats atomic.Int64
}

// Connect receives until the stream ends.
func (a *bareAgentService) Connect(stream pb.AgentService_ConnectServer) error {
	for {
		msg, err := stream.Recv()
		if err != nil {
			return nil // the agent left, or the server stops
		}
		switch msg.GetMsg().(type) {
		case *pb.AgentMessage_Hello:
			if err := stream.Send(&pb.ServerMessage{Msg: &pb.ServerMessage_Welcome{Welcome: &pb.Welcome{}}}); err != nil {
				return fmt.Errorf("welcome: %w", err)
			}
		case *pb.AgentMessage_Heartbeat:
			a.heartbeats.Add(1)
		}
	}
}

// startIdleBenchServer starts a real server with TLS in a temporary
// directory, and issues an agent token. It returns the server, its data
// directory, the token and a function that stops the server and waits for
// it, which the end of the benchmark calls too.
func startIdleBenchServer(b *testing.B) (*Server, string, string, func()) {
	srv, stop := serveBench(b, Config{Settings: cluster.Settings{Heartbeat: time.Minute}}) // idle: no heartbeat during the measure
	tok, err := srv.IssueToken(context.Background(), auth.Agent, "bench-agents")
	if err != nil {
		b.Fatal(err)
	}
	return srv, srv.cfg.DataDir, tok, stop
}

// benchAgents is a running agents process (TestBenchAgentsProcess).
type benchAgents struct {
	stdin  io.WriteCloser
	stdout *bufio.Reader
}

// startBenchAgents starts the agents process for n agents that join at
// addr with tok, trusting the CA in dir, and connect at connect when it is
// not "" (in two phases), else at addr. The process ends when the
// benchmark does.
func startBenchAgents(b *testing.B, n int, dir, tok, addr, connect string) *benchAgents {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchAgentsProcess$")
	cmd.Env = append(os.Environ(), benchAgentsEnv+"="+strconv.Itoa(n), benchAddrEnv+"="+addr,
		benchCAEnv+"="+filepath.Join(dir, TLSDir, pki.CAFile), benchTokenEnv+"="+tok)
	if connect != "" {
		cmd.Env = append(cmd.Env, benchConnectEnv+"="+connect)
	}
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
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	return &benchAgents{stdin: stdin, stdout: bufio.NewReader(stdout)}
}

// expect reads the process's next line and fails unless it is want.
func (p *benchAgents) expect(b *testing.B, want string) {
	line, err := p.stdout.ReadString('\n')
	if err != nil || line != want+"\n" {
		b.Fatalf("agents process: %q (want %q), %v", line, want, err)
	}
}

// send writes a line to the process.
func (p *benchAgents) send(b *testing.B, line string) {
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		b.Fatalf("agents process: %v", err)
	}
}

// waitCount polls count until it reaches n, failing after a minute.
func waitCount(b *testing.B, n int, what string, count func() int) {
	deadline := time.Now().Add(time.Minute)
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for count() < n {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d %s", count(), n, what)
		}
		<-poll.C // polling the server's state, to a deadline
	}
}

// reportAgentMem reports the figures per agent of n agents, from before
// and after they came.
func reportAgentMem(b *testing.B, n int, before, after memFigures) {
	for b.Loop() {
	}
	b.ReportMetric(float64(after.heap-before.heap)/float64(n), "heap-B/agent")
	b.ReportMetric(float64(after.stack-before.stack)/float64(n), "stack-B/agent")
	b.ReportMetric(float64(after.heap+after.stack-before.heap-before.stack)/float64(n), "B/agent")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/float64(n), "goroutines/agent")
	b.ReportMetric(0, "ns/op")
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
// it does nothing unless started by it. Each agent joins and then connects
// (Hello, Welcome, one Heartbeat), then the process says "ready" and waits
// for its stdin to end. With benchConnectEnv, it does so in two phases:
// every agent joins, the process closes its connection for the joins,
// says "joined" and waits for a line, then every agent connects at that
// address instead.
func TestBenchAgentsProcess(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(benchAgentsEnv))
	if n == 0 {
		t.Skip("started by BenchmarkIdleAgentMemory only")
	}
	addr, tok, connectAddr := os.Getenv(benchAddrEnv), os.Getenv(benchTokenEnv), os.Getenv(benchConnectEnv)
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
	)
	join := func(id string) (*tls.Certificate, error) {
		keyPEM, csr, err := pki.NewKeyAndCSR(id)
		if err != nil {
			return nil, err
		}
		resp, err := pb.NewAgentServiceClient(jc).Join(ctx, &pb.JoinRequest{WorkerId: id, CsrDer: csr, Hostname: "bench"})
		if err != nil {
			return nil, fmt.Errorf("join %s: %w", id, err)
		}
		cert, err := tls.X509KeyPair(resp.GetCertificatePem(), keyPEM)
		if err != nil {
			return nil, err
		}
		return &cert, nil
	}
	connect := func(id string, cert *tls.Certificate, addr string) error {
		cfg, err := pki.ClientConfig(caPEM, cert, pki.ServerName(addr))
		if err != nil {
			return err
		}
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return err
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
			return fmt.Errorf("connect %s: %w", id, err)
		}
		return nil
	}
	id := func(i int) string { return fmt.Sprintf("bench-%05d", i) }
	stdin := bufio.NewReader(os.Stdin)
	if connectAddr == "" {
		benchEach(t, n, func(i int) error {
			cert, err := join(id(i))
			if err == nil {
				err = connect(id(i), cert, addr)
			}
			return err
		})
	} else {
		certs := make([]*tls.Certificate, n)
		benchEach(t, n, func(i int) (err error) {
			certs[i], err = join(id(i))
			return err
		})
		if t.Failed() {
			return
		}
		jc.Close() // the server that took the joins may stop now
		fmt.Println("joined")
		if _, err := stdin.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		benchEach(t, n, func(i int) error { return connect(id(i), certs[i], connectAddr) })
	}
	if t.Failed() {
		return
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, stdin) // until the benchmark is done
	cancel()
	for _, cc := range conns {
		cc.Close()
	}
	jc.Close()
	os.Exit(0) // the streams' goroutines need not be waited for here
}

// benchEach runs f for 0 to n-1, 32 at a time, and waits for them; it
// reports their errors to t.
func benchEach(t *testing.T, n int, f func(i int) error) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}
