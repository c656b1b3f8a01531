package scheduler

import (
	"fmt"
	"strings"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// Reasons recorded on jobs. Tests and users match on them.
const (
	ReasonTimeout    = "timeout"
	ReasonWorkerLost = "worker lost"
	ReasonUserCancel = "cancelled by user"
	// ReasonPreemptedFmt names the tenant and job a preemption made room
	// for; ReasonBurstEndedFmt the tenant whose burst ended.
	ReasonPreemptedFmt     = "preempted by tenant %s for job %s"
	ReasonBurstEndedFmt    = "preempted: burst of tenant %s ended"
	ReasonSLAMissedFmt     = "SLA missed: started %s after its deadline"
	ReasonStaleAttempt     = "stale report"
	ReasonNoConfirm        = "agent did not confirm the stop"
	ReasonDependencyFmt    = reasonDependencyPrefix + "%s %s"
	reasonDependencyPrefix = "dependency "
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
	Signal   int // that ended the process, whoever sent it; 0: none
	Reason   string
	Lost     string // why the output ends early, if it does
	Usage    job.Usage
	// Ended is when the attempt ended by the agent's clock; zero when
	// unknown (the server's own reports). See EndedAt.
	Ended time.Time
}

// EndedAt is when the attempt f reports on ended, as the job records it
// (FinishedAt): the agent's time, since a result may reach the server long
// after (an agent that was cut off keeps it in its journal), but bounded
// against clock skew by what the server knows: not before the attempt
// started (or was scheduled, for one that never started), and not after
// now, the time of the report. Without an agent's time, now.
func EndedAt(cur *job.Job, f Finish, now time.Time) time.Time {
	if f.Ended.IsZero() || f.Ended.After(now) {
		return now
	}
	floor := cur.StartedAt
	if floor.IsZero() {
		floor = cur.ScheduledAt
	}
	switch {
	case floor.After(now):
		return now
	case f.Ended.Before(floor):
		return floor
	}
	return f.Ended
}

// Finished computes the record that follows cur once its attempt ended
// as f says. It is pure: now is the time of the report; the attempt's end
// (FinishedAt) is EndedAt.
func Finished(cur *job.Job, f Finish, now time.Time) *job.Job {
	n := cur.Clone()
	n.FinishedAt = EndedAt(cur, f, now)
	n.ExitCode = f.ExitCode
	n.Signal = f.Signal
	n.Usage = f.Usage
	n.Usage.Attempt = cur.Attempt
	if n.Usage.Wall <= 0 && cur.State == job.Running && !cur.StartedAt.IsZero() && n.FinishedAt.After(cur.StartedAt) {
		// No agent's measure (worker lost, or an agent of an older
		// version): the server's view of how long it ran.
		n.Usage.Wall = n.FinishedAt.Sub(cur.StartedAt)
	}
	lost := ""
	if f.Lost != "" {
		lost = "; output lost: " + f.Lost
	}
	if f.Outcome == Exited && f.ExitCode == 0 {
		n.State, n.Reason = job.Completed, strings.TrimPrefix(lost, "; ")
		if cur.DeadlineMissed && cur.Attempt == 1 {
			// The attempt that started late: its SLA miss stays on record.
			n.Reason = cur.Reason + lost
		}
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
		n.ExitCode, n.Signal = -1, 0
	case TimedOut:
		why = ReasonTimeout
	case Lost:
		why = ReasonWorkerLost
		n.ExitCode, n.Signal = -1, 0
	case Killed:
		why = "killed"
		if f.Reason != "" {
			why = "killed: " + f.Reason
		}
	}
	switch cur.Stop {
	case job.NoStop:
	case job.StopRequeue:
		r := Requeued(cur, cur.CancelRequested+lost, now)
		r.ExitCode, r.Signal, r.Usage, r.FinishedAt = n.ExitCode, n.Signal, n.Usage, n.FinishedAt
		return r
	case job.StopTimeout:
		why = ReasonTimeout
	default:
		// A user's cancel wins over however the process ended.
		n.State, n.Reason, n.CancelRequested, n.Stop = job.Cancelled, cur.CancelRequested+lost, "", job.NoStop
		return n
	}
	why += lost
	if cur.AttemptsLeft() {
		delay := cur.RetryDelay()
		n.State = job.Pending
		n.Attempt = cur.Attempt + 1
		n.NotBefore = now.Add(delay)
		retry := cur.Attempt - cur.Preemptions
		n.Reason = fmt.Sprintf("attempt %d: %s; retry %d of %d in %s", cur.Attempt, why, retry, cur.Spec.Retries, delay)
		n.CancelRequested, n.Stop = "", job.NoStop
		n.Worker, n.ScheduledAt, n.StartedAt = "", time.Time{}, time.Time{}
		return n
	}
	n.State, n.Reason, n.CancelRequested, n.Stop = job.Failed, why, "", job.NoStop
	return n
}

// Requeued is cur, preempted for why, back in the queue on a new
// attempt that is not a retry.
func Requeued(cur *job.Job, why string, now time.Time) *job.Job {
	n := cur.Clone()
	n.State, n.Attempt, n.Preemptions = job.Pending, cur.Attempt+1, cur.Preemptions+1
	n.Reason = fmt.Sprintf("attempt %d: %s", cur.Attempt, why)
	n.CancelRequested, n.Stop = "", job.NoStop
	n.FinishedAt = now
	n.Worker, n.ScheduledAt, n.StartedAt = "", time.Time{}, time.Time{}
	return n
}

// Cancelled is cur moved to Cancelled with reason.
func Cancelled(cur *job.Job, reason string, now time.Time) *job.Job {
	n := cur.Clone()
	n.State, n.Reason, n.FinishedAt, n.CancelRequested, n.Stop = job.Cancelled, reason, now, "", job.NoStop
	return n
}
