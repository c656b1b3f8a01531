package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
)

// mixedJobs returns n jobs whose filterable fields vary independently: one
// in 5 of tenant team-x, names cycling over 7, labels over 3 and 4, every
// fifth in array arrayX. Jobs of team-x need the tenant stored.
func mixedJobs(n int) []*job.Job {
	out := make([]*job.Job, n)
	for i := range out {
		j := NewJob(i + 1)
		if i%10 == 3 || i%10 == 4 {
			j.Spec.Tenant = "team-x"
		}
		j.Spec.Name = fmt.Sprintf("name-%d", i%7)
		j.Spec.Labels = map[string]string{"env": []string{"dev", "prod", "test"}[i%3], "shard": fmt.Sprint(i % 4)}
		if i%5 == 0 {
			j.Spec.Array, j.Spec.ArrayIndex, j.Spec.ArrayLimit = arrayX, i/5, 2
		}
		out[i] = j
	}
	return out
}

// arrayX is the array of mixedJobs.
var arrayX = "01HX" + ID(1)[4:]

// matching returns the ids of jobs that f matches, in id order (jobs are).
func matching(jobs []*job.Job, f job.Filter) []string {
	var out []string
	for _, j := range jobs {
		if f.Match(j) {
			out = append(out, j.ID)
		}
	}
	return out
}

// listed returns every id List gives for f, paging by limit.
func listed(t *testing.T, s cluster.Store, f job.Filter, limit int) []string {
	t.Helper()
	f.Limit = limit
	got, _ := listAll(t, s, f)
	return got
}

