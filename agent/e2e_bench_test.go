package agent

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/pki"
	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/server"
)

// benchCluster is a real server (fsync on, authentication and TLS on) and
// one agent with the given slots in this process, joined with an agent
// token and talking gRPC over loopback with its client certificate.
type benchCluster struct {
	cl    *client.Client
	srv   *server.Server
	ag    *Agent
	stop  func()
	watch pb.JobService_WatchClient
}

func startCluster(b *testing.B, slots int64) *benchCluster {
	return startClusterWith(b, slots, true)
}

// startClusterWith is startCluster, or with secure false the same on a
// server run with --insecure-no-auth.
func startClusterWith(b *testing.B, slots int64, secure bool) *benchCluster {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, server.Config{DataDir: b.TempDir(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "-", InsecureNoAuth: !secure})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); srv.Serve(ctx) }()
	acfg := Config{Server: srv.GRPCAddr(), DataDir: b.TempDir(), Slots: slots, Name: "bench", Insecure: !secure}
	var opts []client.Option
	if secure {
		if acfg.Join, err = srv.IssueToken(ctx, auth.Agent, "bench-agent"); err != nil {
			b.Fatal(err)
		}
		acfg.CAFingerprint = srv.CAFingerprint()
		opts = adminOptions(b, srv)
	}
	ag, err := New(acfg)
	if err != nil {
		b.Fatal(err)
	}
	go func() { defer wg.Done(); ag.Run(ctx) }()
	cl, err := client.Dial(ctx, srv.GRPCAddr(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	watch, err := cl.Watch(ctx, &pb.WatchRequest{})
	if err != nil {
		b.Fatal(err)
	}
	c := &benchCluster{cl: cl, srv: srv, ag: ag, watch: watch, stop: func() { cl.Close(); cancel(); wg.Wait() }}
	// Wait for the agent: a first job runs once it is connected.
	c.run(b, 1)
	return c
}

var trueSpec = &pb.JobSpec{Command: []string{"/bin/true"}}

// run submits n trivial jobs from 16 goroutines and waits until all of them
// are COMPLETED, counting ends on the watch stream.
func (c *benchCluster) run(b *testing.B, n int) {
	b.Helper()
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				if _, err := c.cl.Submit(context.Background(), trueSpec); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	for done := 0; done < n; {
		ev, err := c.watch.Recv()
		if err != nil {
			b.Fatal(err)
		}
		switch ev.GetJob().GetState() {
		case pb.JobState_JOB_STATE_COMPLETED:
			done++
		case pb.JobState_JOB_STATE_FAILED, pb.JobState_JOB_STATE_CANCELLED:
			b.Fatalf("job %s: %s", ev.GetJob().GetState(), ev.GetJob().GetReason())
		}
	}
	wg.Wait()
}

// runOne submits one job and reads the watch stream until it is
// COMPLETED, calling seen with each state it passes through.
func (c *benchCluster) runOne(b *testing.B, spec *pb.JobSpec, seen func(pb.JobState)) {
	b.Helper()
	id, err := c.cl.Submit(context.Background(), spec)
	if err != nil {
		b.Fatal(err)
	}
	for {
		ev, err := c.watch.Recv()
		if err != nil {
			b.Fatal(err)
		}
		if ev.GetJob().GetId() != id {
			continue
		}
		st := ev.GetJob().GetState()
		seen(st)
		switch st {
		case pb.JobState_JOB_STATE_COMPLETED:
			return
		case pb.JobState_JOB_STATE_FAILED, pb.JobState_JOB_STATE_CANCELLED:
			b.Fatalf("job %s: %s", st, ev.GetJob().GetReason())
		}
	}
}

// BenchmarkTrivialJobs is end-to-end throughput: /bin/true in a PTY, from
// submit to COMPLETED recorded durably, one agent with 64 slots. Compare
// with BenchmarkPTYSpawnParallel, the rate at which this machine can start
// /bin/true in a fresh PTY and reap it at all.
func BenchmarkTrivialJobs(b *testing.B) {
	for _, secure := range []bool{true, false} {
		b.Run(map[bool]string{true: "tls", false: "insecure"}[secure], func(b *testing.B) {
			c := startClusterWith(b, 64, secure)
			defer c.stop()
			b.ResetTimer()
			c.run(b, b.N)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkPTYSpawnParallel starts /bin/true in a fresh PTY and reaps it,
// 64 at a time: the limit for BenchmarkTrivialJobs.
func BenchmarkPTYSpawnParallel(b *testing.B) {
	b.SetParallelism(32) // × GOMAXPROCS goroutines: 64 on two cores
	b.RunParallel(func(p *testing.PB) {
		for p.Next() {
			spawnTrue(b)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "starts/s")
	b.ReportMetric(0, "ns/op")
}

// spawnTrue starts /bin/true in a fresh PTY and reaps it.
func spawnTrue(b *testing.B) {
	cmd := exec.Command("/bin/true")
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		b.Error(err)
		return
	}
	io.Copy(io.Discard, f) // until EIO
	cmd.Wait()
	f.Close()
}

// BenchmarkTrivialJobsOverSpawn times, in the same run, b.N PTY spawns 64
// at a time (the limit) and b.N trivial jobs end to end through the TLS
// agent, and reports the jobs' rate as a percentage of the limit. Beside
// the rates, which swing with the machine, it reports the CPU that each
// costs: a spawn's (this process and its children), and a job's in the
// server, agent and client (this process), in the supervisor, and in the
// job's own process (the supervisor's children). Each of the 4 rounds
// times b.N/4 of each: the phases must be long against a job's latency
// under load (about 60 ms with 64 slots busy), which each job phase pays
// filling the slots and again draining them; at 500 jobs a phase that was
// about 2 points of the percentage, hence -benchtime 8000x in make bench.
func BenchmarkTrivialJobsOverSpawn(b *testing.B) {
	c := startCluster(b, 64)
	defer c.stop()
	sup := c.ag.sups.pids()
	if len(sup) != 1 {
		b.Fatalf("supervisors: %v, want one", sup)
	}
	st0 := c.srv.StoreStats()
	b.ResetTimer()
	pc := jobsAgainstSpawns(b, sup[0], func(n int) { c.run(b, n) })
	b.StopTimer()
	pc.report(b, "server+agent-cpu-ms/job")
	n := float64(pc.n)
	st := c.srv.StoreStats()
	b.ReportMetric(float64(st.Commits-st0.Commits)/n, "commits/job")
	b.ReportMetric(float64(st.Requests-st0.Requests)/n, "writes/job")
	b.ReportMetric((st.CommitTime-st0.CommitTime).Seconds()*1000/float64(st.Commits-st0.Commits), "ms/commit")
	b.ReportMetric(100*(st.CommitTime-st0.CommitTime).Seconds()/(pc.spawnWall+pc.jobWall).Seconds(), "%-committing")
	b.ReportMetric(0, "ns/op")
}

// phaseCosts are the totals of jobsAgainstSpawns.
type phaseCosts struct {
	n                                 int // spawns, and jobs
	spawnWall, spawnCPU, spawnProcCPU time.Duration
	jobWall, jobCPU, supCPU, procCPU  time.Duration
}

// jobsAgainstSpawns runs, 4 times, b.N/4 PTY spawns of /bin/true 64 at a
// time and b.N/4 jobs through run; which goes first alternates, so that a
// drift of the machine's speed weighs on both alike. It returns the wall
// time and CPU of each: a spawn's in this process and its children; a
// job's in this process, in supervisor sup, and in sup's children (the
// jobs' own processes).
func jobsAgainstSpawns(b *testing.B, sup int, run func(n int)) phaseCosts {
	const rounds = 4
	per := max(b.N/rounds, 64)
	pc := phaseCosts{n: per * rounds}
	for i := range rounds {
		for _, spawning := range [][2]bool{{true, false}, {false, true}}[i%2] {
			start, self, children := time.Now(), selfCPU(b), childrenCPU(b)
			if spawning {
				spawnMany(b, per, 64)
				pc.spawnWall += time.Since(start)
				pc.spawnCPU += selfCPU(b) - self + childrenCPU(b) - children
				pc.spawnProcCPU += childrenCPU(b) - children
				continue
			}
			own, kids := procTimes(b, sup)
			run(per)
			pc.jobWall += time.Since(start)
			pc.jobCPU += selfCPU(b) - self
			own2, kids2 := procTimes(b, sup)
			pc.supCPU, pc.procCPU = pc.supCPU+own2-own, pc.procCPU+kids2-kids
		}
	}
	return pc
}

// report reports the rates, the jobs' as a percentage of the spawns', and
// the CPU of each per job or spawn; self names this process's part.
func (pc phaseCosts) report(b *testing.B, self string) {
	n := float64(pc.n)
	spawnRate, jobRate := n/pc.spawnWall.Seconds(), n/pc.jobWall.Seconds()
	b.ReportMetric(spawnRate, "spawns/s")
	b.ReportMetric(jobRate, "jobs/s")
	b.ReportMetric(100*jobRate/spawnRate, "%-of-spawn")
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 / n }
	b.ReportMetric(ms(pc.spawnCPU), "cpu-ms/spawn")
	b.ReportMetric(ms(pc.spawnProcCPU), "spawn-proc-cpu-ms/spawn")
	b.ReportMetric(ms(pc.jobCPU), self)
	b.ReportMetric(ms(pc.supCPU), "sup-cpu-ms/job")
	b.ReportMetric(ms(pc.procCPU), "proc-cpu-ms/job")
}

// spawnMany starts and reaps n /bin/true in fresh PTYs, parallel at a time.
func spawnMany(b *testing.B, n, parallel int) {
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				spawnTrue(b)
			}
		}()
	}
	wg.Wait()
}

// adminOptions are client options that reach srv as its bootstrap admin,
// over TLS verified against its CA.
func adminOptions(b *testing.B, srv *server.Server) []client.Option {
	b.Helper()
	dir := srv.DataDir()
	tok, err := os.ReadFile(filepath.Join(dir, server.AdminTokenFile))
	if err != nil {
		b.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, server.TLSDir, pki.CAFile))
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := pki.ClientConfig(caPEM, nil, pki.ServerName(srv.GRPCAddr()))
	if err != nil {
		b.Fatal(err)
	}
	return []client.Option{client.WithTLS(cfg), client.WithToken(strings.TrimSpace(string(tok)))}
}

// BenchmarkJobLatency submits one trivial job at a time on an idle cluster
// and measures, from the watch stream, the time from submit to RUNNING and
// to COMPLETED.
func BenchmarkJobLatency(b *testing.B) {
	c := startCluster(b, 4)
	defer c.stop()
	toRunning := make([]time.Duration, 0, b.N)
	toDone := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		c.runOne(b, trueSpec, func(s pb.JobState) {
			switch s {
			case pb.JobState_JOB_STATE_RUNNING:
				toRunning = append(toRunning, time.Since(start))
			case pb.JobState_JOB_STATE_COMPLETED:
				toDone = append(toDone, time.Since(start))
			}
		})
	}
	b.StopTimer()
	report := func(d []time.Duration, name string) {
		if len(d) == 0 {
			return
		}
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), name+"-p50-ns")
		b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds()), name+"-p99-ns")
	}
	report(toRunning, "running")
	report(toDone, "completed")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkJobLogThroughput runs one job that cats 64 MiB of log lines to
