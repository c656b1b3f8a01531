package storetest

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
)

// ids returns the ids of jobs.
func ids(jobs []*job.Job) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

// idRange returns ID(from) … ID(to), stepping by step.
func idRange(from, to, step int) []string {
	var out []string
	for n := from; n <= to; n += step {
		out = append(out, ID(n))
	}
	return out
}

// newJobs returns NewJob(from) … NewJob(to).
func newJobs(from, to int) []*job.Job {
	var out []*job.Job
	for n := from; n <= to; n++ {
		out = append(out, NewJob(n))
	}
	return out
}

// listAll pages through f with limit and returns every id and the pages.
func listAll(t *testing.T, s cluster.Store, f job.Filter) (all []string, pages int) {
	t.Helper()
	for {
		page, next, err := s.List(t.Context(), f)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), f.Limit)
		all = append(all, ids(page)...)
		pages++
		if next == "" {
			return all, pages
		}
		require.Equal(t, page[len(page)-1].ID, next, "the token is the last id returned")
		f.After = next
		require.Less(t, pages, 1000, "pagination does not end")
	}
}

func testList(t *testing.T, open func(*testing.T) cluster.Store) {
	t.Run("All", func(t *testing.T) {
		s := open(t)
		jobs := newJobs(1, 5)
		MustInsert(t, s, jobs...)
		got, next, err := s.List(t.Context(), job.Filter{})
		require.NoError(t, err)
		require.Equal(t, jobs, got)
		require.Empty(t, next)
	})
	t.Run("Empty", func(t *testing.T) {
		s := open(t)
		got, next, err := s.List(t.Context(), job.Filter{})
		require.NoError(t, err)
		require.Empty(t, got)
		require.Empty(t, next)
	})
	t.Run("Filters", func(t *testing.T) {
		s := open(t)
		jobs := newJobs(1, 6)
		jobs[4].Spec.Tenant = "team-b"
		jobs[5].Spec.Tenant = "team-b"
		MustPutTenant(t, s, NewTenant("team-b"))
		MustInsert(t, s, jobs...)
		MustApply(t, s, jobs[0], schedule("w-1"))
		MustApply(t, s, jobs[5], schedule("w-1"))
		for name, tc := range map[string]struct {
			f    job.Filter
			want []string
		}{
			"State":       {job.Filter{State: job.Scheduled}, []string{ID(1), ID(6)}},
			"Tenant":      {job.Filter{Tenant: "team-b"}, []string{ID(5), ID(6)}},
			"Label":       {job.Filter{Labels: map[string]string{"parity": "odd"}}, []string{ID(1), ID(3), ID(5)}},
			"Labels":      {job.Filter{Labels: map[string]string{"parity": "odd", "n": "3"}}, []string{ID(3)}},
			"MissingKey":  {job.Filter{Labels: map[string]string{"nope": ""}}, nil},
			"Combined":    {job.Filter{State: job.Pending, Tenant: "team-b"}, []string{ID(5)}},
			"Name":        {job.Filter{Name: "job-3"}, []string{ID(3)}},
			"NameExact":   {job.Filter{Name: "job-"}, nil},
			"NameUnknown": {job.Filter{Name: "nope"}, nil},
			"NameState":   {job.Filter{Name: "job-1", State: job.Scheduled}, []string{ID(1)}},
			"NameOther":   {job.Filter{Name: "job-1", State: job.Pending}, nil},
			"After":       {job.Filter{After: ID(4)}, []string{ID(5), ID(6)}},
			"AfterAbsent": {job.Filter{After: ID(3) + "0"}, []string{ID(4), ID(5), ID(6)}},
			"AfterLast":   {job.Filter{After: ID(6)}, nil},
		} {
			t.Run(name, func(t *testing.T) {
				got, next, err := s.List(t.Context(), tc.f)
				require.NoError(t, err)
				require.Equal(t, tc.want, ids(got))
				require.Empty(t, next)
			})
		}
	})
	t.Run("Pagination", func(t *testing.T) {
		s := open(t)
		MustInsert(t, s, newJobs(1, 25)...)
		all, pages := listAll(t, s, job.Filter{Limit: 4})
		require.Equal(t, idRange(1, 25, 1), all)
		require.Equal(t, 7, pages)
		odd, _ := listAll(t, s, job.Filter{Limit: 4, Labels: map[string]string{"parity": "odd"}})
		require.Equal(t, idRange(1, 25, 2), odd)
		exact, pages := listAll(t, s, job.Filter{Limit: 5})
		require.Equal(t, idRange(1, 25, 1), exact)
		require.LessOrEqual(t, pages, 6, "a full last page may be followed by one empty page")
	})
	t.Run("Indexes", func(t *testing.T) { testListIndexes(t, open) })
	t.Run("DefaultLimit", func(t *testing.T) {
		s := open(t)
		MustInsert(t, s, newJobs(1, job.DefaultPageSize+1)...)
		got, next, err := s.List(t.Context(), job.Filter{})
		require.NoError(t, err)
		require.Len(t, got, job.DefaultPageSize)
		require.Equal(t, ID(job.DefaultPageSize), next)
	})
	t.Run("MaxLimit", func(t *testing.T) {
		s := open(t)
		MustInsert(t, s, newJobs(1, job.MaxPageSize+1)...)
		got, next, err := s.List(t.Context(), job.Filter{Limit: 10 * job.MaxPageSize})
		require.NoError(t, err)
		require.Len(t, got, job.MaxPageSize)
		require.Equal(t, ID(job.MaxPageSize), next)
	})
}

