package store

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// insertN inserts storetest.NewJob(from) … NewJob(to), change applied to
// each, in calls of 1,000.
func insertN(tb testing.TB, db *DB, from, to int, change func(*job.Job)) {
	tb.Helper()
	for lo := from; lo <= to; lo += 1000 {
		var batch []*job.Job
		for n := lo; n <= min(lo+999, to); n++ {
			j := storetest.NewJob(n)
			if change != nil {
				change(j)
			}
			batch = append(batch, j)
		}
		require.NoError(tb, db.Insert(context.Background(), batch))
	}
}

// listIDs returns the ids of one page of f.
func listIDs(t *testing.T, db *DB, f job.Filter) []string {
	t.Helper()
	jobs, _, err := db.List(t.Context(), f)
	require.NoError(t, err)
	var out []string
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

func TestIndexBackfill(t *testing.T) {
	// fill stores jobs 1–300, moves 1–10 to Scheduled and closes the file.
	fill := func(t *testing.T, path string) {
		db, err := Open(path, Options{NoSync: true})
		require.NoError(t, err)
		insertN(t, db, 1, 300, nil)
		for n := 1; n <= 10; n++ {
			storetest.MustApply(t, db, storetest.NewJob(n), func(j *job.Job) { j.Version = 1; j.State = job.Scheduled; j.Worker = "w" })
		}
		require.NoError(t, db.Close())
	}
	drop := func(t *testing.T, path string, kinds ...indexKind) {
		bdb, err := bolt.Open(path, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
			for _, k := range kinds {
				if err := tx.DeleteBucket(indexBuckets[k]); err != nil {
					return err
				}
			}
			return nil
		}))
		require.NoError(t, bdb.Close())
	}
	reopen := func(t *testing.T, path string) (*DB, string) {
		var logs bytes.Buffer
		db := MustOpenPath(t, path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		return db, logs.String()
	}
	t.Run("All", func(t *testing.T) {
		// A file written before the indexes gets them all at Open.
		path := filepath.Join(t.TempDir(), "hodei.db")
		fill(t, path)
		var all []indexKind
		for k := range numIndexes {
			all = append(all, k)
		}
		drop(t, path, all...)
		db, logs := reopen(t, path)
		require.Contains(t, logs, "job indexes built")
		require.Contains(t, logs, "jobs=300")
		require.NoError(t, db.Check())
		require.Equal(t, []string{storetest.ID(7)}, listIDs(t, db, job.Filter{Name: "job-7"}))
		require.Len(t, listIDs(t, db, job.Filter{State: job.Scheduled}), 10)
		require.Len(t, listIDs(t, db, job.Filter{State: job.Pending, Limit: 1000}), 290)
		require.Len(t, listIDs(t, db, job.Filter{Labels: map[string]string{"parity": "odd"}, Limit: 1000}), 150)
	})
	t.Run("One", func(t *testing.T) {
		// Only the missing index is built; the others are left as they are.
		path := filepath.Join(t.TempDir(), "hodei.db")
		fill(t, path)
		drop(t, path, indexName)
		db, logs := reopen(t, path)
		require.Contains(t, logs, "indexes=["+string(indexBuckets[indexName])+"]")
		require.NoError(t, db.Check())
		require.Equal(t, []string{storetest.ID(299)}, listIDs(t, db, job.Filter{Name: "job-299"}))
	})
	t.Run("None", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "hodei.db")
		fill(t, path)
		_, logs := reopen(t, path)
		require.NotContains(t, logs, "job indexes built")
	})
}

