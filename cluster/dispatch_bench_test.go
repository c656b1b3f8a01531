package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/metrics"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store"
)

// agentSlots is the size of the fake agent BenchmarkDispatchBacklog
// dispatches to: each pass places up to this many jobs.
const agentSlots = 64

// BenchmarkDispatchBacklog measures the dispatch rate (jobs/s) to a fake
// agent of 64 slots from a backlog of 1,000 and of 1,000,000 queued jobs
// of one tenant, on the real bbolt store, and compares them.
//
// Each backlog lives in a process of its own (this test binary, running
// TestDispatchRig), so that neither's heap weighs on the other's garbage
// collection, and both live through the whole run: one iteration is one
// pass of each, taken in turns (the order swaps every iteration), so that
// whatever else loads the host falls on both alike. A pass places up to
// 64 jobs and commits them, then the agent reports each started and
// finished (each report is a store write of its own; concurrent ones share
// a commit when they meet in the store's queue), which frees the slots for
// the next pass; new submits then keep the backlog at its size, outside
// the measured time. The backlog is filled straight into the store and
// recovered, as a restart finds it. -benchtime 320x dispatches about
// 20,000 jobs from each.
//
// sync=off skips fsync (store.Options.NoSync), so that the figure is the
// CPU cost of a dispatch and not the disk; sync=on is the production
// setting. prio=same is a backlog of one priority, dispatched in
// submission order, which is the store's key order; prio=mixed spreads the
// priorities over the whole range, so that each pass updates jobs spread
// all over the store's file.
//
// Per backlog (1k- and 1M-): jobs/s over the wall time of the passes and
// reports; pass-ns/job, the part of it spent in Pass (its commit
// included); cpu-ns/job, the process's CPU time per job (every goroutine,
// the garbage collector's too; steadier than wall time on a shared host);
// commits/pass, the store transactions per pass; B/pass, the heap
// allocated per pass. Then large/small, the 1M backlog's jobs/s over the
// 1k one's (goal: at least 0.8); med-large/small, the median of that ratio
// over rounds of roundPasses passes each, which a burst of load on the
// host during one round does not move; and cpu-large/small, the inverse
// ratio of their CPU per job. ns/op is the wall time of one iteration,
// both passes and their top-up submits.
func BenchmarkDispatchBacklog(b *testing.B) {
	for _, sync := range []bool{false, true} {
		for _, mixed := range []bool{false, true} {
			b.Run(fmt.Sprintf("sync=%s/prio=%s", onOff(sync), sameMixed(mixed)), func(b *testing.B) {
				small := startRig(b, rigSpec{Backlog: 1000, Sync: sync, Mixed: mixed})
				large := startRig(b, rigSpec{Backlog: 1_000_000, Sync: sync, Mixed: mixed})
				small.ready(b)
				large.ready(b)
				var s, l, rs, rl dispatchStats
				var rounds []float64
				swap := false
				for b.Loop() {
					var ss, ls dispatchStats
					if swap {
						ls = large.step(b)
						ss = small.step(b)
					} else {
						ss = small.step(b)
						ls = large.step(b)
					}
					swap = !swap
					s.add(ss)
					l.add(ls)
					rs.add(ss)
					rl.add(ls)
					if rs.Passes == roundPasses {
						rounds = append(rounds, rl.rate()/rs.rate())
						rs, rl = dispatchStats{}, dispatchStats{}
					}
				}
				small.close(b)
				large.close(b)
				if s.Jobs == 0 || l.Jobs == 0 {
					b.Fatalf("dispatched %d and %d jobs", s.Jobs, l.Jobs)
				}
				s.report(b, "1k-")
				l.report(b, "1M-")
				b.ReportMetric(l.rate()/s.rate(), "large/small")
				if len(rounds) > 0 {
					slices.Sort(rounds)
					b.ReportMetric(rounds[len(rounds)/2], "med-large/small")
				}
				b.ReportMetric(s.cpuPerJob()/l.cpuPerJob(), "cpu-large/small")
			})
		}
	}
}

