package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/record"
	"github.com/hodei-jobs/hodei/store/storetest"
)

var _ cluster.Store = (*DB)(nil)

// A damaged page that panics inside bbolt's Open (TestDamagedFiles) leaves
// the goroutine bbolt started to report its findings waiting for ever:
// the open is refused, and a server that refuses to start exits.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("go.etcd.io/bbolt.(*DB).freepages.func2"))
}

// MustOpen opens a new DB in tb.TempDir(). In tb.Cleanup it closes it, runs
// bbolt's consistency check on the file and recounts each tenant's
// non-terminal jobs, failing the test if the file is inconsistent or the
// stored counts differ. Every bbolt test opens its DB with it or
// MustOpenPath.
func MustOpen(tb testing.TB) *DB {
	tb.Helper()
	return MustOpenPath(tb, filepath.Join(tb.TempDir(), "hodei.db"), Options{})
}

// MustOpenPath is MustOpen on a given path and options.
func MustOpenPath(tb testing.TB, path string, opts Options) *DB {
	tb.Helper()
	db, err := Open(path, opts)
	require.NoError(tb, err)
	tb.Cleanup(func() {
		require.NoError(tb, db.Close())
		require.NoError(tb, CheckFile(path), "the file is inconsistent (pages or job counts)")
	})
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) cluster.Store { return MustOpen(t) })
}

func TestOpen(t *testing.T) {
	t.Run("Reopen", func(t *testing.T) {
		// Everything committed survives a restart.
		path := filepath.Join(t.TempDir(), "data", "hodei.db")
		db := MustOpenPath(t, path, Options{})
		storetest.MustPutTenant(t, db, storetest.NewTenant("team-a"))
		jobs := []*job.Job{storetest.FullJob(1), storetest.NewJob(2), storetest.NewJob(3, storetest.ID(2))}
		require.NoError(t, db.Insert(t.Context(), jobs))
		next := storetest.MustApply(t, db, jobs[1], func(j *job.Job) { j.State = job.Scheduled; j.Worker = "w-1" })
		w := &job.Worker{ID: "w-1", Hostname: "h", Capacity: job.Resources{Slots: 4}, Drained: true}
		require.NoError(t, db.PutWorker(t.Context(), w))
		require.NoError(t, db.Close())

		db = MustOpenPath(t, path, Options{})
		var got []*job.Job
		require.NoError(t, db.Scan(t.Context(), func(j *job.Job) error { got = append(got, j); return nil }))
		require.Equal(t, []*job.Job{jobs[0], next, jobs[2]}, got)
		workers, err := db.Workers(t.Context())
		require.NoError(t, err)
		require.Equal(t, []*job.Worker{w}, workers)
		// Versions go on from the stored ones.
		next = storetest.MustApply(t, db, next, func(j *job.Job) { j.State = job.Running })
		require.Equal(t, uint64(3), next.Version)
	})
	t.Run("ErrLocked", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "hodei.db")
		MustOpenPath(t, path, Options{})
		start := time.Now()
		_, err := Open(path, Options{LockTimeout: 50 * time.Millisecond})
		require.ErrorIs(t, err, ErrLocked)
		require.Contains(t, err.Error(), "another hodei serve")
		require.Less(t, time.Since(start), 5*time.Second)
	})
	t.Run("Buckets", func(t *testing.T) {
		db := MustOpen(t)
		require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error {
			for _, name := range allBuckets {
				if tx.Bucket(name) == nil {
					return fmt.Errorf("no bucket %s", name)
				}
			}
			v := tx.Bucket(bucketMeta).Get(schemaKey)
			require.Equal(t, uint64(SchemaVersion), binary.BigEndian.Uint64(v))
			return nil
		}))
	})
	t.Run("ValuesAreRecords", func(t *testing.T) {
		// A stored job is a record.JobRecord, without its id (the key).
		db := MustOpen(t)
		j := storetest.FullJob(1)
		storetest.MustPutTenant(t, db, storetest.NewTenant(j.Spec.Tenant))
		require.NoError(t, db.Insert(t.Context(), []*job.Job{j}))
		require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error {
			var rec record.JobRecord
			v := tx.Bucket(bucketJobs).Get([]byte(j.ID))
			require.NoError(t, proto.Unmarshal(v, &rec))
			require.Equal(t, j.Spec.Tenant, rec.GetTenant())
			require.Equal(t, j.Spec.Command, rec.GetSpec().GetCommand())
			require.Equal(t, uint64(1), rec.GetVersion())
			require.NotContains(t, string(v), j.ID)
			return nil
		}))
	})
}

