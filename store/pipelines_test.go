package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/record"
	"github.com/hodei-jobs/hodei/store/storetest"
)

func TestPipelines(t *testing.T) {
	t.Run("Reopen", func(t *testing.T) {
		// A pipeline record, its replacement and its jobs survive a
		// restart; a deleted record stays deleted.
		path := filepath.Join(t.TempDir(), "hodei.db")
		db := MustOpenPath(t, path, Options{})
		storetest.MustPutTenant(t, db, storetest.NewTenant("team-a"))
		p1, jobs1 := storetest.NewPipeline(1, 1)
		p2, jobs2 := storetest.NewPipeline(2, 4)
		p3, jobs3 := storetest.NewPipeline(3, 7)
		p2.Tenant = "team-a"
		for _, j := range jobs2 {
			j.Spec.Tenant = "team-a"
		}
		storetest.MustInsertPipeline(t, db, p1, jobs1...)
		storetest.MustInsertPipeline(t, db, p2, jobs2...)
		storetest.MustInsertPipeline(t, db, p3, jobs3...)
		p1 = p1.Clone()
		p1.Cancelled = true
		require.NoError(t, db.PutPipeline(t.Context(), p1))
		require.NoError(t, db.DeletePipeline(t.Context(), p3.ID))
		require.NoError(t, db.Close())

		db = MustOpenPath(t, path, Options{})
		require.Equal(t, []*job.Pipeline{p1, p2}, storetest.MustPipelines(t, db))
		for _, j := range append(append(jobs1, jobs2...), jobs3...) {
			require.Equal(t, j, storetest.MustGet(t, db, j.ID))
		}
		// The ids stay taken, and the jobs stay counted by tenant (the
		// cleanup checks the counts against the jobs).
		dup, dupJobs := storetest.NewPipeline(2, 20)
		require.ErrorIs(t, db.InsertPipeline(t.Context(), dup, dupJobs), job.ErrConflict)
		err := db.DeleteTenant(t.Context(), "team-a")
		require.ErrorContains(t, err, `tenant "team-a" has 3 jobs that are not finished`)
	})
	t.Run("ValuesAreRecords", func(t *testing.T) {
		db := MustOpen(t)
		p, jobs := storetest.NewPipeline(1, 1)
		storetest.MustInsertPipeline(t, db, p, jobs...)
		require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error {
			var rec record.PipelineRecord
			require.NoError(t, proto.Unmarshal(tx.Bucket(bucketPipelines).Get([]byte(p.ID)), &rec))
			require.Equal(t, p.Name, rec.GetName())
			require.Len(t, rec.GetSteps(), len(p.Steps))
			return nil
		}))
	})
	t.Run("FailuresAreIsolated", func(t *testing.T) {
		// In one shared transaction, an InsertPipeline that fails its
		// checks writes nothing and rolls back no other request; one that
		// succeeds is seen by the requests after it, its jobs and their
		// tenant counts alike.
		db := MustOpen(t)
		storetest.MustPutTenant(t, db, &job.Tenant{Name: "team-q", Weight: 1, MaxQueued: 4})
		p1, jobs1 := storetest.NewPipeline(1, 1)
		dup, dupJobs := storetest.NewPipeline(1, 11)
		q1, qJobs1 := storetest.NewPipeline(2, 21)
		q2, qJobs2 := storetest.NewPipeline(3, 31)
		for _, p := range []*job.Pipeline{q1, q2} {
			p.Tenant = "team-q"
		}
		for _, j := range append(qJobs1, qJobs2...) {
			j.Spec.Tenant = "team-q"
		}
		ctx := context.Background()
		calls := []func() error{
			func() error { return db.InsertPipeline(ctx, p1, jobs1) },
			func() error { return db.InsertPipeline(ctx, dup, dupJobs) }, // p1's id
			func() error { return db.Insert(ctx, []*job.Job{storetest.NewJob(41, storetest.ID(1))}) },
			func() error { return db.InsertPipeline(ctx, q1, qJobs1) }, // 3 of team-q's 4
			func() error { return db.InsertPipeline(ctx, q2, qJobs2) }, // 3 more: over
		}
		release := blockLoop(t, db)
		queued := countEnqueued(db, len(calls))
		errc := make([]chan error, len(calls))
		for i, call := range calls {
			errc[i] = make(chan error, 1)
			go func() { errc[i] <- call() }()
			waitQueued(t, db, i+1) // one at a time: the queue order is the call order
		}
		<-queued
		before := db.Stats()
		close(release)
		require.NoError(t, <-errc[0])
		require.ErrorIs(t, <-errc[1], job.ErrConflict)
		require.NoError(t, <-errc[2], "sees p1's jobs of the same transaction")
		require.NoError(t, <-errc[3])
		err := <-errc[4]
		require.ErrorIs(t, err, job.ErrExhausted)
		require.ErrorContains(t, err, "(3 jobs queued, 3 more asked for)", "counts q1's jobs of the same transaction")
		require.Equal(t, uint64(2), db.Stats().Commits-before.Commits, "the blocking commit and one for the rest")
		require.Equal(t, []*job.Pipeline{p1, q1}, storetest.MustPipelines(t, db))
		for _, j := range append(dupJobs, qJobs2...) {
			_, err := db.Get(t.Context(), j.ID)
			require.ErrorIs(t, err, job.ErrNotFound)
		}
		storetest.MustGet(t, db, storetest.ID(41))
	})
	t.Run("AbortFailsAll", func(t *testing.T) {
		// A write error after InsertPipeline's checks rolls back its
		// record and its jobs with the rest of the transaction.
		db := MustOpen(t)
		release := blockLoop(t, db)
		queued := countEnqueued(db, 2)
		p, jobs := storetest.NewPipeline(1, 1)
		ok := make(chan error, 1)
		go func() { ok <- db.InsertPipeline(context.Background(), p, jobs) }()
		waitQueued(t, db, 1)
		bad := make(chan error, 1)
		go func() {
			bad <- db.write(context.Background(), 0, func(*bolt.Tx) error { return abort(context.DeadlineExceeded) })
		}()
		<-queued
		close(release)
		require.ErrorIs(t, <-ok, context.DeadlineExceeded)
		require.ErrorIs(t, <-bad, context.DeadlineExceeded)
		require.Empty(t, storetest.MustPipelines(t, db))
		_, err := db.Get(t.Context(), storetest.ID(1))
		require.ErrorIs(t, err, job.ErrNotFound)
		require.Zero(t, jobs[0].Version)
	})
}