// rigSpec says which backlog a child process of BenchmarkDispatchBacklog
// serves; it travels in the environment variable rigEnv.
type rigSpec struct {
	Backlog     int
	Sync, Mixed bool
}

const rigEnv = "HODEI_DISPATCH_RIG"

// roundPasses is how many passes of each backlog make one round of
// med-large/small.
const roundPasses = 32

// TestDispatchRig is one backlog of BenchmarkDispatchBacklog, in a child
// process the benchmark starts: it builds the backlog, says so, then runs
// one step for each line it reads on stdin and answers each with its
// dispatchStats, as JSON lines on file descriptor 3, until stdin closes.
// Without rigEnv it is skipped.
func TestDispatchRig(t *testing.T) {
	env := os.Getenv(rigEnv)
	if env == "" {
		t.Skip("a child process of BenchmarkDispatchBacklog")
	}
	var spec rigSpec
	if err := json.Unmarshal([]byte(env), &spec); err != nil {
		t.Fatalf("%s: %v", rigEnv, err)
	}
	out := json.NewEncoder(os.NewFile(3, "answers"))
	rig := newBacklogRig(t, t.TempDir(), spec.Backlog, spec.Sync, spec.Mixed)
	defer rig.close(t)
	if err := out.Encode(dispatchStats{}); err != nil { // ready
		t.Fatal(err)
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if err := out.Encode(rig.step(t)); err != nil {
			t.Fatal(err)
		}
	}
}

// rigProc is a child process that runs TestDispatchRig.
type rigProc struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	answers *json.Decoder
	output  bytes.Buffer // its stdout and stderr, for errors
}

