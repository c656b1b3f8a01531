package store

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// runAttempt takes a stored Pending job through Scheduled and Running to
// the end of its attempt at end, with the usage an agent reports, as the
// cluster does, and returns the stored job.
func runAttempt(t *testing.T, db *DB, j *job.Job, end time.Time, u job.Usage, exit int) *job.Job {
	t.Helper()
	j = storetest.MustApply(t, db, j, func(n *job.Job) { n.State, n.Worker, n.ScheduledAt = job.Scheduled, "w-1", end.Add(-time.Hour) })
	j = storetest.MustApply(t, db, j, func(n *job.Job) { n.State, n.StartedAt = job.Running, end.Add(-u.Wall) })
	next := scheduler.Finished(j, scheduler.Finish{JobID: j.ID, Attempt: j.Attempt, Outcome: scheduler.Exited,
		ExitCode: exit, Usage: u, Ended: end}, end.Add(time.Second))
	errs, err := db.Apply(context.Background(), []job.Update{job.Change(j, next)})
	require.NoError(t, err)
	require.NoError(t, errs[0])
	return next
}

func usageJob(n int, tenant, owner string, slots int64, labels map[string]string) *job.Job {
	j := storetest.NewJob(n)
	j.Spec.Tenant, j.Spec.Owner, j.Spec.Resources.Slots, j.Spec.Labels = tenant, owner, slots, labels
	return j
}

