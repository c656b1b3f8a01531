package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
)

// PipelineID returns the n-th pipeline id: valid ULID syntax, sorting by n,
// never equal to a job id of ID.
func PipelineID(n int) string { return fmt.Sprintf("01HP%022d", n) }

// NewPipeline returns pipeline record n of the default tenant, created at
// T0, and its three jobs ID(first) … ID(first+2), in step order: step
// "build" runs the first job, and step "test" (which needs build and
// continues on failure) the other two, a matrix, each depending on the
// build job. The jobs have Spec.Pipeline and Spec.Step set.
func NewPipeline(n, first int) (*job.Pipeline, []*job.Job) {
	p := &job.Pipeline{
		ID:     PipelineID(n),
		Name:   fmt.Sprintf("pipeline-%d", n),
		Tenant: job.DefaultTenant,
		Steps: []job.PipelineStep{
			{Name: "build", Jobs: []string{ID(first)}},
			{Name: "test", Needs: []string{"build"}, ContinueOnFailure: true,
				Jobs: []string{ID(first + 1), ID(first + 2)}},
		},
		CreatedAt: T0,
	}
	jobs := []*job.Job{NewJob(first), NewJob(first+1, ID(first)), NewJob(first+2, ID(first))}
	for i, j := range jobs {
		j.Spec.Tenant = p.Tenant
		j.Spec.Pipeline = p.ID
		j.Spec.Step = "test"
		if i == 0 {
			j.Spec.Step = "build"
		} else {
			j.Spec.ContinueOnFailure = true
		}
	}
	return p, jobs
}

// inTenant moves a pipeline and its jobs to another tenant.
func inTenant(p *job.Pipeline, jobs []*job.Job, tenant string) {
	p.Tenant = tenant
	for _, j := range jobs {
		j.Spec.Tenant = tenant
	}
}

// MustInsertPipeline inserts a pipeline and its jobs and fails the test on
// error.
func MustInsertPipeline(t testing.TB, s cluster.Store, p *job.Pipeline, jobs ...*job.Job) {
	t.Helper()
	require.NoError(t, s.InsertPipeline(context.Background(), p, jobs))
}

// MustPipelines returns the stored pipelines or fails the test.
func MustPipelines(t testing.TB, s cluster.Store) []*job.Pipeline {
	t.Helper()
	got, err := s.Pipelines(context.Background())
	require.NoError(t, err)
	return got
}

// assertNothingStored checks that a failed InsertPipeline left no record
// and none of its jobs, and did not touch the caller's jobs.
func assertNothingStored(t *testing.T, s cluster.Store, want []*job.Pipeline, jobs []*job.Job) {
	t.Helper()
	require.Equal(t, want, MustPipelines(t, s), "stored pipelines")
	for _, j := range jobs {
		assertNotFound(t, s, j.ID)
		require.Zero(t, j.Version, "a failed InsertPipeline leaves the caller's jobs alone")
	}
}

