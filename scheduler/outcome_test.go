package scheduler

import (
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// TestEndedAt: a job's finished time is its agent's, within what the
// server knows: not before the attempt started, not after the report.
func TestEndedAt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	now := t0.Add(time.Hour)
	started := &job.Job{ScheduledAt: t0, StartedAt: t0.Add(time.Second)}
	neverStarted := &job.Job{ScheduledAt: t0}
	for _, tc := range []struct {
		name  string
		cur   *job.Job
		ended time.Time
		want  time.Time
	}{
		{"Agent", started, t0.Add(10 * time.Minute), t0.Add(10 * time.Minute)},
		{"NoAgentTime", started, time.Time{}, now},
		{"AheadOfServer", started, now.Add(time.Millisecond), now},
		{"FarAhead", started, now.Add(24 * time.Hour), now},
		{"BeforeStart", started, t0, t0.Add(time.Second)},
		{"NeverStarted", neverStarted, t0.Add(time.Second), t0.Add(time.Second)},
		{"BeforeScheduled", neverStarted, t0.Add(-time.Hour), t0},
		{"StartedAfterReport", &job.Job{StartedAt: now.Add(time.Second)}, t0, now},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := EndedAt(tc.cur, Finish{Ended: tc.ended}, now); !got.Equal(tc.want) {
				t.Errorf("EndedAt = %s, want %s", got, tc.want)
			}
			cur := tc.cur.Clone()
			cur.State, cur.Attempt = job.Running, 1
			if got := Finished(cur, Finish{Outcome: Exited, Ended: tc.ended}, now).FinishedAt; !got.Equal(tc.want) {
				t.Errorf("Finished(…).FinishedAt = %s, want %s", got, tc.want)
			}
		})
	}
}
