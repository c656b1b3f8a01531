package store

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// queuedTenant is the tenant of the admission tests, with its MaxQueued.
const queuedTenant = "team-q"

func limitedTenant(limit int) *job.Tenant {
	t := storetest.NewTenant(queuedTenant)
	t.MaxQueued = limit
	return t
}

// queuedJob returns storetest.NewJob(n) of queuedTenant.
func queuedJob(n int) *job.Job {
	j := storetest.NewJob(n)
	j.Spec.Tenant = queuedTenant
	return j
}

// storedCount returns the job count the DB keeps for tenant.
func storedCount(t *testing.T, db *DB, tenant string) uint64 {
	t.Helper()
	var n uint64
	require.NoError(t, db.view(func(tx *bolt.Tx) error {
		var err error
		n, err = jobCount(tx, tenant)
		return err
	}))
	return n
}

func TestTenants(t *testing.T) {
	t.Run("Reopen", func(t *testing.T) {
		// Records survive a restart, and Open does not recreate the default.
		path := filepath.Join(t.TempDir(), "hodei.db")
		db := MustOpenPath(t, path, Options{})
		want, err := db.Tenants(t.Context())
		require.NoError(t, err)
		want[0].Weight = 3
		want = append(want, limitedTenant(5))
		storetest.MustPutTenant(t, db, want...)
		require.NoError(t, db.Close())

		db = MustOpenPath(t, path, Options{})
		got, err := db.Tenants(t.Context())
		require.NoError(t, err)
		require.Equal(t, want, got)
	})
	t.Run("ValuesAreRecords", func(t *testing.T) {
		db := MustOpen(t)
		storetest.MustPutTenant(t, db, limitedTenant(5))
		require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error {
			got, err := decodeTenant(queuedTenant, tx.Bucket(bucketTenants).Get([]byte(queuedTenant)))
			require.NoError(t, err)
			require.Equal(t, limitedTenant(5), got)
			return nil
		}))
	})
}

func TestJobCounts(t *testing.T) {
	t.Run("Synced", func(t *testing.T) {
		// The counts are kept with the jobs, not recounted at open; the
		// cluster's recovery, which reads every job anyway, hands its
		// counts to SyncJobCounts, which repairs counts gone wrong.
		path := filepath.Join(t.TempDir(), "hodei.db")
		db := MustOpenPath(t, path, Options{})
		storetest.MustPutTenant(t, db, limitedTenant(2))
		jobs := []*job.Job{queuedJob(1), queuedJob(2), queuedJob(3), storetest.NewJob(4)}
		storetest.MustInsert(t, db, jobs[:2]...)
		storetest.Finish(t, db, jobs[0], job.Cancelled, storetest.T0)
		storetest.MustInsert(t, db, jobs[2:]...)
		require.NoError(t, db.bolt.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketTenantJobs)
			if err := b.Delete([]byte(queuedTenant)); err != nil {
				return err
			}
			return b.Put([]byte("ghost"), []byte{0, 0, 0, 0, 0, 0, 0, 7})
		}))
		require.Error(t, db.Check(), "Check finds counts that do not match the jobs")
		changed, err := db.SyncJobCounts(t.Context(), map[string]int{queuedTenant: 2, job.DefaultTenant: 1})
		require.NoError(t, err)
		require.True(t, changed)
		require.Equal(t, uint64(2), storedCount(t, db, queuedTenant))
		require.Equal(t, uint64(1), storedCount(t, db, job.DefaultTenant))
		require.Zero(t, storedCount(t, db, "ghost"))
		err = db.Insert(t.Context(), []*job.Job{queuedJob(5)})
		require.ErrorIs(t, err, job.ErrExhausted)
		changed, err = db.SyncJobCounts(t.Context(), map[string]int{queuedTenant: 2, job.DefaultTenant: 1})
		require.NoError(t, err)
		require.False(t, changed, "counts that match are left alone")
	})
	t.Run("UnderflowAborts", func(t *testing.T) {
		// A count that no longer matches the jobs is a bug, not a value to
		// clamp: the commit fails and a restart rebuilds the counts.
		db := MustOpen(t)
		j := storetest.NewJob(1)
		storetest.MustInsert(t, db, j)
		require.NoError(t, db.bolt.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketTenantJobs).Delete([]byte(job.DefaultTenant))
		}))
		next := j.Clone()
		next.State = job.Cancelled
		_, err := db.Apply(t.Context(), []job.Update{{Expect: j.Expected(), Next: next}})
		require.ErrorContains(t, err, "below zero")
		require.Equal(t, j, storetest.MustGet(t, db, j.ID), "nothing committed")
		require.NoError(t, db.bolt.Update(rebuildJobCounts)) // for the cleanup's check
	})
}