func testPipelines(t *testing.T, open func(*testing.T) cluster.Store) {
	testInsertPipeline(t, open)
	testInsertPipelineRefused(t, open)
	t.Run("Put/OK", func(t *testing.T) {
		s := open(t)
		p, jobs := NewPipeline(1, 1)
		MustInsertPipeline(t, s, p, jobs...)
		next := p.Clone()
		next.Cancelled = true
		next.Name = "renamed"
		next.Steps[1].Jobs = append(next.Steps[1].Jobs, ID(9))
		require.NoError(t, s.PutPipeline(t.Context(), next))
		require.Equal(t, []*job.Pipeline{next}, MustPipelines(t, s))
		for _, j := range jobs {
			require.Equal(t, j, MustGet(t, s, j.ID), "the jobs are untouched")
		}
	})
	t.Run("Put/ErrNotFound", func(t *testing.T) {
		s := open(t)
		p, _ := NewPipeline(1, 1)
		require.ErrorIs(t, s.PutPipeline(t.Context(), p), job.ErrNotFound)
		require.Empty(t, MustPipelines(t, s))

		// Nor after it was deleted.
		p, jobs := NewPipeline(2, 1)
		MustInsertPipeline(t, s, p, jobs...)
		require.NoError(t, s.DeletePipeline(t.Context(), p.ID))
		require.ErrorIs(t, s.PutPipeline(t.Context(), p), job.ErrNotFound)
		require.Empty(t, MustPipelines(t, s))
	})
	t.Run("Put/ErrInvalid", func(t *testing.T) {
		s := open(t)
		for name, p := range map[string]*job.Pipeline{"Nil": nil, "EmptyID": {Name: "x"}} {
			err := s.PutPipeline(t.Context(), p)
			var fe *job.FieldError
			require.ErrorAs(t, err, &fe, name)
			require.Equal(t, "pipeline", fe.Field, name)
		}
		require.Empty(t, MustPipelines(t, s))
	})
	t.Run("Pipelines/Order", func(t *testing.T) {
		s := open(t)
		require.Empty(t, MustPipelines(t, s))
		var want []*job.Pipeline
		for _, n := range []int{3, 1, 2} {
			p, jobs := NewPipeline(n, 10*n)
			MustInsertPipeline(t, s, p, jobs...)
			want = append(want, p)
		}
		require.Equal(t, []*job.Pipeline{want[1], want[2], want[0]}, MustPipelines(t, s), "in id order")
	})
	t.Run("Delete/OK", func(t *testing.T) {
		s := open(t)
		p1, jobs1 := NewPipeline(1, 1)
		p2, jobs2 := NewPipeline(2, 4)
		MustInsertPipeline(t, s, p1, jobs1...)
		MustInsertPipeline(t, s, p2, jobs2...)
		require.NoError(t, s.DeletePipeline(t.Context(), p1.ID))
		require.Equal(t, []*job.Pipeline{p2}, MustPipelines(t, s))
		for _, j := range jobs1 {
			require.Equal(t, j, MustGet(t, s, j.ID), "deleting the record keeps its jobs")
		}
		require.NoError(t, s.DeletePipeline(t.Context(), p1.ID), "deleted twice")
		// The id is free again.
		p1, jobs1 = NewPipeline(1, 7)
		MustInsertPipeline(t, s, p1, jobs1...)
		require.Equal(t, []*job.Pipeline{p1, p2}, MustPipelines(t, s))
	})
	t.Run("Delete/Missing", func(t *testing.T) {
		s := open(t)
		require.NoError(t, s.DeletePipeline(t.Context(), PipelineID(1)))
		require.NoError(t, s.DeletePipeline(t.Context(), ""))
		require.Empty(t, MustPipelines(t, s))
	})
	testListPipelineArray(t, open)
}