func TestClose(t *testing.T) {
	t.Run("Twice", func(t *testing.T) {
		db := MustOpen(t)
		require.NoError(t, db.Close())
		require.NoError(t, db.Close())
	})
	t.Run("ErrClosed", func(t *testing.T) {
		db := MustOpen(t)
		require.NoError(t, db.Close())
		ctx := t.Context()
		require.ErrorIs(t, db.Insert(ctx, []*job.Job{storetest.NewJob(1)}), job.ErrClosed)
		_, err := db.Apply(ctx, []job.Update{{Next: storetest.NewJob(1)}})
		require.ErrorIs(t, err, job.ErrClosed)
		_, err = db.Get(ctx, storetest.ID(1))
		require.ErrorIs(t, err, job.ErrClosed)
		_, _, err = db.List(ctx, job.Filter{})
		require.ErrorIs(t, err, job.ErrClosed)
		require.ErrorIs(t, db.Scan(ctx, func(*job.Job) error { return nil }), job.ErrClosed)
		require.ErrorIs(t, db.PutWorker(ctx, &job.Worker{ID: "w"}), job.ErrClosed)
		require.ErrorIs(t, db.PutTenant(ctx, storetest.NewTenant("team-a")), job.ErrClosed)
		require.ErrorIs(t, db.DeleteTenant(ctx, "team-a"), job.ErrClosed)
		_, err = db.Tenants(ctx)
		require.ErrorIs(t, err, job.ErrClosed)
		p, jobs := storetest.NewPipeline(1, 1)
		require.ErrorIs(t, db.InsertPipeline(ctx, p, jobs), job.ErrClosed)
		require.ErrorIs(t, db.PutPipeline(ctx, p), job.ErrClosed)
		require.ErrorIs(t, db.DeletePipeline(ctx, p.ID), job.ErrClosed)
		require.ErrorIs(t, db.DeletePipeline(ctx, ""), job.ErrClosed)
		_, err = db.Pipelines(ctx)
		require.ErrorIs(t, err, job.ErrClosed)
		_, err = db.Workers(ctx)
		require.ErrorIs(t, err, job.ErrClosed)
		_, err = db.DeleteFinished(ctx, time.Now(), 1, nil)
		require.ErrorIs(t, err, job.ErrClosed)
		_, err = db.Snapshot(ctx, &bytes.Buffer{})
		require.ErrorIs(t, err, job.ErrClosed)
		require.ErrorIs(t, db.Check(), job.ErrClosed)
	})
	t.Run("QueuedRequestsFail", func(t *testing.T) {
		// While the loop is stuck in a commit, requests queue up; Close lets
		// the commit finish and fails the queued ones with ErrClosed.
		db := MustOpen(t)
		release := blockLoop(t, db)
		const n = 8
		queued := countEnqueued(db, n)
		errs := make(chan error, n)
		for i := range n {
			go func() { errs <- db.Insert(context.Background(), []*job.Job{storetest.NewJob(i + 1)}) }()
		}
		<-queued
		closed := make(chan error)
		go func() { closed <- db.Close() }()
		<-db.closing // Close has begun
		close(release)
		require.NoError(t, <-closed)
		for range n {
			require.ErrorIs(t, <-errs, job.ErrClosed)
		}
	})
	t.Run("ContextEndsWhileQueued", func(t *testing.T) {
		db := MustOpen(t)
		release := blockLoop(t, db)
		queued := countEnqueued(db, 1)
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error)
		go func() { errc <- db.Insert(ctx, []*job.Job{storetest.NewJob(1)}) }()
		<-queued
		cancel()
		require.ErrorIs(t, <-errc, context.Canceled)
		close(release)
		// The abandoned request was skipped, not committed.
		_, err := db.Get(t.Context(), storetest.ID(1))
		require.ErrorIs(t, err, job.ErrNotFound)
	})
}