func TestCheckIndexes(t *testing.T) {
	// open returns a DB with jobs 1–3 that is not checked in cleanup: the
	// test damages its indexes.
	open := func(t *testing.T) *DB {
		db, err := Open(filepath.Join(t.TempDir(), "hodei.db"), Options{NoSync: true})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, db.Close()) })
		insertN(t, db, 1, 3, nil)
		require.NoError(t, db.Check())
		return db
	}
	key := func(id string, parts ...string) []byte {
		return append(indexPrefix(parts...), id...)
	}
	ids := func(ids ...string) []byte {
		var b [][]byte
		for _, id := range ids {
			b = append(b, []byte(id))
		}
		return encodeIDs(b)
	}
	for name, tc := range map[string]struct {
		damage func(*bolt.Tx) error
		want   string
	}{
		"Missing": {
			func(tx *bolt.Tx) error {
				return tx.Bucket(indexBuckets[indexName]).Delete(key(storetest.ID(2), "job-2"))
			},
			fmt.Sprintf("index index_name: job %s (PENDING) has no entry", storetest.ID(2)),
		},
		"Stale": {
			// The job's entry under a state it left.
			func(tx *bolt.Tx) error {
				return tx.Bucket(indexBuckets[indexState]).Put(key(storetest.ID(1), stateValue(job.Running)), ids(storetest.ID(1)))
			},
			fmt.Sprintf("does not match job %s (PENDING)", storetest.ID(1)),
		},
		"NoJob": {
			func(tx *bolt.Tx) error {
				return tx.Bucket(indexBuckets[indexTenant]).Put(key(storetest.ID(9), job.DefaultTenant), ids(storetest.ID(9)))
			},
			"names no stored job",
		},
		"Malformed": {
			func(tx *bolt.Tx) error { return tx.Bucket(indexBuckets[indexLabel]).Put([]byte{9, 'x'}, nil) },
			"malformed key",
		},
		"MalformedChunk": {
			func(tx *bolt.Tx) error {
				return tx.Bucket(indexBuckets[indexName]).Put(key(storetest.ID(2), "job-2"), []byte{40, 'x'})
			},
			"malformed chunk",
		},
		"WrongFirst": {
			// A chunk whose key is not its first id.
			func(tx *bolt.Tx) error {
				return tx.Bucket(indexBuckets[indexName]).Put(key(storetest.ID(2), "job-2"), ids(storetest.ID(3)))
			},
			"starts with",
		},
		"Unordered": {
			func(tx *bolt.Tx) error {
				return tx.Bucket(indexBuckets[indexTenant]).Put(key(storetest.ID(1), job.DefaultTenant),
					ids(storetest.ID(1), storetest.ID(3), storetest.ID(2)))
			},
			"out of order",
		},
	} {
		t.Run(name, func(t *testing.T) {
			db := open(t)
			require.NoError(t, db.bolt.Update(tc.damage))
			err := db.Check()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestListCancelled(t *testing.T) {
	// 5,000 jobs of one tenant, three of them completed. Listing the
	// tenant's completed jobs walks the tenant's range (tenant comes before
	// state, see planList); a client that goes away stops the walk.
	db := MustOpenPath(t, filepath.Join(t.TempDir(), "hodei.db"), Options{NoSync: true})
	const total = 5000
	insertN(t, db, 1, total, nil)
	for _, n := range []int{1, 2500, total} {
		j := storetest.NewJob(n)
		j.Version = 1
		storetest.Finish(t, db, j, job.Completed, storetest.T0)
	}
	f := job.Filter{Tenant: job.DefaultTenant, State: job.Completed}

	t.Run("Complete", func(t *testing.T) {
		visits := 0
		hook := func(int) { visits++ }
		db.listed.Store(&hook)
		t.Cleanup(func() { db.listed.Store(nil) })
		got := listIDs(t, db, f)
		require.Equal(t, []string{storetest.ID(1), storetest.ID(2500), storetest.ID(total)}, got)
		require.Equal(t, total/listCheckEvery, visits, "checks the context every %d keys", listCheckEvery)
	})
	t.Run("Cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		visited := 0
		hook := func(n int) {
			visited = n
			cancel() // the client goes away once the scan is under way
		}
		db.listed.Store(&hook)
		t.Cleanup(func() { db.listed.Store(nil) })
		jobs, next, err := db.List(ctx, f)
		require.ErrorIs(t, err, context.Canceled)
		require.Empty(t, jobs)
		require.Empty(t, next)
		require.Equal(t, listCheckEvery, visited, "stopped at the first check")
		require.Less(t, visited, total)
	})
	t.Run("Selective", func(t *testing.T) {
		// A filter with a narrow index visits what it returns, not the
		// store: no check is reached.
		hook := func(n int) { t.Errorf("visited %d keys for one job", n) }
		db.listed.Store(&hook)
		t.Cleanup(func() { db.listed.Store(nil) })
		require.Equal(t, []string{storetest.ID(4321)}, listIDs(t, db, job.Filter{Name: "job-4321", State: job.Pending, Tenant: job.DefaultTenant}))
		require.Equal(t, []string{storetest.ID(2500)}, listIDs(t, db, job.Filter{State: job.Completed, After: storetest.ID(1), Limit: 1}))
	})
}

func TestApplyReadsIndexesAgain(t *testing.T) {
	// Apply reads a job's index keys before its commit; when another
	// update of the job commits in between, it must take the keys from the
	// job it replaces, not from what it read. A renames job 1 to "a" and
	// schedules it; B, read before A committed, renames it to "b" and
	// starts it, in the same commit after A.
	db := MustOpen(t)
	j := storetest.NewJob(1)
	require.NoError(t, db.Insert(t.Context(), []*job.Job{j}))
	a := j.Clone()
	a.State, a.Worker, a.Spec.Name = job.Scheduled, "w", "a"
	b := a.Clone()
	b.State, b.Spec.Name = job.Running, "b"

	release := blockLoop(t, db)
	errc := make(chan error, 2)
	apply := func(u job.Update) {
		errs, err := db.Apply(context.Background(), []job.Update{u})
		if err == nil {
			err = errs[0]
		}
		errc <- err
	}
	queued := countEnqueued(db, 1)
	go apply(job.Update{Expect: job.Expect{State: job.Pending, Attempt: 1}, Next: a})
	<-queued
	queued = countEnqueued(db, 1)
	go apply(job.Update{Expect: job.Expect{State: job.Scheduled, Attempt: 1}, Next: b})
	<-queued
	db.enqueued.Store(nil)
	close(release)
	require.NoError(t, <-errc)
	require.NoError(t, <-errc)

	require.NoError(t, db.Check())
	for f, want := range map[*job.Filter][]string{
		{Name: "job-1"}:        nil,
		{Name: "a"}:            nil,
		{Name: "b"}:            {storetest.ID(1)},
		{State: job.Scheduled}: nil,
		{State: job.Running}:   {storetest.ID(1)},
		{State: job.Pending}:   nil,
	} {
		require.Equal(t, want, listIDs(t, db, *f), "%+v", *f)
	}
}
