package cluster

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// unplaceableShapes are the shapes of BenchmarkUnplaceableBacklog's jobs,
// in turn: none fits a worker of unplaceableRig.
var unplaceableShapes = []func(*job.Spec){
	func(s *job.Spec) { s.Selector = map[string]string{"zone": "nowhere"} },
	func(s *job.Spec) { s.Resources.Slots = 64 },
	func(s *job.Spec) { s.Resources.MemoryMiB = 1 << 20 },
	func(s *job.Spec) { s.Resources.CPUMillis = 1000 * 1000 },
}

const (
	unplaceableTenants = 10
	unplaceableWorkers = 100 // of 8 slots each, idle
)

// unplaceableRig is a Cluster recovered from a store holding n Pending jobs
// that no worker can take, of the unplaceableShapes over
// unplaceableTenants tenants, with unplaceableWorkers idle workers.
type unplaceableRig struct {
	s    *Cluster
	base string // the first job's id; job i is job.AddID(base, i)
	n    int
}

func newUnplaceableRig(b *testing.B, n int) *unplaceableRig {
	b.Helper()
	db := openBenchStore(b, b.TempDir(), false)
	b.Cleanup(func() { db.Close() })
	fillStoreWith(b, db, n, benchTenants(unplaceableTenants), func(i int, spec *job.Spec) {
		unplaceableShapes[i%len(unplaceableShapes)](spec)
	})
	s := recoverCluster(b, db, &fakeAgent{}, newBenchClock(t0))
	for i := range unplaceableWorkers {
		connectWorker(b, s, fmt.Sprintf("w%03d", i), 8)
	}
	base := ulid.MustNew(ulid.Timestamp(t0.Add(-time.Hour)), bytes.NewReader(make([]byte, 16))).String()
	return &unplaceableRig{s: s, base: base, n: n}
}

// pass runs one pass, fails if it placed anything, and returns its wall
// and CPU time (the process's, the garbage collector's included).
func (r *unplaceableRig) pass(b *testing.B) (wall, cpu time.Duration) {
	cpu0, start := cpuTime(), time.Now()
	r.s.Pass(context.Background())
	wall, cpu = time.Since(start), cpuTime()-cpu0
	if n := queued(r.s); n != r.n {
		b.Fatalf("%d jobs queued after a pass, want all %d", n, r.n)
	}
	return wall, cpu
}

// settle runs passes until one asks for no immediate successor, as Run
// does: the first passes park the backlog (see park.go), at most
// maxParkPerPass jobs each. It returns how many passes that took, their
// CPU time, and the longest one's.
func (r *unplaceableRig) settle(b *testing.B) (passes int, cpu, longest time.Duration) {
	for {
		cpu0 := cpuTime()
		next := r.s.Pass(context.Background())
		c := cpuTime() - cpu0
		passes, cpu, longest = passes+1, cpu+c, max(longest, c)
		if n := queued(r.s); n != r.n {
			b.Fatalf("%d jobs queued after a pass, want all %d", n, r.n)
		}
		if next.IsZero() || next.After(r.s.cfg.Now()) {
			return passes, cpu, longest
		}
	}
}

// job returns (what Why reads of) job i.
func (r *unplaceableRig) job(i int) *job.Job {
	return &job.Job{ID: job.AddID(r.base, uint64(i)), State: job.Pending, Attempt: 1}
}

// BenchmarkUnplaceableBacklog measures what a backlog of jobs that no
// worker can take costs a pass, and what saying why they wait costs: a
// backlog of 1,000 and one of 1,000,000 Pending jobs of four shapes (a
// label no worker has, 64 slots, 1 TiB, 1,000 cores) over 10 tenants,
// against 100 idle workers of 8 slots, in one process, both recovered
// from bbolt stores. One iteration is one pass over each backlog, in
// turns; no pass places anything.
//
// The first passes park the backlog out of the tenants' queues (see
// park.go), at most maxParkPerPass jobs a pass: 1M-park-passes is how
// many passes that takes, 1M-park-cpu-ns/job their CPU time per job
// parked, 1M-park-max-cpu-ns the longest one's. Then reasons are not
// computed by passes (see cluster/reasons.go): pass-ns (wall) and cpu-ns
// (the process's CPU time, the garbage collector's included; steadier on
// a shared host) are what a pass costs with such a backlog parked,
// whether anyone asks why: the passes walk none of it, so the million
// costs what the thousand does (cpu-large/small).
//
// Then, on the million: why-ns is one job's reason (cluster.Why) with the
// explanations of its shape cached; why-cold-ns the same right after the
// workers changed, which explains the shape against the 100 workers
// again; page-ns the reasons of 1,000 jobs in a row, as a `jobs ls` page
// asks them.
func BenchmarkUnplaceableBacklog(b *testing.B) {
	small := newUnplaceableRig(b, 1000)
	large := newUnplaceableRig(b, 1_000_000)
	small.settle(b)
	passes, parkCPU, longest := large.settle(b)
	var sw, sc, lw, lc time.Duration
	add := func(r *unplaceableRig, wall, cpu *time.Duration) {
		w, c := r.pass(b)
		*wall += w
		*cpu += c
	}
	swap := false
	for b.Loop() {
		if swap {
			add(large, &lw, &lc)
			add(small, &sw, &sc)
		} else {
			add(small, &sw, &sc)
			add(large, &lw, &lc)
		}
		swap = !swap
	}
	perPass := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
	b.ReportMetric(perPass(sw), "1k-pass-ns")
	b.ReportMetric(perPass(lw), "1M-pass-ns")
	b.ReportMetric(perPass(sc), "1k-cpu-ns")
	b.ReportMetric(perPass(lc), "1M-cpu-ns")
	b.ReportMetric(float64(lc)/float64(sc), "cpu-large/small")
	b.ReportMetric(float64(passes), "1M-park-passes")
	b.ReportMetric(float64(parkCPU.Nanoseconds())/float64(large.n), "1M-park-cpu-ns/job")
	b.ReportMetric(float64(longest.Nanoseconds()), "1M-park-max-cpu-ns")

	const asks = 10_000
	s := large.s
	kinds := make(map[scheduler.WhyKind]int)
	start := time.Now()
	for i := range asks {
		kinds[s.Why(large.job(i*97%large.n)).Kind]++
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/asks, "why-ns")
	for _, k := range []scheduler.WhyKind{scheduler.WhyLabels, scheduler.WhySlots, scheduler.WhyMemory, scheduler.WhyCPU} {
		if kinds[k] == 0 {
			b.Fatalf("no job waits for %s: %v", k, kinds)
		}
	}
	var cold time.Duration
	for i := range 1000 {
		s.workers.gen.Add(1) // as a worker that joins or leaves
		start := time.Now()
		s.Why(large.job(i))
		cold += time.Since(start)
	}
	b.ReportMetric(float64(cold.Nanoseconds())/1000, "why-cold-ns")
	start = time.Now()
	for i := range 1000 {
		s.Why(large.job(large.n/2 + i))
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds()), "page-ns")
}
