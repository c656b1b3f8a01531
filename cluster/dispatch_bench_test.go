package cluster

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store"
)

// agentSlots is the size of the fake agent BenchmarkDispatchBacklog
// dispatches to: each pass places up to this many jobs.
const agentSlots = 64

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

// dispatchStats add up what the timed part of steps did.
type dispatchStats struct {
	jobs, passes int
	wall, pass   time.Duration // in all, and in Pass alone
	cpu          time.Duration // the process's user and system time
	commits      uint64        // store transactions
}

// step runs one pass and has the agent start and finish what it placed,
// with b's timer running, and adds what that did to st. Then, with the
// timer stopped, it submits as many new jobs as it dispatched, so that the
// backlog keeps its size, and moves the clock on by a millisecond.
func (r *backlogRig) step(b *testing.B, st *dispatchStats) {
	commits, cpu := r.db.Stats().Commits, cpuTime()
	start := time.Now()
	r.s.Pass(context.Background())
	passed := time.Now()
	n := r.agent.report(b, r.s, r.clock.now())
	end := time.Now()
	st.jobs += n
	st.passes++
	st.wall += end.Sub(start)
	st.pass += passed.Sub(start)
	st.cpu += cpuTime() - cpu
	st.commits += r.db.Stats().Commits - commits
	b.StopTimer()
	if n > 0 {
		specs := make([]job.Spec, n)
		for i := range specs {
			specs[i] = r.spec
		}
		if _, err := r.s.SubmitBatch(context.Background(), specs); err != nil {
			b.Fatal(err)
		}
	}
	r.clock.advance(time.Millisecond)
	b.StartTimer()
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

// BenchmarkDispatchBacklog measures the dispatch rate (jobs/s) to a fake
// agent of 64 slots from a backlog of 1,000 and of 1,000,000 queued jobs
// of one tenant, on the real bbolt store. One iteration is one pass: the
// Cluster places up to 64 jobs and commits them, then the agent reports
// each started and finished (each report is a store write of its own;
// concurrent ones share a commit when they meet in the store's queue),
// which frees the slots for the next pass; new submits keep the backlog
// at its size, outside the timer. The backlog is filled straight into the
// store and recovered, as a restart finds it. -benchtime 320x dispatches
// about 20,000 jobs.
//
// sync=off skips fsync (store.Options.NoSync), so that the figure is the
// CPU cost of a dispatch and not the disk; sync=on is the production
// setting. prio=same is a backlog of one priority, dispatched in
// submission order, which is the store's key order; prio=mixed spreads the
// priorities over the whole range, so that each pass updates jobs spread
// all over the store's file. Besides jobs/s: pass-ns/job is the part of
// the wall time spent in Pass (its commit included), cpu-ns/job the
// process's CPU time per job (every goroutine, the garbage collector's
// too; steadier than wall time on a shared host), commits/pass the store
// transactions per pass. The backlog=1000000 rows report large/small,
// their jobs/s over that of the backlog=1000 row before them in the same
// run (goal: at least 0.8), and cpu-large/small, the inverse ratio of
// their CPU per job. Each row builds its backlog afresh and drops it
// after, so that the other's heap does not weigh on its garbage
// collection.
func BenchmarkDispatchBacklog(b *testing.B) {
	for _, sync := range []bool{false, true} {
		for _, mixed := range []bool{false, true} {
			var small dispatchStats // of backlog=1000 in this run
			for _, backlog := range []int{1000, 1_000_000} {
				name := fmt.Sprintf("sync=%s/prio=%s/backlog=%d", onOff(sync), sameMixed(mixed), backlog)
				b.Run(name, func(b *testing.B) {
					rig := newBacklogRig(b, b.TempDir(), backlog, sync, mixed)
					defer rig.close(b)
					var st dispatchStats
					b.ReportAllocs()
					for b.Loop() {
						rig.step(b, &st)
					}
					if st.jobs == 0 {
						b.Fatal("dispatched nothing")
					}
					perJob := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(st.jobs) }
					b.ReportMetric(rate(st), "jobs/s")
					b.ReportMetric(float64(st.jobs)/float64(st.passes), "jobs/pass")
					b.ReportMetric(perJob(st.pass), "pass-ns/job")
					b.ReportMetric(perJob(st.cpu), "cpu-ns/job")
					b.ReportMetric(float64(st.commits)/float64(st.passes), "commits/pass")
					switch {
					case backlog == 1000:
						small = st
					case small.jobs > 0:
						b.ReportMetric(rate(st)/rate(small), "large/small")
						b.ReportMetric(perJobCPU(small)/perJobCPU(st), "cpu-large/small")
					}
				})
				runtime.GC() // the last rig's heap is garbage now
			}
		}
	}
}

func rate(st dispatchStats) float64      { return float64(st.jobs) / st.wall.Seconds() }
func perJobCPU(st dispatchStats) float64 { return float64(st.cpu) / float64(st.jobs) }

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
