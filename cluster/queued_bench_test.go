package cluster

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// queuedJobs is the backlog of the memory and figures benchmarks, and
// queuedTenants the tenants it is spread over.
const (
	queuedJobs    = 1_000_000
	queuedTenants = 1000
)

// BenchmarkQueuedHeap measures what the Cluster's memory costs per queued
// job: the live heap (/gc/heap/live:bytes after two collections) that it
// holds beyond what it held without them, divided by the jobs (goal: under
// 512 B/job).
//
// jobs=1000000 is a million Pending jobs of 1,000 tenants recovered from a
// bbolt store (store.Options.NoSync) filled beforehand: what a restart
// rebuilds, and the same entries a submit files (a job's record stays in
// the store; memory keeps its entry in the waitTable, its cell in the id
// index and its place in its tenant's queue). One iteration builds a
// Cluster and recovers it, so ns/op is the time a restart takes to
// rebuild a million queued jobs; each iteration's Cluster is dropped
// before the next.
//
// gc-ns/job is what the jobs add to the wall time of one full collection
// (runtime.GC): every cycle marks them all, and cycles come as often as
// the process allocates as much as its live heap.
//
// array=1000000 submits one array of a million tasks (a limit of 100 at
// once), which stays one record and one queue entry until its tasks are
// dispatched (goal: about 0 B/task). One iteration is one array, on the
// same Cluster.
func BenchmarkQueuedHeap(b *testing.B) {
	b.Run("jobs=1000000", func(b *testing.B) {
		db := openBenchStore(b, b.TempDir(), false)
		defer db.Close()
		fillStore(b, db, queuedJobs, benchTenants(queuedTenants), true)
		var heap int64
		var gc time.Duration
		for b.Loop() {
			b.StopTimer()
			before, gcBefore := liveHeap(), timeGC()
			b.StartTimer()
			s := recoverCluster(b, db, &fakeAgent{}, newBenchClock(t0))
			b.StopTimer()
			after, gcAfter := liveHeap(), timeGC()
			if n := queued(s); n != queuedJobs {
				b.Fatalf("%d jobs queued after recovery, want %d", n, queuedJobs)
			}
			runtime.KeepAlive(s)
			heap += after - before
			gc += gcAfter - gcBefore
			b.StartTimer()
		}
		b.ReportMetric(float64(heap)/float64(b.N)/queuedJobs, "heap-B/job")
		b.ReportMetric(float64(gc.Nanoseconds())/float64(b.N)/queuedJobs, "gc-ns/job")
	})
	b.Run("array=1000000", func(b *testing.B) {
		db := openBenchStore(b, b.TempDir(), false)
		defer db.Close()
		s := recoverCluster(b, db, &fakeAgent{}, newBenchClock(t0))
		spec := job.Spec{Command: []string{"true"}, Priority: job.DefaultPriority}
		arr := job.ArraySpec{First: 0, Last: queuedJobs - 1, Limit: 100}
		var grew int64
		for b.Loop() {
			b.StopTimer()
			before := liveHeap()
			b.StartTimer()
			if _, err := s.SubmitArray(context.Background(), spec, arr); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			grew += liveHeap() - before
			b.StartTimer()
		}
		if n := queued(s); n != b.N*queuedJobs {
			b.Fatalf("%d tasks queued, want %d", n, b.N*queuedJobs)
		}
		b.ReportMetric(float64(grew)/float64(b.N)/queuedJobs, "heap-B/task")
		b.ReportMetric(float64(grew)/float64(b.N), "heap-B/array")
	})
}

// timeGC returns how long one full collection takes.
func timeGC() time.Duration {
	start := time.Now()
	runtime.GC()
	return time.Since(start)
}

// queued returns the Pending jobs the Cluster counts, over every tenant.
func queued(s *Cluster) int {
	n := 0
	for _, t := range s.Tenants() {
		n += t.PendingJobs
	}
	return n
}

// BenchmarkFigures times what /metrics reads on every scrape, Tenants and
// Workers, with 1,000 tenants, 100 workers of 8 slots connected and one
// pass run (800 jobs Scheduled), and 1,000 or a million queued jobs. Both
// read counters kept on every change, so they cost O(tenants + workers +
// active jobs), not O(queued jobs): the jobs=1000000 row reports
// large/small, its ns/op over that of the jobs=1000 row before it in the
// same run (about 1). tenants-ns and workers-ns split ns/op between the
// two calls.
func BenchmarkFigures(b *testing.B) {
	const workers, slots = 100, 8
	var small float64 // ns/op of jobs=1000 in this run
	for _, n := range []int{1000, queuedJobs} {
		b.Run(fmt.Sprintf("jobs=%d/tenants=%d", n, queuedTenants), func(b *testing.B) {
			db := openBenchStore(b, b.TempDir(), false)
			defer db.Close()
			fillStore(b, db, n, benchTenants(queuedTenants), true)
			s := recoverCluster(b, db, &fakeAgent{}, newBenchClock(t0))
			for i := range workers {
				connectWorker(b, s, fmt.Sprintf("w%03d", i), slots)
			}
			s.Pass(context.Background())
			if got := queued(s); got != n-workers*slots {
				b.Fatalf("%d jobs queued after one pass, want %d", got, n-workers*slots)
			}
			var tenants, workersTime time.Duration
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				ts := s.Tenants()
				mid := time.Now()
				ws := s.Workers()
				tenants += mid.Sub(start)
				workersTime += time.Since(mid)
				if len(ts) != queuedTenants+1 || len(ws) != workers { // and the default tenant
					b.Fatalf("%d tenants, %d workers; want %d, %d", len(ts), len(ws), queuedTenants+1, workers)
				}
			}
			b.ReportMetric(float64(tenants.Nanoseconds())/float64(b.N), "tenants-ns")
			b.ReportMetric(float64(workersTime.Nanoseconds())/float64(b.N), "workers-ns")
			perOp := float64((tenants + workersTime).Nanoseconds()) / float64(b.N)
			switch {
			case n == 1000:
				small = perOp
			case small > 0:
				b.ReportMetric(perOp/small, "large/small")
			}
		})
		runtime.GC() // the last Cluster is garbage now
	}
}