// blockLoop makes the commit loop run a request that blocks until the
// returned channel is closed, and returns once the loop is inside it.
func blockLoop(t *testing.T, db *DB) chan struct{} {
	t.Helper()
	release, inside, hooked := make(chan struct{}), make(chan struct{}), make(chan struct{})
	// Its own pass through the enqueued hook is over before blockLoop
	// returns, so that a hook set next (countEnqueued) does not count it.
	var once sync.Once
	hook := func() { once.Do(func() { close(hooked) }) }
	db.enqueued.Store(&hook)
	go func() {
		err := db.write(context.Background(), 0, func(*bolt.Tx) error {
			close(inside)
			<-release
			return nil
		})
		if err != nil {
			t.Errorf("blocking request: %v", err)
		}
	}()
	<-inside
	<-hooked
	db.enqueued.Store(nil)
	return release
}

// countEnqueued returns a channel closed once n more requests are queued.
// Set it before starting the writers.
func countEnqueued(db *DB, n int) <-chan struct{} {
	var (
		mu   sync.Mutex
		seen int
		done = make(chan struct{})
	)
	hook := func() {
		mu.Lock()
		defer mu.Unlock()
		if seen++; seen == n {
			close(done)
		}
	}
	db.enqueued.Store(&hook)
	return done
}

func TestGroupCommit(t *testing.T) {
	t.Run("Batches", func(t *testing.T) {
		// 64 writers queued behind one commit share the next one.
		db := MustOpen(t)
		release := blockLoop(t, db)
		const n = 64
		queued := countEnqueued(db, n)
		before := db.Stats()
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				if err := db.Insert(context.Background(), []*job.Job{storetest.NewJob(i + 1)}); err != nil {
					t.Errorf("insert %d: %v", i, err)
				}
			})
		}
		<-queued
		close(release)
		wg.Wait()
		after := db.Stats()
		require.Equal(t, uint64(2), after.Commits-before.Commits, "the blocking commit and one for all 64")
		require.Equal(t, uint64(n+1), after.Requests-before.Requests)
	})
	t.Run("Latency", func(t *testing.T) {
		// Every transaction is timed, in the bucket of its duration: one
		// held open by a request lasts at least as long as it was held.
		db := MustOpen(t)
		before := db.Stats()
		release := blockLoop(t, db)
		heldFrom := time.Now()
		for time.Since(heldFrom) < time.Millisecond { // past the first buckets
			runtime.Gosched()
		}
		held := time.Since(heldFrom)
		close(release)
		require.NoError(t, db.Insert(t.Context(), []*job.Job{storetest.NewJob(1)})) // committed after it
		after := db.Stats()
		var timed uint64
		slowest := -1
		for i := range after.CommitSeconds {
			if n := after.CommitSeconds[i] - before.CommitSeconds[i]; n > 0 {
				timed += n
				slowest = i
			}
		}
		require.Equal(t, after.Commits+after.Failed-before.Commits-before.Failed, timed, "one observation a transaction")
		require.Equal(t, uint64(2), timed)
		require.GreaterOrEqual(t, after.CommitTime-before.CommitTime, held)
		if slowest < len(CommitBuckets) {
			require.GreaterOrEqual(t, CommitBuckets[slowest], held.Seconds(), "the held transaction's bucket")
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		// Without help from a hook, 64 concurrent writers still share commits.
		db := MustOpen(t)
		const n = 64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				if err := db.Insert(context.Background(), []*job.Job{storetest.NewJob(i + 1)}); err != nil {
					t.Errorf("insert %d: %v", i, err)
				}
			})
		}
		close(start)
		wg.Wait()
		st := db.Stats()
		require.Equal(t, uint64(n), st.Requests)
		t.Logf("%d inserts in %d commits", n, st.Commits)
		require.LessOrEqual(t, st.Commits, uint64(n))
	})
	t.Run("FailuresAreIsolated", func(t *testing.T) {
		// A request that fails in a shared transaction writes nothing and
		// does not roll back the others.
		db := MustOpen(t)
		require.NoError(t, db.Insert(t.Context(), []*job.Job{storetest.NewJob(1)}))
		release := blockLoop(t, db)
		queued := countEnqueued(db, 3)
		errc := make([]chan error, 3)
		calls := [][]*job.Job{
			{storetest.NewJob(2)},
			{storetest.NewJob(3), storetest.NewJob(1)}, // dup id: fails whole
			{storetest.NewJob(4, storetest.ID(2))},     // sees job 2 of the same tx
		}
		for i, c := range calls {
			errc[i] = make(chan error, 1)
			go func() { errc[i] <- db.Insert(context.Background(), c) }()
			// One at a time so that the queue order is the call order.
			waitQueued(t, db, i+1)
		}
		<-queued
		before := db.Stats()
		close(release)
		require.NoError(t, <-errc[0])
		require.ErrorIs(t, <-errc[1], job.ErrConflict)
		require.NoError(t, <-errc[2])
		require.Equal(t, uint64(2), db.Stats().Commits-before.Commits)
		for _, id := range []int{1, 2, 4} {
			_, err := db.Get(t.Context(), storetest.ID(id))
			require.NoError(t, err)
		}
		_, err := db.Get(t.Context(), storetest.ID(3))
		require.ErrorIs(t, err, job.ErrNotFound)
	})
	t.Run("AbortFailsAll", func(t *testing.T) {
		db := MustOpen(t)
		release := blockLoop(t, db)
		queued := countEnqueued(db, 2)
		boom := errors.New("disk on fire")
		ok := make(chan error, 1)
		go func() { ok <- db.Insert(context.Background(), []*job.Job{storetest.NewJob(1)}) }()
		waitQueued(t, db, 1)
		bad := make(chan error, 1)
		go func() {
			bad <- db.write(context.Background(), 0, func(*bolt.Tx) error { panic(boom) })
		}()
		<-queued
		close(release)
		require.ErrorContains(t, <-ok, "disk on fire")
		require.ErrorContains(t, <-bad, "disk on fire")
		_, err := db.Get(t.Context(), storetest.ID(1))
		require.ErrorIs(t, err, job.ErrNotFound, "the transaction rolled back")
		require.Equal(t, uint64(1), db.Stats().Failed)
	})
}

