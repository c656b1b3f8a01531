package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
)

// tenantJob returns NewJob(n) of the given tenant.
func tenantJob(n int, tenant string) *job.Job {
	j := NewJob(n)
	j.Spec.Tenant = tenant
	return j
}

// limited returns NewTenant(name) with MaxQueued set.
func limited(name string, maxQueued int) *job.Tenant {
	t := NewTenant(name)
	t.MaxQueued = maxQueued
	return t
}

// tenants returns the stored tenants, failing the test on error.
func tenants(t *testing.T, s cluster.Store) []*job.Tenant {
	t.Helper()
	got, err := s.Tenants(t.Context())
	require.NoError(t, err)
	return got
}

// tenantNames returns the names of the stored tenants.
func tenantNames(t *testing.T, s cluster.Store) []string {
	t.Helper()
	var out []string
	for _, tn := range tenants(t, s) {
		out = append(out, tn.Name)
	}
	return out
}

// runToPending moves a stored Pending job through Scheduled and Running and
// back to Pending (a retry), and returns it.
func runToPending(t *testing.T, s cluster.Store, j *job.Job) *job.Job {
	t.Helper()
	j = MustApply(t, s, j, schedule("w-1"))
	j = MustApply(t, s, j, func(n *job.Job) { n.State = job.Running })
	return MustApply(t, s, j, func(n *job.Job) { n.State = job.Pending; n.Attempt++ })
}

