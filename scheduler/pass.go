package scheduler

import (
	"context"
	"fmt"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// wakeAt tracks the earliest instant the loop must wake for.
type wakeAt struct{ t time.Time }

func (w *wakeAt) at(t time.Time) {
	if w.t.IsZero() || t.Before(w.t) {
		w.t = t
	}
}

// Pass runs one round of the shell around Decide at the scheduler's Now:
// it expires silent workers, enforces timeouts and overdue stop orders,
// cancels jobs whose dependency failed, then assigns what fits and commits
// all its assignments in one store transaction before sending them. It
// returns when the next pass is due for a timer (zero: none). Only one Pass
// may run at a time; Run calls it.
func (s *Scheduler) Pass(ctx context.Context) time.Time {
	now := s.cfg.Now()
	var next wakeAt
	s.expireWorkers(ctx, now, &next)
	s.checkActive(ctx, now, &next)
	s.cancelOrphans(ctx, now)
	s.dispatch(ctx, now, &next)
	return next.t
}

// expireWorkers marks workers silent past their lease DOWN and loses their
// jobs, which then retry per their policy.
func (s *Scheduler) expireWorkers(ctx context.Context, now time.Time, next *wakeAt) {
	var down []string
	s.workers.Range(func(id string, w *workerState) bool {
		if w.state == job.WorkerDown {
			return true
		}
		deadline := w.lastSeen.Add(s.cfg.Lease)
		if now.Before(deadline) {
			next.at(deadline)
			return true
		}
		seen := w.lastSeen
		s.workers.Compute(id, func(old *workerState, loaded bool) (*workerState, bool) {
			if !loaded || !old.lastSeen.Equal(seen) {
				return old, !loaded // a heartbeat came in meanwhile
			}
			n := *old
			n.state = job.WorkerDown
			down = append(down, id)
			return &n, false
		})
		return true
	})
	for _, id := range down {
		s.log.Warn("worker lost", "worker", id, "lease", s.cfg.Lease)
	}
	// checkActive, next in the pass, ends the jobs of DOWN workers.
}

// checkActive ends the jobs of lost workers, enforces timeouts of running
// jobs and gives up on stop orders that no agent confirmed within the kill
// grace plus one lease. Whatever loses a race here is tried again next pass.
func (s *Scheduler) checkActive(ctx context.Context, now time.Time, next *wakeAt) {
	var lost, overdue, timedOut []*job.Job
	s.forActive(func(j *job.Job) {
		if w, ok := s.workers.Load(j.Worker); !ok || w.state == job.WorkerDown {
			lost = append(lost, j) // its worker is gone, or was never known
			return
		}
		if j.CancelRequested != "" {
			sent, ok := s.cancelSent.Load(j.ID)
			if !ok {
				s.sendCancel(j, j.CancelRequested) // e.g. after a server restart
				sent = now
			}
			deadline := sent.Add(s.cfg.KillGrace + s.cfg.Lease)
			if !now.Before(deadline) {
				overdue = append(overdue, j)
			} else {
				next.at(deadline)
			}
			return
		}
		if j.State == job.Running && j.Spec.Timeout > 0 {
			deadline := j.StartedAt.Add(j.Spec.Timeout)
			if !now.Before(deadline) {
				timedOut = append(timedOut, j)
			} else {
				next.at(deadline)
			}
		}
	})
	for _, j := range timedOut {
		n := j.Clone()
		n.CancelRequested = ReasonTimeout
		errs, err := s.apply(ctx, []job.Update{{Expect: j.Expected(), Next: n}})
		if err == nil && errs[0] == nil {
			s.sendCancel(n, ReasonTimeout)
		}
	}
	for _, j := range lost {
		s.finishAttempt(ctx, j, Finish{JobID: j.ID, Attempt: j.Attempt, Outcome: Lost, ExitCode: -1}, ReasonWorkerLost)
	}
	for _, j := range overdue {
		s.finishAttempt(ctx, j, Finish{JobID: j.ID, Attempt: j.Attempt, Outcome: Killed, ExitCode: -1, Reason: reasonNoConfirm}, reasonNoConfirm)
	}
}

// cancelOrphans cancels pending jobs one of whose dependencies ended other
// than Completed (or no longer exists).
func (s *Scheduler) cancelOrphans(ctx context.Context, now time.Time) {
	var updates []job.Update
	s.depCheck.Range(func(id string, _ struct{}) bool {
		s.depCheck.Delete(id)
		j, ok := s.jobs.Load(id)
		if !ok || j.State != job.Pending {
			return true
		}
		if why := blockedForever(s, j); why != "" {
			updates = append(updates, job.Update{Expect: j.Expected(), Next: cancelledJob(j, why, now)})
		}
		return true
	})
	if len(updates) == 0 {
		return
	}
	errs, err := s.apply(ctx, updates)
	for i, u := range updates {
		if err != nil || errs[i] != nil {
			s.depCheck.Store(u.Next.ID, struct{}{}) // changed meanwhile: check again next pass
		}
	}
	if err != nil {
		s.log.Error("cancel dependents", "err", err)
	}
}

// blockedForever returns why j can never run, or "".
func blockedForever(s *Scheduler, j *job.Job) string {
	for _, d := range j.Spec.DependsOn {
		dep, ok := s.jobs.Load(d)
		switch {
		case !ok:
			return fmt.Sprintf(reasonDependencyFmt, d, "no longer exists")
		case dep.State.Terminal() && dep.State != job.Completed:
			return dependencyReason(dep)
		}
	}
	return ""
}

// dispatch assigns eligible pending jobs to ready workers.
func (s *Scheduler) dispatch(ctx context.Context, now time.Time, next *wakeAt) {
	snap := Snapshot{Placement: s.cfg.Placement, Tenants: map[string]TenantView{}}
	alloc := make(map[string]job.Resources)
	s.forActive(func(j *job.Job) {
		alloc[j.Worker] = alloc[j.Worker].Add(j.Spec.Resources)
		tv := snap.Tenants[j.Spec.Tenant]
		tv.Running = tv.Running.Add(j.Spec.Resources)
		snap.Tenants[j.Spec.Tenant] = tv
	})
	var freeSlots int64
	s.workers.Range(func(id string, w *workerState) bool {
		if w.connected && w.state == job.WorkerReady {
			free := w.rec.Capacity.Sub(alloc[id])
			if free.Slots > 0 {
				snap.Workers = append(snap.Workers, WorkerView{ID: id, Labels: w.rec.Labels, Free: free})
				freeSlots += free.Slots
			}
		}
		return true
	})
	if freeSlots == 0 {
		return // freed capacity or a new worker wakes the loop again
	}
	s.pending.Range(func(id string, _ struct{}) bool {
		j, ok := s.jobs.Load(id)
		if !ok || j.State != job.Pending || !s.depsDone(j) {
			return true
		}
		if j.NotBefore.After(now) {
			next.at(j.NotBefore)
			return true
		}
		snap.Pending = append(snap.Pending, j)
		return true
	})
	plan := Decide(snap, now)
	if len(plan.Assignments) == 0 {
		return
	}
	updates := make([]job.Update, len(plan.Assignments))
	for i, a := range plan.Assignments {
		n := a.Job.Clone()
		n.State, n.Worker, n.ScheduledAt = job.Scheduled, a.Worker, now
		updates[i] = job.Update{Expect: a.Job.Expected(), Next: n}
	}
	errs, err := s.apply(ctx, updates)
	if err != nil {
		s.log.Error("commit assignments", "jobs", len(updates), "err", err)
		return
	}
	for i, u := range updates {
		if errs[i] != nil {
			continue // cancelled meanwhile
		}
		j := u.Next
		s.cfg.Dispatcher.Assign(j.Worker, j)
		if s.cfg.Observer != nil {
			eligible := j.CreatedAt
			if j.NotBefore.After(eligible) {
				eligible = j.NotBefore
			}
			s.cfg.Observer.Dispatched(j.Spec.Tenant, now.Sub(eligible))
		}
	}
}

// depsDone reports whether every dependency of j has completed.
func (s *Scheduler) depsDone(j *job.Job) bool {
	for _, d := range j.Spec.DependsOn {
		if dep, ok := s.jobs.Load(d); !ok || dep.State != job.Completed {
			return false
		}
	}
	return true
}
