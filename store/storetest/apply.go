package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
)

// update returns an Update moving a clone of cur as change says.
func update(cur *job.Job, change func(*job.Job)) job.Update {
	next := cur.Clone()
	change(next)
	return job.Update{Expect: cur.Expected(), Next: next}
}

func schedule(w string) func(*job.Job) {
	return func(j *job.Job) { j.State = job.Scheduled; j.Worker = w; j.ScheduledAt = T0.Add(10 * time.Second) }
}

func testApply(t *testing.T, open func(*testing.T) cluster.Store) {
	t.Run("OK", func(t *testing.T) {
		s := open(t)
		j := NewJob(1)
		MustInsert(t, s, j)
		u := update(j, schedule("w-1"))
		errs, err := s.Apply(t.Context(), []job.Update{u})
		require.NoError(t, err)
		require.Equal(t, []error{nil}, errs)
		require.Equal(t, uint64(2), u.Next.Version, "Apply sets Next.Version")
		got := MustGet(t, s, j.ID)
		require.Equal(t, u.Next, got)
		require.Equal(t, "w-1", got.Worker)
	})
	t.Run("VersionBump", func(t *testing.T) {
		s := open(t)
		j := NewJob(1)
		MustInsert(t, s, j)
		j = MustApply(t, s, j, schedule("w-1"))
		require.Equal(t, uint64(2), j.Version)
		j = MustApply(t, s, j, func(n *job.Job) { n.State = job.Running })
		require.Equal(t, uint64(3), j.Version)
		j = MustApply(t, s, j, func(n *job.Job) { n.CancelRequested = "cancelled by user" })
		require.Equal(t, uint64(4), j.Version)
		// The version a caller puts in Next is ignored: the store's counts.
		j = MustApply(t, s, j, func(n *job.Job) { n.State = job.Cancelled; n.Version = 77 })
		require.Equal(t, uint64(5), j.Version)
		require.Equal(t, uint64(5), MustGet(t, s, j.ID).Version)
	})
	t.Run("Retry", func(t *testing.T) {
		s := open(t)
		j := NewJob(1)
		MustInsert(t, s, j)
		j = MustApply(t, s, j, schedule("w-1"))
		j = MustApply(t, s, j, func(n *job.Job) { n.State = job.Running })
		// Back to Pending must bump the attempt.
		same := update(j, func(n *job.Job) { n.State = job.Pending })
		errs, err := s.Apply(t.Context(), []job.Update{same})
		require.NoError(t, err)
		require.ErrorIs(t, errs[0], job.ErrConflict)
		j = MustApply(t, s, j, func(n *job.Job) { n.State = job.Pending; n.Attempt = 2 })
		got := MustGet(t, s, j.ID).Expected()
		require.Equal(t, job.Expect{State: job.Pending, Attempt: 2, Version: got.Version}, got)
	})
	conflicts := map[string]func(j *job.Job) job.Update{
		"StaleVersion": func(j *job.Job) job.Update {
			u := update(j, schedule("w-1"))
			u.Expect.Version = j.Version + 1 // state and attempt match, the version does not
			return u
		},
		"StaleAttempt": func(j *job.Job) job.Update {
			u := update(j, schedule("w-1"))
			u.Expect.Attempt = 2
			u.Next.Attempt = 2
			return u
		},
		"WrongState": func(j *job.Job) job.Update {
			u := update(j, func(n *job.Job) { n.State = job.Completed })
			u.Expect.State = job.Running
			return u
		},
		"IllegalTransition": func(j *job.Job) job.Update {
			return update(j, func(n *job.Job) { n.State = job.Completed })
		},
		"AttemptChanged": func(j *job.Job) job.Update {
			return update(j, func(n *job.Job) { n.State = job.Scheduled; n.Attempt = 2 })
		},
	}
	for name, mk := range conflicts {
		t.Run("ErrConflict/"+name, func(t *testing.T) {
			s := open(t)
			j := NewJob(1)
			MustInsert(t, s, j)
			u := mk(j)
			u.Next.Version = 42
			errs, err := s.Apply(t.Context(), []job.Update{u})
			require.NoError(t, err)
			require.ErrorIs(t, errs[0], job.ErrConflict)
			require.Equal(t, uint64(42), u.Next.Version, "a failed update leaves Next.Version alone")
			require.Equal(t, j, MustGet(t, s, j.ID), "a failed update writes nothing")
		})
	}
	t.Run("ErrNotFound", func(t *testing.T) {
		s := open(t)
		errs, err := s.Apply(t.Context(), []job.Update{update(NewJob(1), schedule("w-1"))})
		require.NoError(t, err)
		require.ErrorIs(t, errs[0], job.ErrNotFound)
		assertNotFound(t, s, ID(1))
	})
	t.Run("ErrInvalid/NilNext", func(t *testing.T) {
		s := open(t)
		errs, err := s.Apply(t.Context(), []job.Update{{}})
		require.NoError(t, err)
		require.ErrorIs(t, errs[0], job.ErrInvalid)
	})
	t.Run("Empty", func(t *testing.T) {
		s := open(t)
		errs, err := s.Apply(t.Context(), nil)
		require.NoError(t, err)
		require.Empty(t, errs)
	})
	t.Run("MixedBatch", func(t *testing.T) {
		s := open(t)
		j1, j2, j3 := NewJob(1), NewJob(2), NewJob(3)
		MustInsert(t, s, j1, j2, j3)
		stale := update(j2, schedule("w-2"))
		stale.Expect.Attempt = 5
		updates := []job.Update{
			update(j1, schedule("w-1")),
			stale,
			update(NewJob(4), schedule("w-4")),
			update(j3, func(n *job.Job) { n.State = job.Cancelled; n.FinishedAt = T0 }),
		}
		errs, err := s.Apply(t.Context(), updates)
		require.NoError(t, err)
		require.Len(t, errs, 4)
		require.NoError(t, errs[0])
		require.ErrorIs(t, errs[1], job.ErrConflict)
		require.ErrorIs(t, errs[2], job.ErrNotFound)
		require.NoError(t, errs[3])
		require.Equal(t, updates[0].Next, MustGet(t, s, j1.ID))
		require.Equal(t, j2, MustGet(t, s, j2.ID))
		require.Equal(t, updates[3].Next, MustGet(t, s, j3.ID))
		assertNotFound(t, s, ID(4))
	})
	t.Run("SameJobTwice", func(t *testing.T) {
		// Updates of one call apply in order: the second sees the first.
		s := open(t)
		j := NewJob(1)
		MustInsert(t, s, j)
		first := update(j, schedule("w-1"))
		second := update(first.Next, func(n *job.Job) { n.State = job.Running })
		second.Expect.Version = 0           // first's new version is not known yet
		again := update(j, schedule("w-2")) // expects what first replaced
		errs, err := s.Apply(t.Context(), []job.Update{first, second, again})
		require.NoError(t, err)
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		require.ErrorIs(t, errs[2], job.ErrConflict)
		require.Equal(t, uint64(3), second.Next.Version)
		require.Equal(t, second.Next, MustGet(t, s, j.ID))
	})
	t.Run("ConcurrentCAS", func(t *testing.T) {
		s := open(t)
		j := NewJob(1)
		MustInsert(t, s, j)
		const n = 32
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  = make([]error, n)
			next  = make([]*job.Job, n)
		)
		for i := range n {
			u := update(j, schedule(ID(100+i)))
			next[i] = u.Next
			wg.Go(func() {
				<-start
				es, err := s.Apply(t.Context(), []job.Update{u})
				if err == nil {
					err = es[0]
				}
				errs[i] = err
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			if err == nil {
				require.Equal(t, -1, winner, "two updates won the same CAS")
				winner = i
				continue
			}
			require.ErrorIs(t, err, job.ErrConflict)
		}
		require.NotEqual(t, -1, winner, "no update won")
		got := MustGet(t, s, j.ID)
		require.Equal(t, next[winner], got)
		require.Equal(t, uint64(2), got.Version)
	})
}
