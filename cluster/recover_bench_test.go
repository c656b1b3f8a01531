package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store"
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
				c := New(Config{Store: db, Dispatcher: &recorder{}})
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
	t := time.Now().Add(-time.Hour)
	for i := 0; i < n; i += 1000 {
		batch := make([]*job.Job, 0, 1000)
		for k := range min(1000, n-i) {
			spec := job.Spec{Command: []string{"/bin/true", "--job", strconv.Itoa(i + k)}, Labels: map[string]string{"batch": strconv.Itoa(i / 1000)}}
			spec.Normalize()
			id := ulid.MustNew(ulid.Timestamp(t.Add(time.Duration(i+k)*time.Microsecond)), ulid.DefaultEntropy()).String()
			batch = append(batch, &job.Job{ID: id, Spec: spec, State: job.Pending, Attempt: 1, CreatedAt: t})
		}
		if err := db.Insert(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	return path
}

// liveHeap returns the live heap after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