// its PTY as fast as it can and measures the MB/s that reach the stored log
// (the job is COMPLETED only once every byte is stored). Compare with
// BenchmarkPTYThroughput, cat of the same file into a PTY that nothing
// forwards.
func BenchmarkJobLogThroughput(b *testing.B) {
	path, size := throughputFile(b)
	c := startCluster(b, 4)
	defer c.stop()
	spec := &pb.JobSpec{Command: []string{"cat", path}}
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		c.runOne(b, spec, func(pb.JobState) {})
	}
	b.StopTimer()
}

// BenchmarkAgentRestart runs 64 jobs that sleep, then, per op, detaches the
// agent (as SIGTERM does) and starts a new one on the same data dir, timing
// from the new agent's New to the server's welcome of a Hello that holds
// all 64 (the server takes them as held and running, not lost). It checks
// after the loop that all 64 are still RUNNING on their first attempt.
func BenchmarkAgentRestart(b *testing.B) {
	const jobs = 64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.New(ctx, server.Config{DataDir: b.TempDir(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "-", InsecureNoAuth: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ctx) })
	defer wg.Wait()
	defer cancel()
	dataDir := b.TempDir()
	// startAgent starts an agent and returns when the server welcomed it,
	// with its stop.
	startAgent := func(mode StopMode) (held int, stop func()) {
		connected := make(chan struct{}, 1)
		a, err := New(Config{Server: srv.GRPCAddr(), DataDir: dataDir, Slots: jobs, Name: "bench", Insecure: true, OnStop: mode,
			KillGrace: time.Second, OnConnect: func(ev ConnectEvent) {
				if ev.Connected {
					select {
					case connected <- struct{}{}:
					default:
					}
				}
			}})
		if err != nil {
			b.Fatal(err)
		}
		actx, acancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); a.Run(actx) }()
		<-connected
		return len(a.snapshotTasks()), func() { acancel(); <-done }
	}
	_, stop := startAgent(Detach)
	cl, err := client.Dial(ctx, srv.GRPCAddr())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ids := make([]string, jobs)
	for i := range ids {
		if ids[i], err = cl.Submit(ctx, &pb.JobSpec{Command: []string{"sleep", "600"}}); err != nil {
			b.Fatal(err)
		}
	}
	running := func() int {
		n := 0
		for _, id := range ids {
			if j, err := cl.Get(ctx, id); err == nil && j.GetState() == pb.JobState_JOB_STATE_RUNNING && j.GetAttempt() == 1 {
				n++
			}
		}
		return n
	}
	tick := time.NewTicker(10 * time.Millisecond)
	for running() < jobs {
		<-tick.C
	}
	tick.Stop()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		stop()
		b.StartTimer()
		var held int
		held, stop = startAgent(Detach)
		if held != jobs {
			b.Fatalf("the new agent holds %d jobs, want %d", held, jobs)
		}
	}
	b.StopTimer()
	if n := running(); n != jobs {
		b.Fatalf("%d of %d jobs RUNNING on attempt 1 after the restarts", n, jobs)
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/restart")
	b.ReportMetric(0, "ns/op")
	stop()
	// The last agent stops the jobs and lets its supervisor go.
	_, stop = startAgent(StopJobs)
	stop()
}