func testInsertPipeline(t *testing.T, open func(*testing.T) cluster.Store) {
	t.Run("Insert/OK", func(t *testing.T) {
		s := open(t)
		p, jobs := NewPipeline(1, 1)
		want := p.Clone()
		// The build job comes last: dependencies inside the call may come
		// in any order.
		require.NoError(t, s.InsertPipeline(t.Context(), p, []*job.Job{jobs[1], jobs[2], jobs[0]}))
		for _, j := range jobs {
			require.Equal(t, uint64(1), j.Version, "InsertPipeline sets Version on the caller's jobs")
			require.Equal(t, j, MustGet(t, s, j.ID))
		}
		require.Equal(t, []string{ID(1)}, MustGet(t, s, ID(3)).Spec.DependsOn)
		require.Equal(t, []*job.Pipeline{want}, MustPipelines(t, s))
		require.Equal(t, want, p, "the caller's record is untouched")
		require.Equal(t, []string{ID(1), ID(2), ID(3)}, MustPipelines(t, s)[0].JobIDs())
	})
	t.Run("Insert/NoAlias", func(t *testing.T) {
		s := open(t)
		p, jobs := NewPipeline(1, 1)
		MustInsertPipeline(t, s, p, jobs...)
		want := p.Clone()
		p.Name = "changed"
		p.Steps[1].Needs[0] = "changed"
		p.Steps[0].Jobs[0] = "changed"
		got := MustPipelines(t, s)
		require.Equal(t, []*job.Pipeline{want}, got)
		got[0].Steps[1].Jobs[0] = "changed again"
		require.Equal(t, []*job.Pipeline{want}, MustPipelines(t, s))
	})
	t.Run("Insert/DependencyStored", func(t *testing.T) {
		s := open(t)
		MustInsert(t, s, NewJob(1))
		p, jobs := NewPipeline(1, 2)
		jobs[0].Spec.DependsOn = []string{ID(1)}
		MustInsertPipeline(t, s, p, jobs...)
		require.Equal(t, []string{ID(1)}, MustGet(t, s, ID(2)).Spec.DependsOn)
	})
	t.Run("Insert/Admission", func(t *testing.T) {
		// A pipeline's jobs count against its tenant's MaxQueued like
		// inserted ones.
		s := open(t)
		MustPutTenant(t, s, limited("team-q", 4))
		p, jobs := NewPipeline(1, 1)
		inTenant(p, jobs, "team-q")
		MustInsertPipeline(t, s, p, jobs...)
		err := s.Insert(t.Context(), []*job.Job{tenantJob(4, "team-q"), tenantJob(5, "team-q")})
		require.ErrorIs(t, err, job.ErrExhausted)
		require.ErrorContains(t, err, "(3 jobs queued, 2 more asked for)")
		MustInsert(t, s, tenantJob(4, "team-q"))
		err = s.DeleteTenant(t.Context(), "team-q")
		require.ErrorContains(t, err, `tenant "team-q" has 4 jobs that are not finished`)
	})
	t.Run("Insert/Concurrent", func(t *testing.T) {
		// Inserts racing with one pipeline id: exactly one wins, and only
		// its jobs are stored.
		s := open(t)
		const n = 8
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  = make([]error, n)
		)
		for i := range n {
			wg.Go(func() {
				p, jobs := NewPipeline(1, 10*(i+1))
				<-start
				errs[i] = s.InsertPipeline(t.Context(), p, jobs)
			})
		}
		close(start)
		wg.Wait()
		won := -1
		for i, err := range errs {
			if err == nil {
				require.Equal(t, -1, won, "two inserts won: %d and %d", won, i)
				won = i
				continue
			}
			require.ErrorIs(t, err, job.ErrConflict, "insert %d", i)
		}
		require.NotEqual(t, -1, won, "no insert won")
		want, _ := NewPipeline(1, 10*(won+1))
		require.Equal(t, []*job.Pipeline{want}, MustPipelines(t, s))
		stored, _, err := s.List(t.Context(), job.Filter{})
		require.NoError(t, err)
		require.Equal(t, want.JobIDs(), ids(stored))
	})
}

