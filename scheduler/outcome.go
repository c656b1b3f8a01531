package scheduler

import (
	"fmt"
	"strings"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// Reasons recorded on jobs. Tests and users match on them.
const (
	ReasonTimeout       = "timeout"
	ReasonWorkerLost    = "worker lost"
	ReasonUserCancel    = "cancelled by user"
	reasonStaleAttempt  = "stale report"
	reasonNoConfirm     = "agent did not confirm the stop"
	reasonDependencyFmt = "dependency %s %s"
)

// Outcome is how an attempt ended, as its agent reported it.
type Outcome int

const (
	// Exited: the process ran and exited with ExitCode.
	Exited Outcome = iota + 1
	// StartFailed: the process never started; Reason says why.
	StartFailed
	// Killed: the agent stopped it after a cancel.
	Killed
	// TimedOut: the agent stopped it at the spec's timeout.
	TimedOut
	// Lost: its worker went silent past the lease.
	Lost
)

// Finish is an agent's report that an attempt ended.
type Finish struct {
	JobID    string
	Attempt  int
	Outcome  Outcome
	ExitCode int
	Reason   string
	Lost     string // why the output ends early, if it does
	Usage    job.Usage
}

// finishedJob computes the record that follows cur once its attempt ended
// as f says. It is pure: now is the time of the report.
func finishedJob(cur *job.Job, f Finish, now time.Time) *job.Job {
	n := cur.Clone()
	n.FinishedAt = now
	n.ExitCode = f.ExitCode
	n.Usage = f.Usage
	lost := ""
	if f.Lost != "" {
		lost = "; output lost: " + f.Lost
	}
	if f.Outcome == Exited && f.ExitCode == 0 {
		n.State, n.Reason = job.Completed, strings.TrimPrefix(lost, "; ")
		return n
	}
	var why string
	switch f.Outcome {
	case Exited:
		why = fmt.Sprintf("exit code %d", f.ExitCode)
		if f.ExitCode < 0 && f.Reason != "" {
			why = f.Reason // killed by a signal: the agent says which
		}
	case StartFailed:
		why = "start: " + f.Reason
		n.ExitCode = -1
	case TimedOut:
		why = ReasonTimeout
	case Lost:
		why = ReasonWorkerLost
		n.ExitCode = -1
	case Killed:
		why = "killed"
		if f.Reason != "" {
			why = "killed: " + f.Reason
		}
	}
	switch cur.CancelRequested {
	case "":
	case ReasonTimeout:
		why = ReasonTimeout
	default:
		// A user's cancel wins over however the process ended.
		n.State, n.Reason, n.CancelRequested = job.Cancelled, cur.CancelRequested+lost, ""
		return n
	}
	why += lost
	if cur.AttemptsLeft() {
		delay := cur.RetryDelay()
		n.State = job.Pending
		n.Attempt = cur.Attempt + 1
		n.NotBefore = now.Add(delay)
		n.Reason = fmt.Sprintf("attempt %d: %s; retry %d of %d in %s", cur.Attempt, why, cur.Attempt, cur.Spec.Retries, delay)
		n.CancelRequested = ""
		n.Worker, n.ScheduledAt, n.StartedAt = "", time.Time{}, time.Time{}
		return n
	}
	n.State, n.Reason, n.CancelRequested = job.Failed, why, ""
	return n
}

// cancelledJob is cur moved to Cancelled with reason.
func cancelledJob(cur *job.Job, reason string, now time.Time) *job.Job {
	n := cur.Clone()
	n.State, n.Reason, n.FinishedAt, n.CancelRequested = job.Cancelled, reason, now, ""
	return n
}

// dependencyReason says why a dependent of dep was cancelled.
func dependencyReason(dep *job.Job) string {
	verb := "failed"
	if dep.State == job.Cancelled {
		verb = "was cancelled"
	}
	return fmt.Sprintf(reasonDependencyFmt, dep.ID, verb)
}