// startRig starts a child process for spec; ready waits for its backlog.
func startRig(b *testing.B, spec rigSpec) *rigProc {
	b.Helper()
	env, err := json.Marshal(spec)
	if err != nil {
		b.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	p := &rigProc{cmd: exec.Command(os.Args[0], "-test.run=^TestDispatchRig$", "-test.count=1")}
	p.cmd.Env = append(os.Environ(), rigEnv+"="+string(env))
	p.cmd.Stdout, p.cmd.Stderr = &p.output, &p.output
	p.cmd.ExtraFiles = []*os.File{w}
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w.Close()
	b.Cleanup(func() { r.Close() })
	p.answers = json.NewDecoder(r)
	b.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	return p
}

func (p *rigProc) ready(b *testing.B) {
	b.Helper()
	p.answer(b)
}

// step has the child run one step and returns what it did.
func (p *rigProc) step(b *testing.B) dispatchStats {
	if _, err := io.WriteString(p.in, "step\n"); err != nil {
		p.fail(b, err)
	}
	return p.answer(b)
}

func (p *rigProc) answer(b *testing.B) dispatchStats {
	var st dispatchStats
	if err := p.answers.Decode(&st); err != nil {
		p.fail(b, err)
	}
	return st
}

// close ends the child and checks that its test passed.
func (p *rigProc) close(b *testing.B) {
	p.in.Close()
	if err := p.cmd.Wait(); err != nil {
		p.fail(b, err)
	}
}

func (p *rigProc) fail(b *testing.B, err error) {
	b.Helper()
	if p.cmd.ProcessState == nil {
		p.in.Close()
		p.cmd.Wait()
	}
	b.Fatalf("backlog process: %v\n%s", err, p.output.String())
}

// backlogRig is a Cluster recovered from a bbolt store filled with a
// backlog of Pending jobs of the default tenant, and one fake agent of
// agentSlots slots connected to it.
type backlogRig struct {
	db    *store.DB
	s     *Cluster
	agent *fakeAgent
	clock *benchClock
	spec  job.Spec // of the jobs that top the backlog up
}

func newBacklogRig(tb testing.TB, dir string, backlog int, sync, mixed bool) *backlogRig {
	tb.Helper()
	r := &backlogRig{db: openBenchStore(tb, dir, sync), agent: &fakeAgent{}, clock: newBenchClock(t0)}
	fillStore(tb, r.db, backlog, benchTenants(1), mixed)
	r.s = recoverCluster(tb, r.db, r.agent, r.clock)
	connectWorker(tb, r.s, "agent", agentSlots)
	r.spec = job.Spec{Command: []string{"true"}, Priority: job.DefaultPriority}
	return r
}

func (r *backlogRig) close(tb testing.TB) {
	if err := r.db.Close(); err != nil {
		tb.Error(err)
	}
}

// dispatchStats add up what the measured part of steps did.
type dispatchStats struct {
	Jobs, Passes int
	Wall, Pass   time.Duration // in all, and in Pass alone
	CPU          time.Duration // the process's user and system time
	Commits      uint64        // store transactions
	Bytes        uint64        // allocated on the heap
}

func (st *dispatchStats) add(o dispatchStats) {
	st.Jobs += o.Jobs
	st.Passes += o.Passes
	st.Wall += o.Wall
	st.Pass += o.Pass
	st.CPU += o.CPU
	st.Commits += o.Commits
	st.Bytes += o.Bytes
}

func (st *dispatchStats) rate() float64      { return float64(st.Jobs) / st.Wall.Seconds() }
func (st *dispatchStats) cpuPerJob() float64 { return float64(st.CPU) / float64(st.Jobs) }

// report reports st's figures, their units prefixed.
func (st *dispatchStats) report(b *testing.B, prefix string) {
	perJob := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(st.Jobs) }
	perPass := func(n uint64) float64 { return float64(n) / float64(st.Passes) }
	b.ReportMetric(st.rate(), prefix+"jobs/s")
	b.ReportMetric(float64(st.Jobs)/float64(st.Passes), prefix+"jobs/pass")
	b.ReportMetric(perJob(st.Pass), prefix+"pass-ns/job")
	b.ReportMetric(perJob(st.CPU), prefix+"cpu-ns/job")
	b.ReportMetric(perPass(st.Commits), prefix+"commits/pass")
	b.ReportMetric(perPass(st.Bytes), prefix+"B/pass")
}

// step runs one pass and has the agent start and finish what it placed,
// and returns what that did. Then, unmeasured, it submits as many new jobs
// as it dispatched, so that the backlog keeps its size, and moves the
// clock on by a millisecond.
func (r *backlogRig) step(tb testing.TB) dispatchStats {
	commits, cpu, allocated := r.db.Stats().Commits, cpuTime(), heapAllocated()
	start := time.Now()
	r.s.Pass(context.Background())
	passed := time.Now()
	n := r.agent.report(tb, r.s, r.clock.now())
	end := time.Now()
	st := dispatchStats{
		Jobs: n, Passes: 1, Wall: end.Sub(start), Pass: passed.Sub(start),
		CPU: cpuTime() - cpu, Commits: r.db.Stats().Commits - commits,
		Bytes: heapAllocated() - allocated,
	}
	if n > 0 {
		specs := make([]job.Spec, n)
		for i := range specs {
			specs[i] = r.spec
		}
		if _, err := r.s.SubmitBatch(context.Background(), specs); err != nil {
			tb.Fatal(err)
		}
	}
	r.clock.advance(time.Millisecond)
	return st
}

// cpuTime is the user and system time the process has used, on every
// thread: the dispatch loop, the store's commit loop, the fake agent's
// reports and the garbage collector. Unlike the wall time it does not
// count waiting for a CPU that another process holds.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heapAllocated is the bytes the process has allocated on the heap so far.
func heapAllocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func sameMixed(mixed bool) string {
	if mixed {
		return "mixed"
	}
	return "same"
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}
