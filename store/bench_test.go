package store

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
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

// BenchmarkDecodeJob measures the decode of one typical stored job (a
// command, env, labels, a tenant), which a restart does for every job kept:
// the store's record as Get, List and Scan decode it, against the API's
// message that schema 1 stored. One iteration decodes the job once in each
// encoding, timing each side, so that both figures come from the same run:
// record-ns/job and api-ns/job, their ratio api/record (above 1: the record
// is faster), and the allocations and bytes of each.
func BenchmarkDecodeJob(b *testing.B) {
	j := benchJob(1)
	j.Version = 1
	rec, err := encodeJob(j, 1)
	require.NoError(b, err)
	api, err := hodeipb.MarshalJob(j, 1)
	require.NoError(b, err)
	decodeRecord := func() *job.Job {
		got, err := decodeJob(j.ID, rec)
		if err != nil {
			b.Fatal(err)
		}
		return got
	}
	decodeAPI := func() *job.Job {
		got, err := hodeipb.UnmarshalJob(api)
		if err != nil {
			b.Fatal(err)
		}
		return got
	}
	require.Equal(b, j, decodeRecord())
	require.Equal(b, j, decodeAPI())
	recordAllocs := testing.AllocsPerRun(100, func() { decodeRecord() })
	apiAllocs := testing.AllocsPerRun(100, func() { decodeAPI() })

	var recordTime, apiTime time.Duration
	n := 0
	for b.Loop() {
		start := time.Now()
		decodeRecord()
		mid := time.Now()
		decodeAPI()
		apiTime += time.Since(mid)
		recordTime += mid.Sub(start)
		n++
	}
	b.ReportMetric(float64(recordTime.Nanoseconds())/float64(n), "record-ns/job")
	b.ReportMetric(float64(apiTime.Nanoseconds())/float64(n), "api-ns/job")
	b.ReportMetric(float64(apiTime)/float64(recordTime), "api/record")
	b.ReportMetric(recordAllocs, "record-allocs/job")
	b.ReportMetric(apiAllocs, "api-allocs/job")
	b.ReportMetric(float64(len(rec)), "record-B")
	b.ReportMetric(float64(len(api)), "api-B")
}

// BenchmarkListFiltered measures one page (job.DefaultPageSize jobs) of a
// filtered List, paging on through the matches and starting over at the
// end, with the indexes (path=index) and with the full scan List did before
// them (path=scan, listScan). Filters: a tenant that holds 1% of the jobs,
// a label on 1% of them, both spread evenly over the ids, and a name of
// ten jobs (where the scan reads the whole store for one page). The store is
// filled once per size, with Insert calls of 1,000 jobs on a NoSync store.
// jobs=1000000 runs only when -bench names it (it takes a minute to fill):
//
//	go test -run '^$' -bench 'ListFiltered/jobs=1000000' ./store
func BenchmarkListFiltered(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		name := fmt.Sprintf("jobs=%d", n)
		if n > 100_000 && !strings.Contains(flag.Lookup("test.bench").Value.String(), name) {
			continue
		}
		b.Run(name, func(b *testing.B) {
			db := filledDB(b, n)
			for _, f := range []struct {
				name   string
				filter job.Filter
			}{
				{"tenant", job.Filter{Tenant: "team-rare"}},
				{"label", job.Filter{Labels: map[string]string{"env": "canary"}}},
				{"name", job.Filter{Name: "rare-build"}},
			} {
				for _, path := range []struct {
					name string
					list func(context.Context, job.Filter) ([]*job.Job, string, error)
				}{
					{"index", db.List},
					{"scan", func(ctx context.Context, f job.Filter) ([]*job.Job, string, error) { return listScan(ctx, db, f) }},
				} {
					b.Run("filter="+f.name+"/path="+path.name, func(b *testing.B) {
						filter, listed := f.filter, 0
						b.ReportAllocs()
						for b.Loop() {
							jobs, next, err := path.list(b.Context(), filter)
							if err != nil {
								b.Fatal(err)
							}
							listed += len(jobs)
							filter.After = next
						}
						b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/page")
						b.ReportMetric(float64(listed)/float64(b.N), "jobs/page")
					})
				}
			}
		})
	}
}

