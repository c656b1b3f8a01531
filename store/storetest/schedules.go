package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
)

// NewSchedule returns a schedule of the default tenant named name, every
// minute, next at T0 rounded up to the minute, submitting NewJob(0)'s spec.
func NewSchedule(name string) *job.Schedule {
	spec := NewJob(0).Spec
	spec.Tenant = job.DefaultTenant
	return &job.Schedule{
		Name: name, Tenant: job.DefaultTenant, Expr: "* * * * *", TimeZone: "Europe/Madrid",
		Overlap: job.OverlapForbid, CatchUp: job.CatchUpAll, StartingDeadline: time.Minute,
		Spec: spec, CreatedAt: T0, NextRun: T0.Truncate(time.Minute).Add(time.Minute),
	}
}

// MustSchedules returns the stored schedules, failing the test on error.
func MustSchedules(t testing.TB, s cluster.Store) []*job.Schedule {
	t.Helper()
	out, err := s.Schedules(t.Context())
	require.NoError(t, err)
	return out
}

func testSchedules(t *testing.T, open func(*testing.T) cluster.Store) {
	t.Run("RoundTrip", func(t *testing.T) {
		s := open(t)
		a := NewSchedule("nightly")
		a.LastTick, a.LastRun, a.LastJob, a.Skipped, a.LastSkip = T0, T0, ID(9), 3, "overlap"
		require.NoError(t, s.PutSchedule(t.Context(), a, 0))
		require.Equal(t, uint64(1), a.Version)
		p := NewSchedule("pipe")
		p.Tenant = job.DefaultTenant
		p.Spec = job.Spec{}
		p.Pipeline = &job.PipelineSpec{Name: "ci", Tenant: job.DefaultTenant,
			Defaults: job.Spec{Timeout: -1, Retries: -1, Priority: -1, Env: map[string]string{"A": "1"}},
			Steps: []job.Step{
				{Name: "build", Spec: job.Spec{Command: []string{"make"}, Timeout: -1}},
				{Name: "test", Spec: job.Spec{Script: "make test"}, Needs: []string{"build"}, ContinueOnFailure: true,
					Matrix: []job.MatrixAxis{{Key: "GO", Values: []string{"1.25", "1.26"}}}},
			}}
		require.NoError(t, s.PutSchedule(t.Context(), p, 0))
		got := MustSchedules(t, s)
		require.Len(t, got, 2)
		require.Equal(t, a, got[0], "key order: default/nightly before default/pipe")
		require.Equal(t, p, got[1])
	})
	t.Run("PutCompares", func(t *testing.T) {
		s := open(t)
		a := NewSchedule("a")
		require.NoError(t, s.PutSchedule(t.Context(), a, 0))
		dup := NewSchedule("a")
		require.ErrorIs(t, s.PutSchedule(t.Context(), dup, 0), job.ErrConflict)
		require.ErrorIs(t, s.PutSchedule(t.Context(), NewSchedule("b"), 1), job.ErrNotFound)
		b := *a
		b.Paused = true
		require.NoError(t, s.PutSchedule(t.Context(), &b, 1))
		require.Equal(t, uint64(2), b.Version)
		c := *a
		require.ErrorIs(t, s.PutSchedule(t.Context(), &c, 1), job.ErrConflict, "version 1 moved on")
		require.True(t, MustSchedules(t, s)[0].Paused)
		require.NoError(t, s.DeleteSchedule(t.Context(), a.Key()))
		require.ErrorIs(t, s.DeleteSchedule(t.Context(), a.Key()), job.ErrNotFound)
		require.Empty(t, MustSchedules(t, s))
	})
	t.Run("FireOnce", func(t *testing.T) {
		// A tick's jobs and the schedule's move to the next tick commit
		// together; the same fire replayed (a retry after a crash, a
		// second firer) inserts nothing.
		s := open(t)
		a := NewSchedule("a")
		require.NoError(t, s.PutSchedule(t.Context(), a, 0))
		fire := func(n int) error {
			next := *a
			next.LastJob, next.LastRun = ID(n), T0
			next.NextRun = a.NextRun.Add(time.Minute)
			return s.FireSchedule(t.Context(), &next, a.Version, nil, []*job.Job{NewJob(n)})
		}
		var (
			wg   sync.WaitGroup
			errs = make([]error, 8)
		)
		for i := range errs {
			wg.Go(func() { errs[i] = fire(10 + i) })
		}
		wg.Wait()
		won := 0
		for i, err := range errs {
			if err == nil {
				won++
				MustGet(t, s, ID(10+i))
				continue
			}
			require.ErrorIs(t, err, job.ErrConflict)
			assertNotFound(t, s, ID(10+i))
		}
		require.Equal(t, 1, won, "one fire of the tick wins")
		got := MustSchedules(t, s)[0]
		require.Equal(t, uint64(2), got.Version)
		require.Equal(t, a.NextRun.Add(time.Minute), got.NextRun)
	})
	t.Run("FireAllOrNothing", func(t *testing.T) {
		s := open(t)
		MustPutTenant(t, s, limited("team-q", 1))
		a := NewSchedule("a")
		a.Tenant = "team-q"
		require.NoError(t, s.PutSchedule(t.Context(), a, 0))
		next := *a
		next.NextRun = a.NextRun.Add(time.Minute)
		err := s.FireSchedule(t.Context(), &next, a.Version, nil, []*job.Job{tenantJob(1, "team-q"), tenantJob(2, "team-q")})
		require.ErrorIs(t, err, job.ErrExhausted)
		assertNotFound(t, s, ID(1), ID(2))
		require.Equal(t, a.NextRun, MustSchedules(t, s)[0].NextRun, "refused: the schedule did not move")
		require.Equal(t, uint64(1), MustSchedules(t, s)[0].Version)

		p, jobs := NewPipeline(1, 3)
		inTenant(p, jobs, "team-q")
		err = s.FireSchedule(t.Context(), &next, a.Version, p, jobs)
		require.ErrorIs(t, err, job.ErrExhausted)
		require.Empty(t, MustPipelines(t, s))

		p, jobs = NewPipeline(2, 6)
		require.NoError(t, s.FireSchedule(t.Context(), &next, a.Version, p, jobs))
		require.Len(t, MustPipelines(t, s), 1)
		MustGet(t, s, ID(6))
		require.Equal(t, uint64(1), jobs[0].Version)
	})
}
