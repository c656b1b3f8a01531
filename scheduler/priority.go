package scheduler

import (
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// DefaultAging is the wait that raises a pending job's priority by the
// whole range (job.MaxPriority).
const DefaultAging = time.Hour

// EffectivePriority is the rank of a pending job within its tenant at now:
// its priority, plus MaxPriority × (time waited / aging), plus up to
// MaxPriority as its deadline approaches (growing in a straight line from
// submit to the deadline, and staying there after it). aging <= 0 means
// DefaultAging.
//
// The promise aging makes: a job of priority p that has waited
// aging × (1000 − p)/1000 ranks above every job of its tenant submitted
// after that instant, whatever their priority, so it starts no later than
// the jobs submitted before that instant have.
func EffectivePriority(j *job.Job, now time.Time, aging time.Duration) float64 {
	if aging <= 0 {
		aging = DefaultAging
	}
	eff := float64(j.Spec.Priority) + agingGain(sinceOf(j), now, aging)
	if !j.Spec.Deadline.IsZero() {
		eff += job.MaxPriority * deadlineUrgency(j.CreatedAt, j.Spec.Deadline, now)
	}
	return eff
}

// deadlineUrgency is 0 at submit, 1 at the deadline and after it.
func deadlineUrgency(created, deadline, now time.Time) float64 {
	horizon := deadline.Sub(created)
	if horizon <= 0 || !now.Before(deadline) {
		return 1
	}
	return min(max(float64(now.Sub(created))/float64(horizon), 0), 1)
}

// agingGain is what waiting since then has added to a job's priority at
// now.
func agingGain(since, now time.Time, aging time.Duration) float64 {
	if aging <= 0 {
		aging = DefaultAging
	}
	if wait := now.Sub(since); wait > 0 {
		return job.MaxPriority * float64(wait) / float64(aging)
	}
	return 0
}
