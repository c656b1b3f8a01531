package scheduler

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/quota"
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
	s.sweepDown(ctx, now, &next)
	s.checkActive(ctx, now, &next)
	s.cancelOrphans(ctx, now)
	s.holdBursts(ctx, now, &next)
	s.dispatch(ctx, now, &next)
	return next.t
}

// expireWorkers marks workers silent past their lease DOWN and loses their
// jobs, which then retry per their policy. UNKNOWN workers without jobs
// that did not come back after a restart lose nothing: they are counted in
// one line instead of a warning each.
func (s *Scheduler) expireWorkers(ctx context.Context, now time.Time, next *wakeAt) {
	var down []string
	quiet := 0
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
			if old.state == job.WorkerUnknown && len(s.onWorker.of(id)) == 0 {
				quiet++
			} else {
				down = append(down, id)
			}
			return downState(old, now), false
		})
		return true
	})
	if quiet+len(down) > 0 {
		s.gc.dirty.Store(true)
	}
	if quiet > 0 {
		s.log.Info("workers did not reconnect after restart", "workers", quiet, "lease", s.cfg.Lease)
	}
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
		case dep.State.Terminal() && !satisfies(dep):
			return stepDependencyReason(dep)
		}
	}
	return ""
}

// satisfies reports whether dep lets the jobs that wait for it start: it
// completed, or it failed in a step marked continue_on_failure.
func satisfies(dep *job.Job) bool {
	return dep.State == job.Completed || dep.State == job.Failed && dep.Spec.ContinueOnFailure
}