func testInsertPipelineRefused(t *testing.T, open func(*testing.T) cluster.Store) {
	t.Run("Insert/ErrConflict/Pipeline", func(t *testing.T) {
		s := open(t)
		p, jobs := NewPipeline(1, 1)
		MustInsertPipeline(t, s, p, jobs...)
		dup, dupJobs := NewPipeline(1, 11)
		dup.Name = "another"
		err := s.InsertPipeline(t.Context(), dup, dupJobs)
		require.ErrorIs(t, err, job.ErrConflict)
		require.ErrorContains(t, err, PipelineID(1))
		assertNothingStored(t, s, []*job.Pipeline{p}, dupJobs)
	})
	t.Run("Insert/ErrConflict/Job", func(t *testing.T) {
		s := open(t)
		MustInsert(t, s, NewJob(3))
		p, jobs := NewPipeline(1, 1)
		err := s.InsertPipeline(t.Context(), p, jobs)
		require.ErrorIs(t, err, job.ErrConflict)
		require.ErrorContains(t, err, ID(3))
		assertNothingStored(t, s, nil, jobs[:2])
		require.Equal(t, uint64(1), MustGet(t, s, ID(3)).Version)
	})
	t.Run("Insert/UnknownDependency", func(t *testing.T) {
		s := open(t)
		p, jobs := NewPipeline(1, 1)
		jobs[2].Spec.DependsOn = append(jobs[2].Spec.DependsOn, ID(99))
		err := s.InsertPipeline(t.Context(), p, jobs)
		var fe *job.FieldError
		require.ErrorAs(t, err, &fe)
		require.Equal(t, "after", fe.Field)
		assertNothingStored(t, s, nil, jobs)
	})
	t.Run("Insert/UnknownTenant", func(t *testing.T) {
		s := open(t)
		p, jobs := NewPipeline(1, 1)
		inTenant(p, jobs, "nope")
		err := s.InsertPipeline(t.Context(), p, jobs)
		require.ErrorIs(t, err, job.ErrNotFound)
		require.ErrorContains(t, err, `tenant "nope" does not exist`)
		assertNothingStored(t, s, nil, jobs)
	})
	t.Run("Insert/MaxQueued", func(t *testing.T) {
		s := open(t)
		MustPutTenant(t, s, limited("team-q", 3))
		MustInsert(t, s, tenantJob(1, "team-q"))
		p, jobs := NewPipeline(1, 2)
		inTenant(p, jobs, "team-q")
		err := s.InsertPipeline(t.Context(), p, jobs)
		require.ErrorIs(t, err, job.ErrExhausted)
		require.ErrorContains(t, err, `tenant "team-q" is at its max-queued limit of 3 (1 job queued, 3 more asked for)`)
		assertNothingStored(t, s, nil, jobs)
		// The refused jobs were not counted: two more fit exactly.
		MustInsert(t, s, tenantJob(11, "team-q"), tenantJob(12, "team-q"))
		require.ErrorIs(t, s.Insert(t.Context(), []*job.Job{tenantJob(13, "team-q")}), job.ErrExhausted)
	})
	t.Run("Insert/ErrInvalid", func(t *testing.T) {
		for name, tc := range map[string]struct {
			change func(p **job.Pipeline, jobs []*job.Job)
			field  string
		}{
			"NilPipeline": {func(p **job.Pipeline, _ []*job.Job) { *p = nil }, "pipeline"},
			"EmptyID":     {func(p **job.Pipeline, _ []*job.Job) { (*p).ID = "" }, "pipeline"},
			"LongID": {func(p **job.Pipeline, _ []*job.Job) {
				(*p).ID = fmt.Sprintf("%0*d", job.MaxIDLen+1, 1)
			}, "pipeline"},
			"JobNotPending": {func(_ **job.Pipeline, jobs []*job.Job) { jobs[1].State = job.Running }, "state"},
			"JobNoID":       {func(_ **job.Pipeline, jobs []*job.Job) { jobs[2].ID = "" }, "id"},
		} {
			t.Run(name, func(t *testing.T) {
				s := open(t)
				p, jobs := NewPipeline(1, 1)
				tc.change(&p, jobs)
				err := s.InsertPipeline(t.Context(), p, jobs)
				var fe *job.FieldError
				require.ErrorAs(t, err, &fe)
				require.Equal(t, tc.field, fe.Field)
				assertNothingStored(t, s, nil, nil)
				assertNotFound(t, s, ID(1), ID(2), ID(3))
			})
		}
	})
	t.Run("Insert/ContextDone", func(t *testing.T) {
		s := open(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		p, jobs := NewPipeline(1, 1)
		require.ErrorIs(t, s.InsertPipeline(ctx, p, jobs), context.Canceled)
		assertNothingStored(t, s, nil, jobs)
	})
}

// arrayJob returns NewJob(n) as index i of array id.
func arrayJob(n int, id string, i int) *job.Job {
	j := NewJob(n)
	j.Spec.Array, j.Spec.ArrayIndex, j.Spec.ArrayLimit = id, i, 2
	j.Spec.Env = map[string]string{"HODEI_ARRAY_INDEX": fmt.Sprint(i)}
	return j
}

func testListPipelineArray(t *testing.T, open func(*testing.T) cluster.Store) {
	// Jobs 1–3 are pipeline 1, 4–6 pipeline 2; 7, 9, 11 array A and 8, 10,
	// 12 array B (interleaved, so that a filter skips ids); 13 is neither.
	arrayA, arrayB := "01HA"+ID(1)[4:], "01HA"+ID(2)[4:]
	setup := func(t *testing.T) cluster.Store {
		s := open(t)
		p1, jobs1 := NewPipeline(1, 1)
		p2, jobs2 := NewPipeline(2, 4)
		MustInsertPipeline(t, s, p1, jobs1...)
		MustInsertPipeline(t, s, p2, jobs2...)
		var arrays []*job.Job
		for i := range 3 {
			arrays = append(arrays, arrayJob(7+2*i, arrayA, i), arrayJob(8+2*i, arrayB, i))
		}
		MustInsert(t, s, arrays...)
		MustInsert(t, s, NewJob(13))
		MustApply(t, s, jobs1[0], schedule("w-1"))
		MustApply(t, s, arrays[2], schedule("w-1")) // job 9
		return s
	}
	t.Run("List/Filters", func(t *testing.T) {
		s := setup(t)
		for name, tc := range map[string]struct {
			f    job.Filter
			want []string
		}{
			"Pipeline":           {job.Filter{Pipeline: PipelineID(1)}, []string{ID(1), ID(2), ID(3)}},
			"Pipeline/Other":     {job.Filter{Pipeline: PipelineID(2)}, []string{ID(4), ID(5), ID(6)}},
			"Pipeline/Unknown":   {job.Filter{Pipeline: PipelineID(3)}, nil},
			"Pipeline/State":     {job.Filter{Pipeline: PipelineID(1), State: job.Pending}, []string{ID(2), ID(3)}},
			"Pipeline/Label":     {job.Filter{Pipeline: PipelineID(2), Labels: map[string]string{"parity": "odd"}}, []string{ID(5)}},
			"Pipeline/After":     {job.Filter{Pipeline: PipelineID(1), After: ID(1)}, []string{ID(2), ID(3)}},
			"Array":              {job.Filter{Array: arrayA}, []string{ID(7), ID(9), ID(11)}},
			"Array/Other":        {job.Filter{Array: arrayB}, []string{ID(8), ID(10), ID(12)}},
			"Array/Unknown":      {job.Filter{Array: "01HA" + ID(3)[4:]}, nil},
			"Array/State":        {job.Filter{Array: arrayA, State: job.Scheduled}, []string{ID(9)}},
			"Array/After":        {job.Filter{Array: arrayB, After: ID(9)}, []string{ID(10), ID(12)}},
			"ArrayAndPipeline":   {job.Filter{Array: arrayA, Pipeline: PipelineID(1)}, nil},
			"PipelineIsNotArray": {job.Filter{Array: PipelineID(1)}, nil},
		} {
			t.Run(name, func(t *testing.T) {
				got, next, err := s.List(t.Context(), tc.f)
				require.NoError(t, err)
				require.Equal(t, tc.want, ids(got))
				require.Empty(t, next)
			})
		}
	})
	t.Run("List/Pagination", func(t *testing.T) {
		s := setup(t)
		got, _ := listAll(t, s, job.Filter{Array: arrayB, Limit: 2})
		require.Equal(t, []string{ID(8), ID(10), ID(12)}, got)
		got, _ = listAll(t, s, job.Filter{Pipeline: PipelineID(2), Limit: 1})
		require.Equal(t, []string{ID(4), ID(5), ID(6)}, got)
	})
	t.Run("List/RoundTrip", func(t *testing.T) {
		// The pipeline and array fields of a job come back from List.
		s := setup(t)
		got, _, err := s.List(t.Context(), job.Filter{Array: arrayB, After: ID(8), Limit: 1})
		require.NoError(t, err)
		require.Equal(t, []*job.Job{arrayJob(10, arrayB, 1)}, clearVersions(got))
		got, _, err = s.List(t.Context(), job.Filter{Pipeline: PipelineID(2), After: ID(4), Limit: 1})
		require.NoError(t, err)
		_, jobs := NewPipeline(2, 4)
		require.Equal(t, []*job.Job{jobs[1]}, clearVersions(got))
	})
}

// clearVersions zeroes the jobs' versions, to compare them with new ones.
func clearVersions(jobs []*job.Job) []*job.Job {
	for _, j := range jobs {
		j.Version = 0
	}
	return jobs
}