// waitQueued waits until the loop's queue holds n requests. The loop must be
// blocked (blockLoop). It spins without sleeping: the writers are running.
func waitQueued(t *testing.T, db *DB, n int) {
	t.Helper()
	for len(db.reqs) < n {
		select {
		case <-t.Context().Done():
			t.Fatal("requests never queued")
		default:
			runtime.Gosched()
		}
	}
}

func TestSnapshot(t *testing.T) {
	t.Run("WhileWriting", func(t *testing.T) {
		db := MustOpen(t)
		var first []*job.Job
		for i := 1; i <= 200; i++ {
			first = append(first, storetest.NewJob(i))
		}
		require.NoError(t, db.Insert(t.Context(), first))

		ctx, cancel := context.WithCancel(t.Context())
		var wg, running sync.WaitGroup
		for w := range 4 {
			running.Add(1)
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					j := storetest.NewJob(1000 + w*100000 + i)
					if err := db.Insert(ctx, []*job.Job{j}); err != nil && ctx.Err() == nil {
						t.Errorf("insert: %v", err)
					}
					if i == 0 {
						running.Done()
					}
				}
			})
		}
		running.Wait() // every writer has committed once and goes on
		path := filepath.Join(t.TempDir(), "snap.db")
		f, err := os.Create(path)
		require.NoError(t, err)
		n, err := db.Snapshot(t.Context(), f)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		cancel()
		wg.Wait()

		fi, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, fi.Size(), n)
		require.NoError(t, CheckFile(path))
		snap := MustOpenPath(t, path, Options{})
		for _, j := range first {
			require.Equal(t, j, storetest.MustGet(t, snap, j.ID))
		}
	})
	t.Run("ContextDone", func(t *testing.T) {
		db := MustOpen(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := db.Snapshot(ctx, &bytes.Buffer{})
		require.ErrorIs(t, err, context.Canceled)
	})
	t.Run("ContextEndsMidway", func(t *testing.T) {
		db := MustOpen(t)
		ctx, cancel := context.WithCancel(t.Context())
		var buf bytes.Buffer
		_, err := db.Snapshot(ctx, writerFunc(func(p []byte) (int, error) {
			cancel() // after the first page
			return buf.Write(p)
		}))
		require.ErrorIs(t, err, context.Canceled)
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestCheck(t *testing.T) {
	db := MustOpen(t)
	require.NoError(t, db.Insert(t.Context(), []*job.Job{storetest.NewJob(1)}))
	require.NoError(t, db.Check())
}
