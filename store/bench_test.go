package store

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// Benchmarks run on the real disk (tb.TempDir) with fsync on. Each iteration
// is one record or one job, so that -benchtime=2000x stays short.

// benchJob returns a job shaped like a typical submit: a short command,
// labels, some env, a dependency.
func benchJob(n int) *job.Job {
	j := storetest.NewJob(n)
	j.Spec.Name = "nightly-build"
	j.Spec.Tenant = "team-platform"
	j.Spec.Command = []string{"/usr/bin/make", "-C", "/srv/build", "release", "VERBOSE=1"}
	j.Spec.Labels = map[string]string{"app": "web", "env": "prod", "owner": "platform"}
	j.Spec.Env = map[string]string{"GOFLAGS": "-mod=readonly", "CI": "true", "PATH": "/usr/local/bin:/usr/bin:/bin"}
	j.Spec.Timeout = 30 * time.Minute
	j.Spec.Retries = 2
	j.Spec.Resources = job.Resources{CPUMillis: 2000, MemoryMiB: 4096, Slots: 1}
	j.Spec.Selector = map[string]string{"arch": "amd64"}
	return j
}

// openRawBolt opens a bbolt file with the store's options and fsync on.
func openRawBolt(b *testing.B) *bolt.DB {
	b.Helper()
	path := filepath.Join(b.TempDir(), "raw.db")
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: DefaultInitialMmapSize,
	})
	require.NoError(b, err)
	require.NoError(b, bdb.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket(bucketJobs)
		return err
	}))
	b.Cleanup(func() {
		require.NoError(b, bdb.Close())
		require.NoError(b, CheckFile(path))
	})
	return bdb
}

// benchRecord is one encoded job, the value a real submit writes.
func benchRecord(b *testing.B) []byte {
	b.Helper()
	enc, err := encodeJob(benchJob(1), 1)
	require.NoError(b, err)
	return enc
}

func BenchmarkBoltOneTxPerRecord(b *testing.B) {
	bdb := openRawBolt(b)
	rec := benchRecord(b)
	b.SetBytes(int64(len(rec)))
	n := 0
	for b.Loop() {
		n++
		err := bdb.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketJobs).Put([]byte(storetest.ID(n)), rec)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkBoltThousandPerTx(b *testing.B) {
	const perTx = 1000
	bdb := openRawBolt(b)
	rec := benchRecord(b)
	b.SetBytes(int64(len(rec)))
	var tx *bolt.Tx
	n := 0
	for b.Loop() {
		if tx == nil {
			var err error
			if tx, err = bdb.Begin(true); err != nil {
				b.Fatal(err)
			}
		}
		n++
		if err := tx.Bucket(bucketJobs).Put([]byte(storetest.ID(n)), rec); err != nil {
			b.Fatal(err)
		}
		if n%perTx == 0 {
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
			tx = nil
		}
	}
	if tx != nil {
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkInsert measures store.DB.Insert of one job per call from N
// concurrent clients. One iteration is one job; jobs/s counts from the first
// call to the last reply.
func BenchmarkInsert(b *testing.B) {
	for _, clients := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			db := MustOpenPath(b, filepath.Join(b.TempDir(), "hodei.db"), Options{})
			storetest.MustPutTenant(b, db, storetest.NewTenant(benchJob(0).Spec.Tenant))
			rec := benchRecord(b)
			b.SetBytes(int64(len(rec)))
			var (
				next      atomic.Int64
				work      = make(chan struct{})
				wg        sync.WaitGroup
				latencies = make([][]time.Duration, clients)
			)
			for c := range clients {
				wg.Go(func() {
					for range work {
						j := benchJob(int(next.Add(1)))
						start := time.Now()
						if err := db.Insert(context.Background(), []*job.Job{j}); err != nil {
							b.Error(err)
						}
						latencies[c] = append(latencies[c], time.Since(start))
					}
				})
			}
			start := time.Now()
			for b.Loop() {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
			elapsed := time.Since(start)

			all := slices.Concat(latencies...)
			slices.Sort(all)
			st := db.Stats()
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "jobs/s")
			b.ReportMetric(float64(all[len(all)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(all[len(all)*99/100].Nanoseconds()), "p99-ns")
			b.ReportMetric(float64(st.Requests)/float64(max(st.Commits, 1)), "jobs/commit")
		})
	}
}