func testTenants(t *testing.T, open func(*testing.T) cluster.Store) {
	t.Run("Default", func(t *testing.T) {
		s := open(t)
		got := tenants(t, s)
		require.Len(t, got, 1)
		d := got[0]
		require.Equal(t, job.DefaultTenant, d.Name)
		require.Equal(t, 1.0, d.Weight)
		require.Zero(t, d.MaxQueued)
		require.True(t, d.MaxRunning.IsZero())
		require.False(t, d.Bursts())
		require.False(t, d.Preemptible)
		require.False(t, d.CreatedAt.IsZero(), "created when the store was opened")
		require.False(t, d.CreatedAt.After(time.Now()))
		require.Equal(t, d.CreatedAt, d.UpdatedAt)
		require.NoError(t, d.Validate())
	})
	t.Run("RoundTrip", func(t *testing.T) {
		s := open(t)
		a := &job.Tenant{
			Name:        "team-a",
			Weight:      2.5,
			MaxQueued:   10,
			MaxRunning:  job.Resources{CPUMillis: 4000, MemoryMiB: 8192, Slots: 4},
			Burst:       2,
			BurstFor:    10 * time.Minute,
			Cooldown:    30 * time.Minute,
			Preemptible: true,
			RunAs:       "nobody",
			CreatedAt:   T0,
			UpdatedAt:   T0.Add(time.Hour),
		}
		b := NewTenant("team-b")
		MustPutTenant(t, s, b, a)
		require.Equal(t, []*job.Tenant{a, b}, tenants(t, s)[1:], "in name order, after default")
	})
	t.Run("Replace", func(t *testing.T) {
		s := open(t)
		a := NewTenant("team-a")
		MustPutTenant(t, s, a)
		a2 := *a
		a2.Weight, a2.MaxQueued, a2.UpdatedAt = 4, 7, T0.Add(time.Minute)
		MustPutTenant(t, s, &a2)
		got := tenants(t, s)
		require.Len(t, got, 2)
		require.Equal(t, &a2, got[1])
		require.Equal(t, 1.0, a.Weight, "the caller's first record is untouched")
	})
	t.Run("ReplaceDefault", func(t *testing.T) {
		s := open(t)
		d := *tenants(t, s)[0]
		d.Weight = 3
		MustPutTenant(t, s, &d)
		require.Equal(t, []*job.Tenant{&d}, tenants(t, s))
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		for name, tc := range map[string]struct {
			tenant *job.Tenant
			field  string
		}{
			"Nil":           {nil, "tenant"},
			"EmptyName":     {&job.Tenant{Weight: 1}, "name"},
			"BadName":       {&job.Tenant{Name: "Team A", Weight: 1}, "name"},
			"ZeroWeight":    {&job.Tenant{Name: "team-a"}, "weight"},
			"MaxQueued":     {&job.Tenant{Name: "team-a", Weight: 1, MaxQueued: -1}, "max_queued"},
			"BurstNoLimits": {&job.Tenant{Name: "team-a", Weight: 1, Burst: 2, BurstFor: time.Minute}, "burst"},
			"RunAs":         {&job.Tenant{Name: "team-a", Weight: 1, RunAs: "bob\x00"}, "run_as"},
		} {
			t.Run(name, func(t *testing.T) {
				s := open(t)
				err := s.PutTenant(t.Context(), tc.tenant)
				var fe *job.FieldError
				require.ErrorAs(t, err, &fe)
				require.Equal(t, tc.field, fe.Field)
				require.ErrorIs(t, err, job.ErrInvalid)
				require.Equal(t, []string{job.DefaultTenant}, tenantNames(t, s), "nothing stored")
			})
		}
	})
	t.Run("ErrInvalid/KeepsStored", func(t *testing.T) {
		s := open(t)
		a := NewTenant("team-a")
		MustPutTenant(t, s, a)
		bad := *a
		bad.Weight = -1
		require.ErrorIs(t, s.PutTenant(t.Context(), &bad), job.ErrInvalid)
		require.Equal(t, a, tenants(t, s)[1])
	})
	t.Run("Delete/OK", func(t *testing.T) {
		s := open(t)
		MustPutTenant(t, s, NewTenant("team-a"), NewTenant("team-b"))
		require.NoError(t, s.DeleteTenant(t.Context(), "team-a"))
		require.Equal(t, []string{job.DefaultTenant, "team-b"}, tenantNames(t, s))
		require.ErrorIs(t, s.DeleteTenant(t.Context(), "team-a"), job.ErrNotFound, "deleted once")
	})
	t.Run("Delete/ErrNotFound", func(t *testing.T) {
		s := open(t)
		for _, name := range []string{"team-a", "", "Not A Name"} {
			require.ErrorIs(t, s.DeleteTenant(t.Context(), name), job.ErrNotFound, "%q", name)
		}
	})
	t.Run("Delete/ErrConflict/Default", func(t *testing.T) {
		s := open(t)
		err := s.DeleteTenant(t.Context(), job.DefaultTenant)
		require.ErrorIs(t, err, job.ErrConflict)
		require.ErrorContains(t, err, "the default tenant cannot be deleted")
		require.Equal(t, []string{job.DefaultTenant}, tenantNames(t, s))
	})
	t.Run("Delete/ErrConflict/Jobs", func(t *testing.T) {
		s := open(t)
		MustPutTenant(t, s, NewTenant("team-a"))
		j1, j2, j3 := tenantJob(1, "team-a"), tenantJob(2, "team-a"), tenantJob(3, "team-a")
		MustInsert(t, s, j1, j2, j3, NewJob(4))
		err := s.DeleteTenant(t.Context(), "team-a")
		require.ErrorIs(t, err, job.ErrConflict)
		require.ErrorContains(t, err, `tenant "team-a" has 3 jobs that are not finished; cancel them or wait`)

		// Scheduled, running and retried jobs are not finished either.
		j3 = runToPending(t, s, j3)
		j3 = MustApply(t, s, j3, schedule("w-1"))
		j3 = MustApply(t, s, j3, func(n *job.Job) { n.State = job.Running })
		Finish(t, s, j1, job.Completed, T0)
		Finish(t, s, j2, job.Failed, T0)
		err = s.DeleteTenant(t.Context(), "team-a")
		require.ErrorIs(t, err, job.ErrConflict)
		require.ErrorContains(t, err, `tenant "team-a" has 1 job that is not finished`)

		MustApply(t, s, j3, func(n *job.Job) { n.State = job.Cancelled; n.FinishedAt = T0 })
		require.NoError(t, s.DeleteTenant(t.Context(), "team-a"))
		require.Equal(t, []string{job.DefaultTenant}, tenantNames(t, s))
		require.Equal(t, job.Cancelled, MustGet(t, s, j3.ID).State, "the jobs stay")
	})
}