func TestUsage(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t)
	storetest.MustPutTenant(t, db, storetest.NewTenant("team-a"), storetest.NewTenant("team-b"))
	day1 := time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)
	day2 := day1.Add(24 * time.Hour)
	jobs := []*job.Job{
		usageJob(1, "team-a", "alice", 1, map[string]string{"proj": "x", "env": "prod"}),
		usageJob(2, "team-a", "bob", 2, map[string]string{"proj": "y"}),
		usageJob(3, "team-b", "alice", 4, map[string]string{"proj": "x"}),
	}
	jobs[1].Spec.Retries = 1
	storetest.MustInsert(t, db, jobs...)

	u := func(wall, cpu time.Duration, rss int64) job.Usage {
		return job.Usage{Wall: wall, CPUTime: cpu, MaxRSSKiB: rss}
	}
	runAttempt(t, db, jobs[0], day1, u(10*time.Second, 2*time.Second+1500*time.Nanosecond, 100), 0)
	// Job 2 fails once (a retry: back to Pending), then completes.
	retry := runAttempt(t, db, jobs[1], day1, u(3*time.Second, time.Second, 300), 1)
	require.Equal(t, job.Pending, retry.State)
	runAttempt(t, db, retry, day2, u(5*time.Second, 4*time.Second, 200), 0)
	runAttempt(t, db, jobs[2], day2, u(7*time.Second, 6*time.Second, 50), 0)

	query := func(q job.UsageQuery) []job.UsageRow {
		t.Helper()
		if q.From.IsZero() {
			q.From, q.To = day1, day2
		}
		rows, err := db.Usage(ctx, q)
		require.NoError(t, err)
		return rows
	}
	s := func(n, wall, cpu, slot, rss int64) job.UsageSums {
		return job.UsageSums{Attempts: n, WallMicros: wall * 1e6, CPUMicros: cpu * 1e6, SlotMicros: slot * 1e6, MaxRSSKiB: rss}
	}
	a := s(3, 18, 7, 26, 300)
	a.CPUMicros += 1 // 1.5 µs truncated to 1
	t.Run("ByTenant", func(t *testing.T) {
		require.Equal(t, []job.UsageRow{{Group: "team-a", UsageSums: a}, {Group: "team-b", UsageSums: s(1, 7, 6, 28, 50)}},
			query(job.UsageQuery{}))
	})
	t.Run("ByDay", func(t *testing.T) {
		d1 := s(2, 13, 3, 16, 300)
		d1.CPUMicros++
		require.Equal(t, []job.UsageRow{{Group: "2026-03-14", UsageSums: d1}, {Group: "2026-03-15", UsageSums: s(2, 12, 10, 38, 200)}},
			query(job.UsageQuery{Group: job.ByDay}))
		require.Equal(t, []job.UsageRow{{Group: "2026-03-15", UsageSums: s(1, 7, 6, 28, 50)}},
			query(job.UsageQuery{Group: job.ByDay, Tenants: []string{"team-b"}}))
	})
	t.Run("ByUser", func(t *testing.T) {
		al := s(2, 17, 8, 38, 100)
		al.CPUMicros++
		require.Equal(t, []job.UsageRow{{Group: "alice", UsageSums: al}, {Group: "bob", UsageSums: s(2, 8, 5, 16, 300)}},
			query(job.UsageQuery{Group: job.ByUser}))
	})
	t.Run("ByLabel", func(t *testing.T) {
		x := s(2, 17, 8, 38, 100)
		x.CPUMicros++
		require.Equal(t, []job.UsageRow{{Group: "x", UsageSums: x}, {Group: "y", UsageSums: s(2, 8, 5, 16, 300)}},
			query(job.UsageQuery{Group: job.ByLabel, GroupKey: "proj"}))
	})
	t.Run("LabelFilter", func(t *testing.T) {
		x := s(1, 10, 2, 10, 100)
		x.CPUMicros++
		require.Equal(t, []job.UsageRow{{Group: "team-a", UsageSums: x}, {Group: "team-b", UsageSums: s(1, 7, 6, 28, 50)}},
			query(job.UsageQuery{LabelKey: "proj", LabelValue: "x"}))
		require.Empty(t, query(job.UsageQuery{LabelKey: "proj", LabelValue: "z"}))
	})
	t.Run("Days", func(t *testing.T) {
		require.Len(t, query(job.UsageQuery{From: day2, To: day2, Group: job.ByDay}), 1)
		require.Empty(t, query(job.UsageQuery{From: day2.Add(24 * time.Hour), To: day2.Add(48 * time.Hour)}))
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		for field, q := range map[string]job.UsageQuery{
			"group_by": {From: day1, To: day2, Group: job.ByUser, LabelKey: "proj", LabelValue: "x"},
			"to":       {From: day2, To: day1},
			"from":     {To: day1},
			"tenant":   {From: day1, To: day2, Tenants: []string{"Bad Name"}},
		} {
			_, err := db.Usage(ctx, q)
			var fe *job.FieldError
			require.ErrorAs(t, err, &fe, field)
			require.Equal(t, field, fe.Field)
		}
	})
	t.Run("Attempts", func(t *testing.T) {
		q := job.UsageQuery{From: day1, To: day2}
		var all []*job.AttemptUsage
		cursor := ""
		for {
			page, next, err := db.UsageAttempts(ctx, q, cursor, 2)
			require.NoError(t, err)
			all = append(all, page...)
			if next == "" {
				break
			}
			cursor = next
		}
		require.Len(t, all, 4)
		var sum job.UsageSums
		for _, r := range all {
			sum.Add(r.Sums())
		}
		total := a
		total.Add(s(1, 7, 6, 28, 50))
		require.Equal(t, total, sum, "per-attempt records add up to the roll-ups")
		require.Equal(t, storetest.ID(2), all[1].JobID)
		require.Equal(t, 1, all[1].Attempt)
		require.Equal(t, job.Pending, all[1].State)
		require.Equal(t, "bob", all[1].Owner)
		page, _, err := db.UsageAttempts(ctx, job.UsageQuery{From: day1, To: day2, Tenants: []string{"team-b"}}, "", 10)
		require.NoError(t, err)
		require.Len(t, page, 1)
		require.Equal(t, storetest.ID(3), page[0].JobID)
	})
	t.Run("OutlivesJobs", func(t *testing.T) {
		ids, err := db.DeleteFinished(ctx, day2.Add(48*time.Hour), 100, nil)
		require.NoError(t, err)
		require.Len(t, ids, 3)
		require.Len(t, query(job.UsageQuery{}), 2)
	})
	t.Run("Retention", func(t *testing.T) {
		// Day 1's records and roll-ups go, a batch of 3 at a time.
		total := 0
		for {
			n, err := db.DeleteUsageBefore(ctx, day2, 3)
			require.NoError(t, err)
			total += n
			if n < 3 {
				break
			}
		}
		// day 1: 2 records, 2 tenant, 2 user (alice, bob), 3 label roll-ups.
		require.Equal(t, 2+1+2+3, total)
		require.Equal(t, []job.UsageRow{{Group: "2026-03-15", UsageSums: s(2, 12, 10, 38, 200)}},
			query(job.UsageQuery{Group: job.ByDay}))
		left, _, err := db.UsageAttempts(ctx, job.UsageQuery{From: day1, To: day2}, "", 10)
		require.NoError(t, err)
		require.Len(t, left, 2)
	})
}

// TestUsageOnlyFromTheEndingUpdate checks that the usage a job carries from
// an earlier attempt is not recorded again by another write.
func TestUsageOnlyFromTheEndingUpdate(t *testing.T) {
	ctx := context.Background()
	db := MustOpen(t)
	day := time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)
	j := usageJob(1, "default", "", 1, nil)
	j.Spec.Retries = 1
	storetest.MustInsert(t, db, j)
	j = runAttempt(t, db, j, day, job.Usage{Wall: time.Second}, 1)
	// The retry is cancelled while Scheduled: no process ran, nothing is
	// recorded, and attempt 1's usage is not counted twice.
	j = storetest.MustApply(t, db, j, func(n *job.Job) { n.State, n.Worker = job.Scheduled, "w-1" })
	storetest.MustApply(t, db, j, func(n *job.Job) { n.State, n.FinishedAt = job.Cancelled, day })
	rows, err := db.Usage(ctx, job.UsageQuery{From: day, To: day})
	require.NoError(t, err)
	require.Equal(t, []job.UsageRow{{Group: "default", UsageSums: job.UsageSums{Attempts: 1, WallMicros: 1e6, SlotMicros: 1e6}}}, rows)
}
