package cluster_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// BenchmarkRecover rebuilds a cluster's memory from a store holding queued
// jobs, as a restart does, and reports the time it takes and the live heap
// each queued job costs afterwards.
func BenchmarkRecover(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("jobs=%d", n), func(b *testing.B) {
			path := queuedStore(b, n)
			db, err := store.Open(path, store.Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			for b.Loop() {
				before := liveHeap()
				c := cluster.New(cluster.Config{Store: db, Dispatcher: nopDispatcher{}})
				start := time.Now()
				if err := c.Recover(context.Background()); err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				after := liveHeap()
				if st, _ := c.Tenant(job.DefaultTenant); st.PendingJobs != n {
					b.Fatalf("%d jobs pending after recovery, want %d", st.PendingJobs, n)
				}
				b.ReportMetric(took.Seconds(), "s-to-recover")
				b.ReportMetric(float64(after-before)/float64(n), "heap-B/queued-job")
				runtime.KeepAlive(c)
			}
		})
	}
}

// queuedStore returns the path of a database holding n Pending jobs, made
// once per run in the test's temporary directory.
func queuedStore(b *testing.B, n int) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "hodei.db")
	db, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	storetest.FillQueued(b, db, n)
	return path
}

// liveHeap returns the live heap after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// nopDispatcher drops every order: recovery sends none.
type nopDispatcher struct{}

func (nopDispatcher) Assign(string, *job.Job) bool            { return true }
func (nopDispatcher) Cancel(string, cluster.CancelOrder) bool { return true }