func TestAdmission(t *testing.T) {
	t.Run("RefusalIsolated", func(t *testing.T) {
		// Requests in one commit are admitted in queue order, each counting
		// the ones before it; a refused one writes nothing and the others
		// commit.
		db := MustOpen(t)
		storetest.MustPutTenant(t, db, limitedTenant(2))
		release := blockLoop(t, db)
		queued := countEnqueued(db, 3)
		calls := [][]*job.Job{
			{queuedJob(1)},
			{queuedJob(2), queuedJob(3)}, // 1 queued + 2 > 2
			{queuedJob(4)},               // 1 queued + 1 = 2
		}
		errc := make([]chan error, len(calls))
		for i, c := range calls {
			errc[i] = make(chan error, 1)
			go func() { errc[i] <- db.Insert(context.Background(), c) }()
			waitQueued(t, db, i+1) // one at a time: queue order is call order
		}
		<-queued
		before := db.Stats()
		close(release)
		require.NoError(t, <-errc[0])
		err := <-errc[1]
		require.ErrorIs(t, err, job.ErrExhausted)
		require.ErrorContains(t, err, "(1 job queued, 2 more asked for)")
		require.NoError(t, <-errc[2])
		require.Equal(t, uint64(2), db.Stats().Commits-before.Commits, "the blocking commit and one for all three")
		require.Equal(t, uint64(2), storedCount(t, db, queuedTenant))
		assertStored(t, db, []string{storetest.ID(1), storetest.ID(4)})
	})
	t.Run("Restart", func(t *testing.T) {
		// Writers race for a tenant's places while the DB closes and opens
		// again under them. The limit holds across the restart, and the
		// counts rebuilt at the next Open go on holding it.
		const (
			limit    = 50
			attempts = 2 * limit
			writers  = 32
		)
		path := filepath.Join(t.TempDir(), "hodei.db")
		first := MustOpenPath(t, path, Options{})
		storetest.MustPutTenant(t, first, limitedTenant(limit))

		// generation is one open DB; replaced is closed once the next one
		// is current, for the writers that met the restart.
		type generation struct {
			db       *DB
			replaced chan struct{}
		}
		var cur atomic.Pointer[generation]
		cur.Store(&generation{db: first, replaced: make(chan struct{})})
		var (
			next     atomic.Int64 // job numbers taken
			answered atomic.Int64
			retried  atomic.Int64
			third    = make(chan struct{}) // closed when a third are answered
			errs     = make([]error, attempts+1)
			wg       sync.WaitGroup
		)
		for range writers {
			wg.Go(func() {
				for n := int(next.Add(1)); n <= attempts; n = int(next.Add(1)) {
					for {
						g := cur.Load()
						err := g.db.Insert(context.Background(), []*job.Job{queuedJob(n)})
						if errors.Is(err, job.ErrClosed) { // not committed: retry on the next DB
							retried.Add(1)
							<-g.replaced
							continue
						}
						errs[n] = err
						break
					}
					if answered.Add(1) == attempts/3 {
						close(third)
					}
				}
			})
		}
		<-third
		old := cur.Load()
		require.NoError(t, old.db.Close())
		cur.Store(&generation{db: MustOpenPath(t, path, Options{}), replaced: make(chan struct{})})
		close(old.replaced)
		wg.Wait()
		t.Logf("%d inserts met the restart and were retried", retried.Load())

		var won []string
		for n := 1; n <= attempts; n++ {
			if errs[n] == nil {
				won = append(won, storetest.ID(n))
				continue
			}
			require.ErrorIs(t, errs[n], job.ErrExhausted, "insert %d", n)
		}
		require.Len(t, won, limit)
		db := cur.Load().db
		require.Equal(t, uint64(limit), storedCount(t, db, queuedTenant))
		assertStored(t, db, won)

		require.NoError(t, db.Close())
		db = MustOpenPath(t, path, Options{})
		require.Equal(t, uint64(limit), storedCount(t, db, queuedTenant), "rebuilt at Open")
		err := db.Insert(t.Context(), []*job.Job{queuedJob(attempts + 1)})
		require.ErrorIs(t, err, job.ErrExhausted)
		require.ErrorContains(t, err, "(50 jobs queued, 1 more asked for)")
	})
}

// assertStored checks that the jobs of queuedTenant are exactly ids.
func assertStored(t *testing.T, db *DB, ids []string) {
	t.Helper()
	jobs, _, err := db.List(t.Context(), job.Filter{Tenant: queuedTenant, Limit: job.MaxPageSize})
	require.NoError(t, err)
	var got []string
	for _, j := range jobs {
		got = append(got, j.ID)
	}
	require.Equal(t, ids, got)
}
