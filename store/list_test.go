package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// finishAll moves jobs from … to (stored by insertN, version 1) to state
// at fin, a thousand to a commit.
func finishAll(tb testing.TB, db *DB, from, to int, state job.State, fin time.Time) {
	tb.Helper()
	for lo := from; lo <= to; lo += 1000 {
		var us []job.Update
		for n := lo; n <= min(lo+999, to); n++ {
			cur := storetest.NewJob(n)
			cur.Version = 1
			next := cur.Clone()
			next.State, next.FinishedAt = state, fin
			us = append(us, job.Change(cur, next))
		}
		errs, err := db.Apply(context.Background(), us)
		require.NoError(tb, err)
		for _, e := range errs {
			require.NoError(tb, e)
		}
	}
}

func TestListWindowCost(t *testing.T) {
	// 5,000 jobs: 4,990 cancelled long ago, 5 pending, 5 cancelled a
	// minute ago. The window newest first visits what it lists, not the
	// old ones, and counts them exactly; a plain listing newest first
	// visits its page.
	db := MustOpenPath(t, filepath.Join(t.TempDir(), "hodei.db"), Options{NoSync: true})
	const total = 5000
	insertN(t, db, 1, total, nil)
	now := storetest.T0.Add(48 * time.Hour)
	finishAll(t, db, 1, 2000, job.Cancelled, storetest.T0)
	finishAll(t, db, 2001, 2005, job.Cancelled, now.Add(-time.Minute))
	finishAll(t, db, 2006, 4995, job.Cancelled, storetest.T0)
	hook := func(n int) { t.Errorf("visited %d keys for a page", n) }
	db.listed.Store(&hook)
	t.Cleanup(func() { db.listed.Store(nil) })

	window := job.Filter{NotFinishedBefore: now.Add(-time.Hour), Desc: true}
	got := listIDs(t, db, window)
	want := []string{storetest.ID(5000), storetest.ID(4999), storetest.ID(4998), storetest.ID(4997), storetest.ID(4996),
		storetest.ID(2005), storetest.ID(2004), storetest.ID(2003), storetest.ID(2002), storetest.ID(2001)}
	require.Equal(t, want, got)
	n, exact, err := db.Count(t.Context(), window, 1000)
	require.NoError(t, err)
	require.True(t, exact)
	require.Equal(t, 10, n)

	window.Limit, window.After = 3, storetest.ID(4997)
	require.Equal(t, []string{storetest.ID(4996), storetest.ID(2005), storetest.ID(2004)}, listIDs(t, db, window))

	page := listIDs(t, db, job.Filter{Desc: true, Limit: 3})
	require.Equal(t, []string{storetest.ID(5000), storetest.ID(4999), storetest.ID(4998)}, page)
	page = listIDs(t, db, job.Filter{Desc: true, Limit: 2, After: storetest.ID(3)})
	require.Equal(t, []string{storetest.ID(2), storetest.ID(1)}, page)
}

func TestCountBudget(t *testing.T) {
	// A count that would cost more than its budget stops and says so,
	// with what it counted as a lower bound.
	db := MustOpenPath(t, filepath.Join(t.TempDir(), "hodei.db"), Options{NoSync: true})
	insertN(t, db, 1, 3000, nil)
	for _, tc := range []struct {
		name string
		f    job.Filter
	}{
		{"State", job.Filter{State: job.Pending}},
		{"All", job.Filter{}},
		{"Checked", job.Filter{State: job.Pending, Tenant: job.DefaultTenant}},
		{"Read", job.Filter{Name: "job-*"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, exact, err := db.Count(t.Context(), tc.f, 1<<30)
			require.NoError(t, err)
			require.True(t, exact)
			require.Equal(t, 3000, n)
			n, exact, err = db.Count(t.Context(), tc.f, 500)
			require.NoError(t, err)
			require.False(t, exact)
			require.Less(t, n, 3000)
			require.LessOrEqual(t, n, 500+chunkIDs, "at most a chunk past the budget")
		})
	}
}