func testListIndexes(t *testing.T, open func(*testing.T) cluster.Store) {
	t.Run("Paging", func(t *testing.T) {
		// Every filter and some combinations, paged small so that pages
		// start inside an index's range, in both orders; the answer is
		// what Match says, and Count counts it.
		s := open(t)
		MustPutTenant(t, s, NewTenant("team-x"))
		jobs := mixedJobs(120)
		MustInsert(t, s, jobs...)
		// Move some along, so that states and finish times vary: every
		// fourth is scheduled, every eighth of those completed (at its
		// own minute); some others are cancelled, a few without a finish
		// time.
		for i, j := range jobs {
			switch {
			case i%4 == 0:
				next := MustApply(t, s, j, schedule("w-1"))
				if i%32 == 0 {
					next = MustApply(t, s, next, func(n *job.Job) { n.State = job.Completed; n.FinishedAt = T0.Add(time.Duration(i) * time.Minute) })
				}
				jobs[i] = next
			case i%6 == 1:
				jobs[i] = MustApply(t, s, j, func(n *job.Job) { n.State = job.Cancelled; n.FinishedAt = T0.Add(time.Duration(i) * 30 * time.Second) })
			case i%17 == 2:
				jobs[i] = MustApply(t, s, j, func(n *job.Job) { n.State = job.Cancelled })
			}
		}
		// A window that starts inside a minute: the jobs that finished in
		// that minute before it are out.
		window := T0.Add(40*time.Minute + 10*time.Second)
		for name, f := range map[string]job.Filter{
			"None":            {},
			"State":           {State: job.Scheduled},
			"StateTerminal":   {State: job.Completed},
			"Tenant":          {Tenant: "team-x"},
			"TenantDefault":   {Tenant: job.DefaultTenant},
			"Label":           {Labels: map[string]string{"env": "prod"}},
			"Labels":          {Labels: map[string]string{"env": "prod", "shard": "1"}},
			"LabelNone":       {Labels: map[string]string{"env": "staging"}},
			"Name":            {Name: "name-3"},
			"Array":           {Array: arrayX},
			"TenantState":     {Tenant: "team-x", State: job.Scheduled},
			"NameLabel":       {Name: "name-2", Labels: map[string]string{"shard": "2"}},
			"ArrayState":      {Array: arrayX, State: job.Pending},
			"LabelTenant":     {Labels: map[string]string{"env": "test"}, Tenant: "team-x"},
			"Everything":      {Array: arrayX, Name: "name-0", Labels: map[string]string{"env": "dev"}, Tenant: job.DefaultTenant, State: job.Pending},
			"Nothing":         {Tenant: "team-x", Name: "name-0", Labels: map[string]string{"shard": "0"}, State: job.Completed, Array: arrayX},
			"StatePending":    {State: job.Pending},
			"NameTenantState": {Name: "name-4", Tenant: job.DefaultTenant, State: job.Pending},
			"Finished":        {Finished: true},
			"FinishedTenant":  {Finished: true, Tenant: "team-x"},
			"FinishedPending": {Finished: true, State: job.Pending},
			"Window":          {NotFinishedBefore: window},
			"WindowAll":       {NotFinishedBefore: T0.Add(-time.Hour)},
			"WindowNone":      {NotFinishedBefore: T0.Add(1000 * time.Hour)},
			"WindowFinished":  {NotFinishedBefore: window, Finished: true},
			"WindowCancelled": {NotFinishedBefore: window, State: job.Cancelled},
			"WindowPending":   {NotFinishedBefore: window, State: job.Pending},
			"WindowTenant":    {NotFinishedBefore: window, Tenant: "team-x"},
			"WindowName":      {NotFinishedBefore: window, Name: "name-5"},
			"WindowLabel":     {NotFinishedBefore: window, Labels: map[string]string{"env": "dev"}},
			"Glob":            {Name: "name-[1-3]"},
			"GlobPrefix":      {Name: "name-*"},
			"GlobQuestion":    {Name: "?ame-6"},
			"GlobNone":        {Name: "zzz*"},
			"GlobWindow":      {Name: "name-[0-2]", NotFinishedBefore: window},
			"GlobTenant":      {Name: "*-4", Tenant: "team-x"},
			"BadPattern":      {Name: "name-["},
		} {
			t.Run(name, func(t *testing.T) {
				want := matching(jobs, f)
				n, exact, err := s.Count(t.Context(), f, 1<<30)
				require.NoError(t, err)
				require.True(t, exact)
				require.Equal(t, len(want), n, "count")
				for _, desc := range []bool{false, true} {
					f.Desc = desc
					want := slices.Clone(want)
					if desc {
						slices.Reverse(want)
					}
					for _, limit := range []int{1, 3, 1000} {
						require.Equal(t, want, listed(t, s, f, limit), "desc %v limit %d", desc, limit)
					}
					if len(want) > 2 {
						f.After = want[1]
						require.Equal(t, want[2:], listed(t, s, f, 2), "desc %v after %s", desc, want[1])
						f.After = ""
					}
				}
			})
		}
	})
	t.Run("Since", func(t *testing.T) { testListSince(t, open) })
	t.Run("Finish", func(t *testing.T) {
		// A job is in the window while it runs, and after it finished for
		// as long as its finish time is in it; a retry takes it out of
		// the finished ones.
		s := open(t)
		j := mustInserted(t, s, NewJob(1))
		MustInsert(t, s, NewJob(2))
		window := func(from time.Time) []string {
			return listed(t, s, job.Filter{NotFinishedBefore: from, Desc: true}, 10)
		}
		require.Equal(t, []string{ID(2), ID(1)}, window(T0))
		j = MustApply(t, s, j, schedule("w-1"))
		j = MustApply(t, s, j, func(n *job.Job) { n.State = job.Failed; n.FinishedAt = T0.Add(time.Minute) })
		require.Equal(t, []string{ID(2), ID(1)}, window(T0.Add(time.Minute)))
		require.Equal(t, []string{ID(2)}, window(T0.Add(time.Minute+time.Nanosecond)))
		require.Equal(t, []string{ID(1)}, listed(t, s, job.Filter{Finished: true}, 10))
		_, err := s.DeleteFinished(t.Context(), T0.Add(time.Hour), 10, nil)
		require.NoError(t, err)
		require.Equal(t, []string{ID(2)}, window(T0))
		require.Empty(t, listed(t, s, job.Filter{Finished: true}, 10))
	})
	t.Run("JobsByPrefix", func(t *testing.T) {
		s := open(t)
		MustPutTenant(t, s, NewTenant("team-x"))
		jobs := newJobs(1, 25)
		jobs[11].Spec.Tenant = "team-x"
		MustInsert(t, s, jobs...)
		refs, err := s.JobsByPrefix(t.Context(), ID(12)[:25], nil, 100)
		require.NoError(t, err)
		require.Equal(t, []job.IDRef{{ID: ID(10), Tenant: job.DefaultTenant}, {ID: ID(11), Tenant: job.DefaultTenant},
			{ID: ID(12), Tenant: "team-x"}, {ID: ID(13), Tenant: job.DefaultTenant}}, refs[:4])
		require.Len(t, refs, 10, "01HZ…1 holds 10 to 19")
		refs, err = s.JobsByPrefix(t.Context(), "01HZ", nil, 3)
		require.NoError(t, err)
		require.Len(t, refs, 3, "at most max")
		refs, err = s.JobsByPrefix(t.Context(), ID(7), nil, 3)
		require.NoError(t, err)
		require.Equal(t, []job.IDRef{{ID: ID(7), Tenant: job.DefaultTenant}}, refs, "a whole id")
		refs, err = s.JobsByPrefix(t.Context(), "01HY", nil, 3)
		require.NoError(t, err)
		require.Empty(t, refs)
	})
	t.Run("JobsByPrefixOfTenants", func(t *testing.T) {
		// Only the tenants' jobs count against max: the ids of others
		// before them in the range change nothing.
		s := open(t)
		MustPutTenant(t, s, NewTenant("team-x"))
		MustPutTenant(t, s, NewTenant("team-y"))
		jobs := newJobs(1, 400)
		jobs[7].Spec.Tenant = "team-x"
		jobs[299].Spec.Tenant = "team-y"
		jobs[349].Spec.Tenant = "team-x"
		MustInsert(t, s, jobs...)
		refs, err := s.JobsByPrefix(t.Context(), "01HZ", []string{"team-x"}, 3)
		require.NoError(t, err)
		require.Equal(t, []job.IDRef{{ID: ID(8), Tenant: "team-x"}, {ID: ID(350), Tenant: "team-x"}}, refs)
		refs, err = s.JobsByPrefix(t.Context(), "01HZ", []string{"team-y", "team-x"}, 2)
		require.NoError(t, err)
		require.Equal(t, []job.IDRef{{ID: ID(8), Tenant: "team-x"}, {ID: ID(300), Tenant: "team-y"}}, refs, "merged in id order, at most max")
		refs, err = s.JobsByPrefix(t.Context(), ID(350), []string{"team-x"}, 3)
		require.NoError(t, err)
		require.Equal(t, []job.IDRef{{ID: ID(350), Tenant: "team-x"}}, refs, "a whole id")
		refs, err = s.JobsByPrefix(t.Context(), ID(20)[:25], []string{"team-x"}, 3)
		require.NoError(t, err)
		require.Empty(t, refs, "none of theirs in the range")
		refs, err = s.JobsByPrefix(t.Context(), ID(290)[:25], []string{job.DefaultTenant}, 20)
		require.NoError(t, err)
		want := []job.IDRef{}
		for n := 290; n < 300; n++ {
			want = append(want, job.IDRef{ID: ID(n), Tenant: job.DefaultTenant})
		}
		require.Equal(t, want, refs, "from the middle of the tenant's run")
		refs, err = s.JobsByPrefix(t.Context(), "01HZ", []string{"nobody"}, 3)
		require.NoError(t, err)
		require.Empty(t, refs)
	})
	t.Run("Transitions", func(t *testing.T) {
		// A job is listed under its current state only, at every step.
		s := open(t)
		j := NewJob(1)
		MustInsert(t, s, j, NewJob(2))
		states := []job.State{job.Pending, job.Scheduled, job.Running, job.Completed}
		under := func(t *testing.T, want job.State) {
			t.Helper()
			for _, st := range states {
				got := listed(t, s, job.Filter{State: st, Name: j.Spec.Name}, 10)
				if st == want {
					require.Equal(t, []string{j.ID}, got, "listed under %s", st)
				} else {
					require.Empty(t, got, "listed under %s while %s", st, want)
				}
			}
			require.Equal(t, []string{j.ID}, listed(t, s, job.Filter{Name: j.Spec.Name}, 10))
		}
		under(t, job.Pending)
		j = MustApply(t, s, j, schedule("w-1"))
		under(t, job.Scheduled)
		j = MustApply(t, s, j, func(n *job.Job) { n.State = job.Running })
		under(t, job.Running)
		j = MustApply(t, s, j, func(n *job.Job) { n.CancelRequested = "user" })
		under(t, job.Running)
		j = MustApply(t, s, j, func(n *job.Job) { n.State = job.Completed; n.FinishedAt = T0 })
		under(t, job.Completed)
		require.Equal(t, []string{ID(2)}, listed(t, s, job.Filter{State: job.Pending}, 10))
	})
	t.Run("Retry", func(t *testing.T) {
		s := open(t)
		j := MustApply(t, s, mustInserted(t, s, NewJob(1)), schedule("w-1"))
		MustApply(t, s, j, func(n *job.Job) { n.State = job.Pending; n.Attempt = 2; n.Worker = "" })
		require.Equal(t, []string{ID(1)}, listed(t, s, job.Filter{State: job.Pending}, 10))
		require.Empty(t, listed(t, s, job.Filter{State: job.Scheduled}, 10))
	})
	t.Run("SpecChange", func(t *testing.T) {
		// A change of the indexed spec fields moves the job's entries.
		s := open(t)
		MustPutTenant(t, s, NewTenant("team-x"))
		j := mustInserted(t, s, NewJob(1))
		MustApply(t, s, j, func(n *job.Job) {
			n.State = job.Scheduled
			n.Spec.Name = "renamed"
			n.Spec.Tenant = "team-x"
			n.Spec.Labels = map[string]string{"parity": "odd", "added": "yes"}
		})
		for f, want := range map[*job.Filter][]string{
			{Name: "job-1"}:                              nil,
			{Name: "renamed"}:                            {ID(1)},
			{Tenant: job.DefaultTenant}:                  nil,
			{Tenant: "team-x"}:                           {ID(1)},
			{Labels: map[string]string{"n": "1"}}:        nil,
			{Labels: map[string]string{"added": "yes"}}:  {ID(1)},
			{Labels: map[string]string{"parity": "odd"}}: {ID(1)},
		} {
			require.Equal(t, want, listed(t, s, *f, 10), "%+v", *f)
		}
	})
	t.Run("Prev", func(t *testing.T) {
		// An update that names the version its writer read takes the old
		// keys from it; one whose Prev is no longer the stored version
		// (a label was added since) still moves the stored keys.
		s := open(t)
		v1 := mustInserted(t, s, NewJob(1))
		v2 := MustApply(t, s, v1, func(n *job.Job) { n.State = job.Scheduled })
		next := v2.Clone()
		next.State = job.Running
		errs, err := s.Apply(t.Context(), []job.Update{job.Change(v2, next)})
		require.NoError(t, err)
		require.NoError(t, errs[0])
		renamed := MustApply(t, s, next, func(n *job.Job) {
			n.Spec.Name = "renamed"
			n.Spec.Labels = map[string]string{"extra": "yes"}
		})
		stale := next.Clone() // version 3, without the label; the store holds 4
		done := renamed.Clone()
		done.State, done.Spec.Labels = job.Completed, nil
		errs, err = s.Apply(t.Context(), []job.Update{{Expect: renamed.Expected(), Next: done, Prev: stale}})
		require.NoError(t, err)
		require.NoError(t, errs[0])
		require.Equal(t, []string{ID(1)}, listed(t, s, job.Filter{State: job.Completed, Name: "renamed"}, 10))
		require.Empty(t, listed(t, s, job.Filter{Name: "job-1"}, 10))
		require.Empty(t, listed(t, s, job.Filter{State: job.Running}, 10))
		require.Empty(t, listed(t, s, job.Filter{Labels: map[string]string{"extra": "yes"}}, 10), "the stored keys moved, not stale Prev's")
	})
	t.Run("Deleted", func(t *testing.T) {
		// DeleteFinished takes the job out of every index.
		s := open(t)
		j := mustInserted(t, s, NewJob(1))
		MustInsert(t, s, NewJob(2))
		Finish(t, s, j, job.Completed, T0)
		_, err := s.DeleteFinished(t.Context(), T0.Add(time.Second), 10, nil)
		require.NoError(t, err)
		for _, f := range []job.Filter{{State: job.Completed}, {Name: "job-1"}, {Labels: map[string]string{"n": "1"}},
			{Tenant: job.DefaultTenant, Labels: map[string]string{"parity": "odd"}}} {
			require.Empty(t, listed(t, s, f, 10), "%+v", f)
		}
		require.Equal(t, []string{ID(2)}, listed(t, s, job.Filter{Tenant: job.DefaultTenant}, 10))
		MustInsert(t, s, NewJob(1))
		require.Equal(t, []string{ID(1)}, listed(t, s, job.Filter{Name: "job-1", State: job.Pending}, 10))
	})
	t.Run("Pipeline", func(t *testing.T) {
		s := open(t)
		p, jobs := NewPipeline(1, 1)
		MustInsertPipeline(t, s, p, jobs...)
		MustInsert(t, s, NewJob(10))
		require.Equal(t, ids(jobs), listed(t, s, job.Filter{Pipeline: p.ID}, 2))
		require.Equal(t, ids(jobs[1:]), listed(t, s, job.Filter{Pipeline: p.ID, State: job.Pending, After: jobs[0].ID}, 1))
	})
	t.Run("Bytes", func(t *testing.T) {
		// Values that share a prefix or hold separators stay apart.
		s := open(t)
		jobs := newJobs(1, 5)
		jobs[0].Spec.Name, jobs[1].Spec.Name, jobs[2].Spec.Name = "a", "a\x00b", "ab"
		jobs[3].Spec.Labels = map[string]string{"k": "v=w"}
		jobs[4].Spec.Labels = map[string]string{"k": "v", "w": ""}
		MustInsert(t, s, jobs...)
		for f, want := range map[*job.Filter][]string{
			{Name: "a"}:                             {ID(1)},
			{Name: "a\x00b"}:                        {ID(2)},
			{Name: "a\x00"}:                         nil,
			{Labels: map[string]string{"k": "v"}}:   {ID(5)},
			{Labels: map[string]string{"k": "v=w"}}: {ID(4)},
			{Labels: map[string]string{"w": ""}}:    {ID(5)},
		} {
			require.Equal(t, want, listed(t, s, *f, 10), "%+q", *f)
		}
	})
	t.Run("ContextDone", func(t *testing.T) {
		s := open(t)
		MustInsert(t, s, newJobs(1, 3)...)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, _, err := s.List(ctx, job.Filter{Name: "job-1"})
		require.ErrorIs(t, err, context.Canceled)
	})
}

// mustInserted inserts j and returns it.
func mustInserted(t *testing.T, s cluster.Store, j *job.Job) *job.Job {
	t.Helper()
	MustInsert(t, s, j)
	return j
}