// dispatch assigns eligible pending jobs to ready workers, and with
// preemption on, stops jobs to make room for tenants below their share.
func (s *Scheduler) dispatch(ctx context.Context, now time.Time, next *wakeAt) {
	preempt := s.cfg.Preemption
	snap := Snapshot{Placement: s.cfg.Placement, Tenants: map[string]TenantView{}, Aging: s.cfg.Aging, Preempt: preempt}
	alloc := make(map[string]job.Resources)
	var active []*job.Job
	s.forActive(func(j *job.Job) {
		active = append(active, j)
		alloc[j.Worker] = alloc[j.Worker].Add(j.Spec.Resources)
		if j.Spec.ArrayLimit > 0 {
			if snap.ArrayRunning == nil {
				snap.ArrayRunning = make(map[string]int)
			}
			snap.ArrayRunning[j.Spec.Array]++
		}
	})
	var freeSlots int64
	s.workers.Range(func(id string, w *workerState) bool {
		if w.connected && w.state == job.WorkerReady {
			free := w.rec.Capacity.Sub(alloc[id])
			if free.Slots > 0 || preempt {
				snap.Workers = append(snap.Workers, WorkerView{ID: id, Labels: w.rec.Labels, Free: free, Capacity: w.rec.Capacity})
				freeSlots += max(free.Slots, 0)
			}
		}
		return true
	})
	if freeSlots == 0 && !preempt {
		// Freed capacity or a new worker wakes the loop again. The
		// backlog the fair state keeps is left as it is: the virtual time
		// only moves in passes that look at the pending jobs.
		return
	}
	waiting := make(map[string]bool)
	arrays := make(arrayRoom)
	s.pending.Range(func(id string, _ struct{}) bool {
		j, ok := s.jobs.Load(id)
		if !ok || j.State != job.Pending || !s.depsDone(j) {
			return true
		}
		if j.NotBefore.After(now) {
			next.at(j.NotBefore)
			return true
		}
		waiting[j.Spec.Tenant] = true
		if j.Spec.ArrayLimit > 0 {
			arrays.offer(j, j.Spec.ArrayLimit-snap.ArrayRunning[j.Spec.Array])
			return true
		}
		snap.Pending = append(snap.Pending, j)
		return true
	})
	snap.Pending = arrays.appendTo(snap.Pending)
	// Charge what ran past its estimate and let tenants that were idle
	// enter, before the views read the tags.
	s.fair.accrue(active, now, s.weight)
	s.fair.waiting(waiting)
	for t := range waiting {
		snap.Tenants[t] = s.tenantView(t)
	}
	for _, j := range active {
		tv, ok := snap.Tenants[j.Spec.Tenant]
		if !ok {
			tv = s.tenantView(j.Spec.Tenant)
		}
		tv.Running = tv.Running.Add(j.Spec.Resources)
		snap.Tenants[j.Spec.Tenant] = tv
	}
	if preempt {
		snap.Active = active
	}
	snap.Reserved = s.reservations(now, next)
	plan := Decide(snap, now)
	if len(plan.Assignments) == 0 && len(plan.Preemptions) == 0 {
		return
	}
	updates := make([]job.Update, 0, len(plan.Assignments)+len(plan.Preemptions))
	for _, a := range plan.Assignments {
		n := a.Job.Clone()
		n.State, n.Worker, n.ScheduledAt = job.Scheduled, a.Worker, now
		if d := n.Spec.Deadline; !d.IsZero() && now.After(d) && n.Attempt == 1 {
			// An SLA miss is a first start after the deadline; retries
			// and requeues of a job that started in time are not.
			n.DeadlineMissed = true
			n.Reason = fmt.Sprintf(reasonSLAMissedFmt, now.Sub(d).Round(time.Millisecond))
		}
		updates = append(updates, job.Update{Expect: a.Job.Expected(), Next: n})
	}
	for _, p := range plan.Preemptions {
		updates = append(updates, requeueUpdate(p.Job, fmt.Sprintf(ReasonPreemptedFmt, p.By, p.For)))
	}
	s.fair.book(plan.Assignments, s.weight)
	errs, err := s.apply(ctx, updates)
	if err != nil {
		for _, a := range plan.Assignments {
			s.fair.revoke(a.Job.ID, s.weight)
		}
		s.log.Error("commit assignments", "jobs", len(updates), "err", err)
		return
	}
	bursting := make(map[string]quota.Burst)
	for i, a := range plan.Assignments {
		if errs[i] != nil {
			s.fair.revoke(a.Job.ID, s.weight) // cancelled meanwhile
			continue
		}
		t := a.Job.Spec.Tenant
		if b, ok := plan.Bursts[t]; ok {
			bursting[t] = b
		}
		s.fair.advance(a.Start)
		j := updates[i].Next
		s.cfg.Dispatcher.Assign(j.Worker, j)
		if j.DeadlineMissed && !a.Job.DeadlineMissed {
			s.log.Warn("SLA missed", "job", j.ID, "tenant", j.Spec.Tenant, "late", now.Sub(j.Spec.Deadline))
			if s.cfg.Observer != nil {
				s.cfg.Observer.SLAMissed(j.Spec.Tenant)
			}
		}
		if s.cfg.Observer != nil {
			eligible := j.CreatedAt
			if j.NotBefore.After(eligible) {
				eligible = j.NotBefore
			}
			s.cfg.Observer.Dispatched(j.Spec.Tenant, now.Sub(eligible))
		}
	}
	s.fair.setBursts(bursting)
	for i, p := range plan.Preemptions {
		if errs[len(plan.Assignments)+i] == nil {
			// Hold the room for the job it is made for, long enough for the
			// agent to stop the victim or for its worker to be declared lost.
			s.reserved[p.For] = reservation{worker: p.Job.Worker, until: now.Add(2 * (s.cfg.KillGrace + s.cfg.Lease))}
			s.log.Info("preempting", "job", p.Job.ID, "tenant", p.Job.Spec.Tenant, "for_tenant", p.By, "for_job", p.For)
			s.stopRequeued(updates[len(plan.Assignments)+i].Next)
		}
	}
}

// arrayRoom picks, for each array with a limit, the pending jobs that fit
// under it this pass: the lowest indices (ids follow them), as many as the
// array has room for. The others are not even offered to Decide, so a
// large array costs a pass its room, not its size.
type arrayRoom map[string][]*job.Job

// offer considers j for its array, which has room for that many more.
func (a arrayRoom) offer(j *job.Job, room int) {
	if room <= 0 {
		return
	}
	sel := a[j.Spec.Array]
	if len(sel) == room && j.ID > sel[room-1].ID {
		return
	}
	i, _ := slices.BinarySearchFunc(sel, j.ID, func(x *job.Job, id string) int { return cmp.Compare(x.ID, id) })
	sel = slices.Insert(sel, i, j)
	if len(sel) > room {
		sel = sel[:room]
	}
	a[j.Spec.Array] = sel
}