func TestListNamePattern(t *testing.T) {
	// A pattern whose literal prefix many names share is not merged
	// value by value but checked on each job; either way the answer is
	// what Match says.
	db := MustOpenPath(t, filepath.Join(t.TempDir(), "hodei.db"), Options{NoSync: true})
	insertN(t, db, 1, 2000, func(j *job.Job) { j.Spec.Name = fmt.Sprintf("n-%d", j.CreatedAt.Sub(storetest.T0)/time.Second) })
	for _, tc := range []struct {
		pattern string
		want    int
		merged  bool
	}{
		{"n-19??", 100, true},
		{"n-1*", 1111, false},
		{"*-7", 1, false},
		{"n-[12]?", 20, false}, // every name starts with "n-"
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			f := job.Filter{Name: tc.pattern, Desc: true, Limit: 1000}
			var p *listPlan
			require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error { p = planList(tx, f); return nil }))
			require.Equal(t, tc.merged, !p.residual, "merged value by value")
			var all []string
			for {
				page, next, err := db.List(t.Context(), f)
				require.NoError(t, err)
				for _, j := range page {
					require.True(t, job.NameMatches(tc.pattern, j.Spec.Name), j.Spec.Name)
					all = append(all, j.ID)
				}
				if next == "" {
					break
				}
				f.After = next
			}
			require.Len(t, all, tc.want)
			require.IsDecreasing(t, all)
		})
	}
}

func TestApplyEmptiesIndex(t *testing.T) {
	// Every job of a new store cancelled in one commit: the pending
	// chunks of the state index go, and the cancelled ones are put in a
	// bucket whose pages are all empty until the commit.
	db := MustOpenPath(t, filepath.Join(t.TempDir(), "hodei.db"), Options{NoSync: true})
	storetest.FillHistory(t, db, 3000, 1000, 1000, time.Now())
	n, _, err := db.Count(t.Context(), job.Filter{State: job.Cancelled}, 1<<30)
	require.NoError(t, err)
	require.Equal(t, 2000, n)
}

func TestApplyEmptiesLeaves(t *testing.T) {
	// A commit that deletes every chunk of a leaf page (here: most of
	// the pending jobs) and then looks a chunk up behind it: bbolt's
	// cursor steps into the emptied page, which must neither hang the
	// commit (Last over a bucket of empty pages) nor misplace an id
	// (Prev into one). The file is checked, indexes included, at the end.
	db := MustOpenPath(t, filepath.Join(t.TempDir(), "hodei.db"), Options{NoSync: true})
	insertN(t, db, 1, 3000, nil)
	j := storetest.NewJob(2500)
	j.Version = 1
	scheduled := storetest.MustApply(t, db, j, func(n *job.Job) { n.State, n.Worker = job.Scheduled, "w" })
	var us []job.Update
	for n := 500; n <= 2000; n++ {
		cur := storetest.NewJob(n)
		cur.Version = 1
		next := cur.Clone()
		next.State, next.FinishedAt = job.Cancelled, storetest.T0
		us = append(us, job.Change(cur, next))
	}
	back := scheduled.Clone()
	back.State, back.Attempt, back.Worker = job.Pending, 2, ""
	us = append(us, job.Change(scheduled, back))
	errs, err := db.Apply(t.Context(), us)
	require.NoError(t, err)
	for _, e := range errs {
		require.NoError(t, e)
	}
	n, _, err := db.Count(t.Context(), job.Filter{State: job.Pending}, 1<<30)
	require.NoError(t, err)
	require.Equal(t, 3000-1501, n)

	// Every job of the store cancelled in one commit: the state index
	// empties but for the one value it adds to.
	finishAll(t, db, 1, 499, job.Cancelled, storetest.T0)
	us = nil
	for n := 2001; n <= 3000; n++ {
		cur := storetest.NewJob(n)
		cur.Version = 1
		if n == 2500 {
			cur = back
		}
		next := cur.Clone()
		next.State, next.FinishedAt = job.Cancelled, storetest.T0
		us = append(us, job.Change(cur, next))
	}
	errs, err = db.Apply(t.Context(), us)
	require.NoError(t, err)
	for _, e := range errs {
		require.NoError(t, e)
	}
	n, _, err = db.Count(t.Context(), job.Filter{State: job.Cancelled}, 1<<30)
	require.NoError(t, err)
	require.Equal(t, 3000, n)
}

func TestCountNamePatternInWindow(t *testing.T) {
	// A name pattern with a window (jobs ls by default) walks the few
	// names the pattern selects, not every job in the window: its count
	// is exact within a small budget.
	db := MustOpenPath(t, filepath.Join(t.TempDir(), "hodei.db"), Options{NoSync: true})
	insertN(t, db, 1, 3000, func(j *job.Job) { j.Spec.Name = fmt.Sprintf("n-%d", j.CreatedAt.Sub(storetest.T0)/time.Second) })
	f := job.Filter{Name: "n-29??", NotFinishedBefore: storetest.T0.Add(48 * time.Hour)}
	n, exact, err := db.Count(t.Context(), f, 5000)
	require.NoError(t, err)
	require.True(t, exact, "counted %d", n)
	require.Equal(t, 100, n)
	f.Desc, f.Limit = true, 1000
	require.Len(t, listIDs(t, db, f), 100)
}