func testScan(t *testing.T, open func(*testing.T) cluster.Store) {
	t.Run("Order", func(t *testing.T) {
		s := open(t)
		// More jobs than a read chunk, inserted out of order in several calls.
		const n = 600
		perm := rand.Perm(n)
		for i := 0; i < n; i += 100 {
			var batch []*job.Job
			for _, k := range perm[i : i+100] {
				batch = append(batch, NewJob(k+1))
			}
			MustInsert(t, s, batch...)
		}
		var got []string
		require.NoError(t, s.Scan(t.Context(), func(j *job.Job) error {
			got = append(got, j.ID)
			return nil
		}))
		require.Equal(t, idRange(1, n, 1), got)
	})
	t.Run("Empty", func(t *testing.T) {
		s := open(t)
		require.NoError(t, s.Scan(t.Context(), func(*job.Job) error {
			t.Error("fn called on an empty store")
			return nil
		}))
	})
	t.Run("FnError", func(t *testing.T) {
		s := open(t)
		MustInsert(t, s, newJobs(1, 3)...)
		stop := errors.New("stop")
		calls := 0
		err := s.Scan(t.Context(), func(*job.Job) error { calls++; return stop })
		require.ErrorIs(t, err, stop)
		require.Equal(t, 1, calls)
	})
	t.Run("ContextDone", func(t *testing.T) {
		s := open(t)
		MustInsert(t, s, newJobs(1, 3)...)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := s.Scan(ctx, func(*job.Job) error { return nil })
		require.ErrorIs(t, err, context.Canceled)
	})
}

