package scheduler

import (
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// TestFinishedKeepsTheSignal checks that the signal an agent reports is
// recorded with the attempt's end (hodei run exits 128+N from it), kept
// across a retry as the exit code is, and cleared when no process ended.
func TestFinishedKeepsTheSignal(t *testing.T) {
	running := func(retries int) *job.Job {
		j := pendingJob(1, "default", 1)
		j.State, j.Worker, j.Spec.Retries = job.Running, "w", retries
		return j
	}
	for _, tc := range []struct {
		name       string
		retries    int
		f          Finish
		wantState  job.State
		wantCode   int
		wantSignal int
		wantReason string
	}{
		{"KilledByItself", 0, Finish{Outcome: Exited, ExitCode: -1, Signal: 9, Reason: "signal: killed"},
			job.Failed, -1, 9, "signal: killed"},
		{"Terminated", 0, Finish{Outcome: Exited, ExitCode: -1, Signal: 15, Reason: "signal: terminated"},
			job.Failed, -1, 15, "signal: terminated"},
		{"TimedOut", 0, Finish{Outcome: TimedOut, ExitCode: -1, Signal: 15}, job.Failed, -1, 15, ReasonTimeout},
		{"Retried", 1, Finish{Outcome: Exited, ExitCode: -1, Signal: 9, Reason: "signal: killed"},
			job.Pending, -1, 9, ""},
		{"StartFailed", 0, Finish{Outcome: StartFailed, Signal: 9, Reason: "no such file"},
			job.Failed, -1, 0, "start: no such file"},
		{"Lost", 0, Finish{Outcome: Lost, Signal: 9}, job.Failed, -1, 0, ReasonWorkerLost},
		{"ExitCode", 0, Finish{Outcome: Exited, ExitCode: 3}, job.Failed, 3, 0, "exit code 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := running(tc.retries)
			tc.f.JobID, tc.f.Attempt = cur.ID, cur.Attempt
			n := Finished(cur, tc.f, t0)
			if n.State != tc.wantState || n.ExitCode != tc.wantCode || n.Signal != tc.wantSignal {
				t.Errorf("state %s, exit code %d, signal %d; want %s, %d, %d", n.State, n.ExitCode, n.Signal,
					tc.wantState, tc.wantCode, tc.wantSignal)
			}
			if tc.wantReason != "" && n.Reason != tc.wantReason {
				t.Errorf("reason %q, want %q", n.Reason, tc.wantReason)
			}
		})
	}
}

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
