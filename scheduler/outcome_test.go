package scheduler

import (
	"testing"

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