func (a arrayRoom) appendTo(pending []*job.Job) []*job.Job {
	for _, sel := range a {
		pending = append(pending, sel...)
	}
	return pending
}

// reservation holds room on a worker for one pending job until it is
// placed, ends, or until passes.
type reservation struct {
	worker string
	until  time.Time
}

// reservations returns the live reservations (job id → worker id), dropping
// the ones that lapsed or whose job is no longer pending.
func (s *Scheduler) reservations(now time.Time, next *wakeAt) map[string]string {
	if len(s.reserved) == 0 {
		return nil
	}
	out := make(map[string]string, len(s.reserved))
	for id, r := range s.reserved {
		j, ok := s.jobs.Load(id)
		if !ok || j.State != job.Pending || !now.Before(r.until) {
			delete(s.reserved, id)
			continue
		}
		out[id] = r.worker
		next.at(r.until)
	}
	return out
}

// requeueUpdate asks the agent of a running job to stop it so that it goes
// back to Pending on a new attempt that is not a retry.
func requeueUpdate(j *job.Job, reason string) job.Update {
	n := j.Clone()
	n.CancelRequested, n.Requeue = reason, true
	return job.Update{Expect: j.Expected(), Next: n}
}

func (s *Scheduler) stopRequeued(j *job.Job) {
	s.sendCancel(j, j.CancelRequested)
	if s.cfg.Observer != nil {
		s.cfg.Observer.Preempted(j.Spec.Tenant)
	}
}

// holdBursts brings burst states to now and holds every tenant whose burst
// ended, or that is in a cooldown, at its running limit: whatever runs over
// it (what the burst started, newest first) is stopped and requeued, and a
// job not yet started goes straight back to the queue.
func (s *Scheduler) holdBursts(ctx context.Context, now time.Time, next *wakeAt) {
	held := s.fair.burstsNow(now, s.limits, next)
	if len(held) == 0 {
		return
	}
	byTenant := make(map[string][]*job.Job)
	s.forActive(func(j *job.Job) {
		if j.CancelRequested == "" && slices.Contains(held, j.Spec.Tenant) {
			byTenant[j.Spec.Tenant] = append(byTenant[j.Spec.Tenant], j)
		}
	})
	var updates []job.Update
	var olds []*job.Job
	for t, jobs := range byTenant {
		l := s.limits(t)
		var using job.Resources
		for _, j := range jobs {
			using = using.Add(j.Spec.Resources)
		}
		slices.SortFunc(jobs, func(a, b *job.Job) int { // newest first
			if c := b.ScheduledAt.Compare(a.ScheduledAt); c != 0 {
				return c
			}
			return cmp.Compare(b.ID, a.ID)
		})
		for _, j := range jobs {
			if !l.Over(quota.Burst{}, using) {
				break
			}
			using = using.Sub(j.Spec.Resources)
			why := fmt.Sprintf(ReasonBurstEndedFmt, t)
			if j.State == job.Scheduled {
				updates = append(updates, job.Update{Expect: j.Expected(), Next: requeuedJob(j, why, now)})
			} else {
				updates = append(updates, requeueUpdate(j, why))
			}
			olds = append(olds, j)
		}
	}
	if len(updates) == 0 {
		return
	}
	errs, err := s.apply(ctx, updates)
	if err != nil {
		s.log.Error("stop burst", "jobs", len(updates), "err", err)
		return
	}
	for i, u := range updates {
		if errs[i] != nil {
			continue
		}
		if old := olds[i]; old.State == job.Scheduled {
			// Requeued before it started: stop a start under way.
			s.cfg.Dispatcher.Cancel(old.Worker, s.cancelOrder(old, u.Next.Reason))
		} else {
			s.stopRequeued(u.Next)
		}
	}
}

// depsDone reports whether every dependency of j has completed.
func (s *Scheduler) depsDone(j *job.Job) bool {
	for _, d := range j.Spec.DependsOn {
		if dep, ok := s.jobs.Load(d); !ok || !satisfies(dep) {
			return false
		}
	}
	return true
}