func testWorkers(t *testing.T, open func(*testing.T) cluster.Store) {
	t.Run("RoundTrip", func(t *testing.T) {
		s := open(t)
		got, err := s.Workers(t.Context())
		require.NoError(t, err)
		require.Empty(t, got)
		b := &job.Worker{ID: "w-b", Name: "b", Hostname: "host-b", Version: "1.0",
			Labels:   map[string]string{"gpu": "true"},
			Capacity: job.Resources{CPUMillis: 8000, MemoryMiB: 16384, Slots: 8}}
		a := &job.Worker{ID: "w-a", Name: "a", Hostname: "host-a", Drained: true,
			Capacity: job.Resources{Slots: 1}}
		require.NoError(t, s.PutWorker(t.Context(), b))
		require.NoError(t, s.PutWorker(t.Context(), a))
		got, err = s.Workers(t.Context())
		require.NoError(t, err)
		require.Equal(t, []*job.Worker{a, b}, got, "in id order")

		// Replace, and check the store kept no alias of the caller's value.
		b2 := b.Clone()
		b2.Drained = true
		b2.Labels["gpu"] = "false"
		require.NoError(t, s.PutWorker(t.Context(), b2))
		b2.Labels["gpu"] = "changed after put"
		got, err = s.Workers(t.Context())
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.True(t, got[1].Drained)
		require.Equal(t, "false", got[1].Labels["gpu"])
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		s := open(t)
		require.ErrorIs(t, s.PutWorker(t.Context(), &job.Worker{}), job.ErrInvalid)
		require.ErrorIs(t, s.PutWorker(t.Context(), nil), job.ErrInvalid)
		// All or none: the valid record of a call with an invalid one is
		// not stored either.
		require.ErrorIs(t, s.PutWorker(t.Context(), &job.Worker{ID: "w-ok"}, &job.Worker{}), job.ErrInvalid)
		got, err := s.Workers(t.Context())
		require.NoError(t, err)
		require.Empty(t, got)
	})
	t.Run("DownSince", func(t *testing.T) {
		s := open(t)
		down := &job.Worker{ID: "w-down", Name: "d", Capacity: job.Resources{Slots: 1}, DownSince: T0}
		up := &job.Worker{ID: "w-up", Name: "u", Capacity: job.Resources{Slots: 1}}
		require.NoError(t, s.PutWorker(t.Context(), down, up), "several in one call")
		got, err := s.Workers(t.Context())
		require.NoError(t, err)
		require.Equal(t, []*job.Worker{down, up}, got)
		require.True(t, got[0].DownSince.Equal(T0))
		require.True(t, got[1].DownSince.IsZero())
	})
	t.Run("Delete", func(t *testing.T) {
		s := open(t)
		for _, id := range []string{"w-1", "w-2", "w-3"} {
			require.NoError(t, s.PutWorker(t.Context(), &job.Worker{ID: id, Capacity: job.Resources{Slots: 1}}))
		}
		require.NoError(t, s.DeleteWorker(t.Context(), "w-1", "w-3", "w-unknown"))
		got, err := s.Workers(t.Context())
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, "w-2", got[0].ID)
		require.NoError(t, s.DeleteWorker(t.Context(), "w-1"), "deleting again is not an error")
		require.NoError(t, s.DeleteWorker(t.Context()))
	})
}