// filledDB returns a NoSync store holding n benchJobs: 1% of tenant
// team-rare (i%100 == 0), 1% labelled env=canary (i%100 == 50), ten named
// rare-build.
func filledDB(b *testing.B, n int) *DB {
	b.Helper()
	db, err := Open(filepath.Join(b.TempDir(), "hodei.db"), Options{NoSync: true})
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, db.Close()) })
	storetest.MustPutTenant(b, db, storetest.NewTenant("team-platform"), storetest.NewTenant("team-rare"))
	start := time.Now()
	batch := make([]*job.Job, 0, 1000)
	for i := 1; i <= n; i++ {
		j := benchJob(i)
		switch i % 100 {
		case 0:
			j.Spec.Tenant = "team-rare"
		case 50:
			j.Spec.Labels["env"] = "canary"
		}
		if i%(n/10) == 7 {
			j.Spec.Name = "rare-build"
		}
		if batch = append(batch, j); len(batch) == cap(batch) || i == n {
			require.NoError(b, db.Insert(b.Context(), batch))
			batch = batch[:0]
		}
	}
	b.Logf("filled %d jobs in %s", n, time.Since(start).Round(time.Millisecond))
	return db
}

// listScan is List as it was before the indexes, for comparison: it walks
// the jobs bucket from f.After and decodes every job it passes.
func listScan(ctx context.Context, db *DB, f job.Filter) ([]*job.Job, string, error) {
	if err := db.usable(ctx); err != nil {
		return nil, "", err
	}
	limit := f.PageSize()
	var (
		out  []*job.Job
		next string
	)
	err := db.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketJobs).Cursor()
		k, v := c.First()
		if f.After != "" {
			k, v = c.Seek([]byte(f.After))
			if k != nil && string(k) == f.After {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			if len(out) == limit {
				next = out[len(out)-1].ID
				return nil
			}
			j, err := decodeJob(string(k), v)
			if err != nil {
				return fmt.Errorf("job %s: %w", k, err)
			}
			if f.Match(j) {
				out = append(out, j)
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list jobs: %w", err)
	}
	return out, next, nil
}

// BenchmarkRetentionSweep measures a retention sweep (DeleteFinished, as
// the server's sweeper calls it) over a store of 1,000,000 queued jobs
// made in the last hour, with a retention cutoff two hours back: the walk
// ends at the first job made after the cutoff, so a sweep reads none of
// them. full-scan-ms is the same call with the cutoff after every job, which
// reads every record as each sweep did before (one call, measured once).
func BenchmarkRetentionSweep(b *testing.B) {
	const n = 1_000_000
	db, err := Open(filepath.Join(b.TempDir(), "hodei.db"), Options{NoSync: true})
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, db.Close()) })
	storetest.FillQueued(b, db, n)
	start := time.Now()
	got, err := db.DeleteFinished(b.Context(), time.Now(), 1000, nil)
	require.NoError(b, err)
	require.Empty(b, got)
	full := time.Since(start)
	cutoff := time.Now().Add(-2 * time.Hour)
	b.ResetTimer()
	for b.Loop() {
		if got, err := db.DeleteFinished(b.Context(), cutoff, 1000, nil); err != nil || len(got) > 0 {
			b.Fatal(got, err)
		}
	}
	b.ReportMetric(float64(full.Microseconds())/1000, "full-scan-ms")
	b.ReportMetric(n, "queued")
}