func testAdmission(t *testing.T, open func(*testing.T) cluster.Store) {
	t.Run("UnknownTenant", func(t *testing.T) {
		s := open(t)
		a, b := NewJob(1), tenantJob(2, "nope")
		err := s.Insert(t.Context(), []*job.Job{a, b})
		require.ErrorIs(t, err, job.ErrNotFound)
		require.ErrorContains(t, err, `tenant "nope" does not exist`)
		assertNotFound(t, s, ID(1), ID(2))
		require.Zero(t, a.Version, "a failed Insert leaves the caller's jobs alone")
	})
	t.Run("UnknownTenant/Deleted", func(t *testing.T) {
		s := open(t)
		MustPutTenant(t, s, NewTenant("team-a"))
		MustInsert(t, s, tenantJob(1, "team-a"))
		Finish(t, s, MustGet(t, s, ID(1)), job.Cancelled, T0)
		require.NoError(t, s.DeleteTenant(t.Context(), "team-a"))
		err := s.Insert(t.Context(), []*job.Job{tenantJob(2, "team-a")})
		require.ErrorIs(t, err, job.ErrNotFound)
		assertNotFound(t, s, ID(2))
	})
	t.Run("MaxQueued", func(t *testing.T) {
		s := open(t)
		MustPutTenant(t, s, limited("team-q", 3))
		jobs := make([]*job.Job, 7)
		for i := range jobs {
			jobs[i] = tenantJob(i+1, "team-q")
		}
		MustInsert(t, s, jobs[0], jobs[1])
		err := s.Insert(t.Context(), []*job.Job{jobs[2], jobs[3]})
		require.ErrorIs(t, err, job.ErrExhausted)
		require.ErrorContains(t, err, `tenant "team-q" is at its max-queued limit of 3 (2 jobs queued, 2 more asked for)`)
		assertNotFound(t, s, ID(3), ID(4))
		require.Zero(t, jobs[2].Version)

		MustInsert(t, s, jobs[2]) // exactly at the limit
		err = s.Insert(t.Context(), []*job.Job{jobs[3]})
		require.ErrorIs(t, err, job.ErrExhausted)
		require.ErrorContains(t, err, "(3 jobs queued, 1 more asked for)")

		// Scheduled and running jobs still count; a finished one does not.
		j := MustApply(t, s, jobs[0], schedule("w-1"))
		MustApply(t, s, j, func(n *job.Job) { n.State = job.Running })
		require.ErrorIs(t, s.Insert(t.Context(), []*job.Job{jobs[3]}), job.ErrExhausted)
		Finish(t, s, jobs[1], job.Cancelled, T0)
		MustInsert(t, s, jobs[3])
		require.ErrorIs(t, s.Insert(t.Context(), []*job.Job{jobs[4]}), job.ErrExhausted)
	})
	t.Run("MaxQueued/WholeCall", func(t *testing.T) {
		// A refused tenant refuses the whole call, other tenants' jobs too.
		s := open(t)
		MustPutTenant(t, s, limited("team-q", 1))
		err := s.Insert(t.Context(), []*job.Job{NewJob(1), tenantJob(2, "team-q"), tenantJob(3, "team-q")})
		require.ErrorIs(t, err, job.ErrExhausted)
		require.ErrorContains(t, err, "(0 jobs queued, 2 more asked for)")
		assertNotFound(t, s, ID(1), ID(2), ID(3))
		MustInsert(t, s, NewJob(1), tenantJob(2, "team-q"))
	})
	t.Run("MaxQueued/PerTenant", func(t *testing.T) {
		s := open(t)
		MustPutTenant(t, s, limited("team-a", 1), limited("team-b", 1))
		MustInsert(t, s, tenantJob(1, "team-a"), tenantJob(2, "team-b"))
		err := s.Insert(t.Context(), []*job.Job{tenantJob(3, "team-b")})
		require.ErrorIs(t, err, job.ErrExhausted)
		require.ErrorContains(t, err, `"team-b"`)
		MustInsert(t, s, newJobs(10, 40)...) // the default tenant has no limit
	})
	t.Run("MaxQueued/Changed", func(t *testing.T) {
		// The limit is read at every insert: lowering it below the count
		// refuses new jobs (and keeps the old ones); 0 lifts it.
		s := open(t)
		MustPutTenant(t, s, limited("team-q", 5))
		MustInsert(t, s, tenantJob(1, "team-q"), tenantJob(2, "team-q"), tenantJob(3, "team-q"))
		MustPutTenant(t, s, limited("team-q", 2))
		err := s.Insert(t.Context(), []*job.Job{tenantJob(4, "team-q")})
		require.ErrorIs(t, err, job.ErrExhausted)
		require.ErrorContains(t, err, "limit of 2 (3 jobs queued, 1 more asked for)")
		MustPutTenant(t, s, limited("team-q", 0))
		MustInsert(t, s, tenantJob(4, "team-q"))
	})
	t.Run("MaxQueued/Retry", func(t *testing.T) {
		// A retry back to Pending is the same job: it counts once.
		s := open(t)
		MustPutTenant(t, s, limited("team-q", 1))
		j := tenantJob(1, "team-q")
		MustInsert(t, s, j)
		j = runToPending(t, s, j)
		require.ErrorIs(t, s.Insert(t.Context(), []*job.Job{tenantJob(2, "team-q")}), job.ErrExhausted)
		MustApply(t, s, j, func(n *job.Job) { n.State = job.Failed; n.FinishedAt = T0 })
		MustInsert(t, s, tenantJob(2, "team-q"))
	})
	t.Run("MaxQueued/DeleteFinished", func(t *testing.T) {
		// Deleting finished jobs does not free room twice.
		s := open(t)
		MustPutTenant(t, s, limited("team-q", 2))
		j1, j2 := tenantJob(1, "team-q"), tenantJob(2, "team-q")
		MustInsert(t, s, j1, j2)
		Finish(t, s, j1, job.Completed, T0)
		deleted, err := s.DeleteFinished(t.Context(), T0.Add(time.Second), 10, nil)
		require.NoError(t, err)
		require.Equal(t, []string{ID(1)}, deleted)
		MustInsert(t, s, tenantJob(3, "team-q"))
		require.ErrorIs(t, s.Insert(t.Context(), []*job.Job{tenantJob(4, "team-q")}), job.ErrExhausted)
	})
	t.Run("MaxQueued/Concurrent", func(t *testing.T) {
		// Inserts racing for the last places never overshoot.
		s := open(t)
		const limit, n = 16, 32
		MustPutTenant(t, s, limited("team-q", limit))
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  = make([]error, n)
		)
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = s.Insert(t.Context(), []*job.Job{tenantJob(i+1, "team-q")})
			})
		}
		close(start)
		wg.Wait()
		var won []string
		for i, err := range errs {
			if err == nil {
				won = append(won, ID(i+1))
				continue
			}
			require.ErrorIs(t, err, job.ErrExhausted, "insert %d", i+1)
		}
		require.Len(t, won, limit)
		stored, _, err := s.List(t.Context(), job.Filter{Tenant: "team-q", Limit: n})
		require.NoError(t, err)
		require.Equal(t, won, ids(stored))
	})
}