func testDeleteFinished(t *testing.T, open func(*testing.T) cluster.Store) {
	// setup stores 1 completed at T0, 2 failed at T0+1h, 3 cancelled at
	// T0+2h, 4 cancelled with no FinishedAt, 5 pending, 6 running.
	setup := func(t *testing.T) cluster.Store {
		s := open(t)
		jobs := newJobs(1, 6)
		MustInsert(t, s, jobs...)
		Finish(t, s, jobs[0], job.Completed, T0)
		Finish(t, s, jobs[1], job.Failed, T0.Add(time.Hour))
		Finish(t, s, jobs[2], job.Cancelled, T0.Add(2*time.Hour))
		Finish(t, s, jobs[3], job.Cancelled, time.Time{})
		j := MustApply(t, s, jobs[5], schedule("w-1"))
		MustApply(t, s, j, func(n *job.Job) { n.State = job.Running; n.FinishedAt = T0 })
		return s
	}
	remaining := func(t *testing.T, s cluster.Store) []string {
		got, _, err := s.List(t.Context(), job.Filter{})
		require.NoError(t, err)
		return ids(got)
	}
	t.Run("OK", func(t *testing.T) {
		s := setup(t)
		got, err := s.DeleteFinished(t.Context(), T0.Add(time.Hour+time.Nanosecond), 100, nil)
		require.NoError(t, err)
		require.Equal(t, []string{ID(1), ID(2)}, got)
		assertNotFound(t, s, ID(1), ID(2))
		require.Equal(t, []string{ID(3), ID(4), ID(5), ID(6)}, remaining(t, s))
	})
	t.Run("Before", func(t *testing.T) {
		s := setup(t)
		got, err := s.DeleteFinished(t.Context(), T0.Add(time.Hour), 100, nil)
		require.NoError(t, err)
		require.Equal(t, []string{ID(1)}, got, "FinishedAt must be strictly before")
	})
	t.Run("Limit", func(t *testing.T) {
		s := setup(t)
		later := T0.Add(24 * time.Hour)
		got, err := s.DeleteFinished(t.Context(), later, 2, nil)
		require.NoError(t, err)
		require.Equal(t, []string{ID(1), ID(2)}, got, "oldest ids first")
		got, err = s.DeleteFinished(t.Context(), later, 2, nil)
		require.NoError(t, err)
		require.Equal(t, []string{ID(3)}, got)
		got, err = s.DeleteFinished(t.Context(), later, 2, nil)
		require.NoError(t, err)
		require.Empty(t, got)
		require.Equal(t, []string{ID(4), ID(5), ID(6)}, remaining(t, s),
			"a terminal job without FinishedAt is kept")
	})
	t.Run("Keep", func(t *testing.T) {
		s := setup(t)
		later := T0.Add(24 * time.Hour)
		got, err := s.DeleteFinished(t.Context(), later, 1, func(id string) bool { return id == ID(1) })
		require.NoError(t, err)
		require.Equal(t, []string{ID(2)}, got, "a kept job neither goes nor counts against the limit")
		require.Contains(t, remaining(t, s), ID(1))
	})
	t.Run("ZeroLimit", func(t *testing.T) {
		s := setup(t)
		got, err := s.DeleteFinished(t.Context(), T0.Add(24*time.Hour), 0, nil)
		require.NoError(t, err)
		require.Empty(t, got)
		require.Len(t, remaining(t, s), 6)
	})
	t.Run("MadeAfterTheCutoff", func(t *testing.T) {
		// Ids sort by the time they were made, and the walk ends at the
		// first one made after the cutoff: a job made then is kept even
		// with a FinishedAt before it (the server's clock went back), and
		// deleted once the cutoff passes its id's time.
		s := open(t)
		idAt := func(at time.Time) string {
			return ulid.MustNew(ulid.Timestamp(at), ulid.DefaultEntropy()).String()
		}
		old, queued, skewed := NewJob(1), NewJob(2), NewJob(3)
		old.ID, queued.ID, skewed.ID = idAt(T0), idAt(T0.Add(time.Minute)), idAt(T0.Add(2*time.Hour))
		MustInsert(t, s, old, queued, skewed)
		Finish(t, s, old, job.Completed, T0.Add(time.Minute))
		Finish(t, s, skewed, job.Completed, T0.Add(time.Minute))
		got, err := s.DeleteFinished(t.Context(), T0.Add(time.Hour), 10, nil)
		require.NoError(t, err)
		require.Equal(t, []string{old.ID}, got, "the walk passes the queued job and stops before the one made after the cutoff")
		got, err = s.DeleteFinished(t.Context(), T0.Add(3*time.Hour), 10, nil)
		require.NoError(t, err)
		require.Equal(t, []string{skewed.ID}, got)
		require.Equal(t, []string{queued.ID}, remaining(t, s))
	})
	t.Run("Reinsert", func(t *testing.T) {
		s := setup(t)
		_, err := s.DeleteFinished(t.Context(), T0.Add(time.Nanosecond), 10, nil)
		require.NoError(t, err)
		MustInsert(t, s, NewJob(1))
		require.Equal(t, uint64(1), MustGet(t, s, ID(1)).Version)
	})
}