// BenchmarkListWindow is the default `hodei jobs ls` in the store: the
// newest page of 50 of the jobs not finished and finished in the last hour
// (10,000 pending, 10,000 finished in the last half hour, the rest
// cancelled two days ago), the count of those finished in the window
// (Cluster.Count reads the unfinished ones from its counters), and the
// lookup of an id by a prefix someone typed. The 1,000,000 size runs only
// when named:
//
//	go test -run '^$' -bench 'ListWindow/jobs=1000000' -benchtime 200x ./store
func BenchmarkListWindow(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		name := fmt.Sprintf("jobs=%d", n)
		if n > 100_000 && !strings.Contains(flag.Lookup("test.bench").Value.String(), name) {
			continue
		}
		b.Run(name, func(b *testing.B) {
			db, err := Open(filepath.Join(b.TempDir(), "hodei.db"), Options{NoSync: true})
			require.NoError(b, err)
			b.Cleanup(func() { require.NoError(b, db.Close()) })
			now := time.Now()
			h := storetest.FillHistory(b, db, n, 10_000, 10_000, now)
			window := job.Filter{NotFinishedBefore: now.Add(-time.Hour), Desc: true, Limit: 50}
			b.Run("op=page", func(b *testing.B) {
				for b.Loop() {
					jobs, _, err := db.List(b.Context(), window)
					if err != nil || len(jobs) != 50 || jobs[0].ID != h.Newest {
						b.Fatalf("page: %d jobs, %v", len(jobs), err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/page")
			})
			b.Run("op=count-finished", func(b *testing.B) {
				f := window
				f.Finished = true
				for b.Loop() {
					got, exact, err := db.Count(b.Context(), f, 100_000)
					if err != nil || !exact || got != h.Recent {
						b.Fatalf("count = %d, %v, %v; want %d", got, exact, err, h.Recent)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/count")
			})
			b.Run("op=prefix", func(b *testing.B) {
				i := 0
				for b.Loop() {
					id := h.IDs[(i*7919)%n]
					i++
					refs, err := db.JobsByPrefix(b.Context(), id[:13], nil, 1001)
					if err != nil || len(refs) != 1 {
						b.Fatalf("prefix %s: %d, %v", id[:13], len(refs), err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/lookup")
			})
		})
	}
}

// BenchmarkJobsByPrefixScoped resolves a prefix for a caller limited to
// one tenant, whose two jobs sit after others other tenants' jobs in the
// prefix's range: the cost (µs/lookup) must not grow with others. The
// million runs only when named:
//
//	go test -run '^$' -bench 'JobsByPrefixScoped/others=1000000' -benchtime 2000x ./store
func BenchmarkJobsByPrefixScoped(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		name := fmt.Sprintf("others=%d", n)
		if n > 10_000 && !strings.Contains(flag.Lookup("test.bench").Value.String(), name) {
			continue
		}
		b.Run(name, func(b *testing.B) {
			db, err := Open(filepath.Join(b.TempDir(), "hodei.db"), Options{NoSync: true})
			require.NoError(b, err)
			b.Cleanup(func() { require.NoError(b, db.Close()) })
			storetest.MustPutTenant(b, db, storetest.NewTenant("team-x"))
			ctx := b.Context()
			for i := 1; i <= n; i += 10_000 {
				batch := make([]*job.Job, 0, 10_000)
				for k := i; k < i+10_000 && k <= n; k++ {
					batch = append(batch, storetest.NewJob(k))
				}
				storetest.MustInsert(b, db, batch...)
			}
			var mine []*job.Job
			for k := n + 1; k <= n+2; k++ {
				j := storetest.NewJob(k)
				j.Spec.Tenant = "team-x"
				mine = append(mine, j)
			}
			storetest.MustInsert(b, db, mine...)
			for b.Loop() {
				refs, err := db.JobsByPrefix(ctx, "01HZ", []string{"team-x"}, 1001)
				if err != nil || len(refs) != 2 || refs[0].ID != mine[0].ID {
					b.Fatalf("prefix: %v, %v", refs, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/lookup")
		})
	}
}
