package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/quota"
	"github.com/hodei-jobs/hodei/scheduler"
)

// wakeAt tracks the earliest instant the loop must wake for.
type wakeAt struct{ t time.Time }

func (w *wakeAt) at(t time.Time) {
	if !t.IsZero() && (w.t.IsZero() || t.Before(w.t)) {
		w.t = t
	}
}

// Pass runs one round of the loop around scheduler.Decide at the
// cluster's Now: it marks silent workers DOWN, looks at the dependencies
// that ended since the last pass, takes a snapshot, lets Decide make the
// whole plan — lost attempts, timeouts, unconfirmed stops, burst-end
// requeues, orphan cancels, dispatches and preemptions — and commits it in
// one store transaction before sending any order. It returns when the next
// pass is due for a timer (zero: none). Only one Pass may run at a time;
// Run calls it.
func (s *Cluster) Pass(ctx context.Context) time.Time {
	now := s.cfg.Now()
	var next wakeAt
	s.expireWorkers(now, &next)
	s.sweepDown(ctx, now, &next)
	orphans := s.checkDeps(ctx)
	s.mu.Lock()
	snap := s.snapshot(now, &next, orphans)
	plan := scheduler.Decide(snap, now)
	if s.parkWalked() {
		next.at(now) // more to park: the next pass at once
	}
	s.held = heldOf(plan.Held)
	s.mu.Unlock()
	next.at(plan.Next)
	s.commit(ctx, now, plan)
	return next.t
}

// expireWorkers marks workers silent past their lease DOWN; the pass then
// ends their jobs' attempts as lost, and they retry per their policy.
// UNKNOWN workers without jobs that did not come back after a restart lose
// nothing: they are counted in one line instead of a warning each.
func (s *Cluster) expireWorkers(now time.Time, next *wakeAt) {
	var expired, unknown []string // unknown: never heard from since a restart
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
			if old.state == job.WorkerUnknown {
				unknown = append(unknown, id)
			} else {
				expired = append(expired, id)
			}
			return downState(old, now), false
		})
		return true
	})
	for _, id := range expired {
		s.workerChanged(id)
	}
	for _, id := range unknown {
		s.workerChanged(id)
	}
	// Outside the map's callbacks, which must not take s.mu: a worker not
	// heard from since a restart that holds nothing is only quiet.
	down, quiet := expired, 0
	for _, id := range unknown {
		if s.activeCount(id) == 0 {
			quiet++
		} else {
			down = append(down, id)
		}
	}
	if quiet+len(down) > 0 {
		s.gc.dirty.Store(true)
	}
	if quiet > 0 {
		s.log.Info("workers did not reconnect after restart", "workers", quiet, "lease", s.cfg.Lease)
	}
	for _, id := range down {
		s.log.Warn("worker lost", "worker", id, "lease", s.cfg.Lease)
	}
	if len(down) > 0 && s.cfg.Observer != nil {
		s.cfg.Observer.WorkersLost(len(down))
	}
}

// checkDeps looks at the blocked jobs one of whose dependencies ended (or
// that were just filed): those whose dependencies all let them run go to
// their queues, and those one of whose dependencies never will are
// returned for the plan to cancel. It reads the finished dependencies from
// the store, outside the lock.
func (s *Cluster) checkDeps(ctx context.Context) []scheduler.Orphan {
	s.mu.Lock()
	if len(s.depCheck) == 0 {
		s.mu.Unlock()
		return nil
	}
	check := make(map[string][]string, len(s.depCheck))
	var depIDs []string
	seen := make(map[string]bool)
	for id := range s.depCheck {
		delete(s.depCheck, id)
		sl, ok := s.wait.lookup(id)
		if !ok || s.wait.at(sl).at != blocked {
			continue
		}
		check[id] = s.needs[id]
		for _, d := range s.needs[id] {
			if !seen[d] {
				seen[d] = true
				depIDs = append(depIDs, d)
			}
		}
	}
	s.mu.Unlock()
	deps, err := s.GetMany(ctx, depIDs)
	if err != nil {
		s.log.Error("check dependencies", "err", err)
		s.mu.Lock()
		for id := range check {
			s.depCheck[id] = struct{}{}
		}
		s.mu.Unlock()
		return nil
	}
	state := make(map[string]*job.Job, len(deps))
	for i, d := range deps {
		state[depIDs[i]] = d
	}
	var orphans []scheduler.Orphan
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, needs := range check {
		sl, ok := s.wait.lookup(id)
		if !ok || s.wait.at(sl).at != blocked {
			continue
		}
		done := true
		for _, d := range needs {
			dep := state[d]
			switch {
			case dep == nil:
				orphans = append(orphans, scheduler.Orphan{Job: s.waitingOf(sl), DepID: d})
			case dep.State.Terminal() && !satisfies(dep):
				orphans = append(orphans, scheduler.Orphan{Job: s.waitingOf(sl), Dep: dep, DepID: d})
			case !satisfies(dep):
				done = false
				continue
			default:
				continue
			}
			done = false
			break
		}
		if done {
			delete(s.needs, id)
			s.unblocked[sl] = now.UnixNano() // its wait in the queue starts now
			s.file(sl, false, now)
		}
	}
	return orphans
}

// satisfies reports whether dep lets the jobs that wait for it start: it
// completed, or it failed in a step marked continue_on_failure.
func satisfies(dep *job.Job) bool {
	return dep.State == job.Completed || dep.State == job.Failed && dep.Spec.ContinueOnFailure
}

// snapshot builds Decide's input. The caller holds mu, and keeps holding
// it while Decide reads the queues.
func (s *Cluster) snapshot(now time.Time, next *wakeAt, orphans []scheduler.Orphan) scheduler.Snapshot {
	preempt := s.cfg.Preemption
	next.at(s.undelay(now))
	s.rekey(now)
	snap := scheduler.Snapshot{
		Placement: s.cfg.Placement, Tenants: map[string]scheduler.TenantView{}, Aging: s.cfg.Aging,
		Preempt: preempt, ArrayRunning: s.arrayRunning, Orphans: orphans,
		Live: make(map[string]bool), Confirm: s.cfg.KillGrace + s.cfg.Lease,
	}
	alloc := make(map[string]job.Resources)
	snap.Active = make([]*job.Job, 0, len(s.active))
	for _, j := range s.active {
		snap.Active = append(snap.Active, j)
		alloc[j.Worker] = alloc[j.Worker].Add(j.Spec.Resources)
		if j.Stop != job.NoStop {
			if snap.StopSent == nil {
				snap.StopSent = make(map[string]time.Time)
			}
			if t, ok := s.cancelSent.Load(j.ID); ok {
				snap.StopSent[j.ID] = t
			}
		}
	}
	var freeSlots int64
	s.workers.Range(func(id string, w *workerState) bool {
		if w.state != job.WorkerDown {
			snap.Live[id] = true
		}
		if w.connected && w.state == job.WorkerReady {
			free := w.rec.Capacity.Sub(alloc[id])
			if free.Slots > 0 || preempt {
				snap.Workers = append(snap.Workers, scheduler.WorkerView{ID: id, Labels: w.rec.Labels, Free: free, Capacity: w.rec.Capacity})
				freeSlots += max(free.Slots, 0)
			}
		}
		return true
	})
	// Charge what ran past its estimate and let tenants that were idle
	// enter, before the views read the tags.
	s.fair.accrue(snap.Active, now, s.weight)
	held := s.fair.burstsNow(now, s.limits, next)
	waiting := make(map[string]bool, len(s.queues))
	for t := range s.queues {
		waiting[t] = true
	}
	if freeSlots > 0 || preempt {
		// With no free slot the queues are not looked at, and the virtual
		// time does not move: freed capacity or a new worker wakes the
		// loop again.
		s.fair.waiting(waiting)
		s.refreshParking()
		snap.Walks = make(scheduler.Walks, len(s.queues))
		for t, q := range s.queues {
			snap.Walks[t] = func() scheduler.Walk { return s.walk(q) }
			snap.Tenants[t] = s.tenantView(t)
		}
	}
	for _, t := range held {
		tv, ok := snap.Tenants[t]
		if !ok {
			tv = s.tenantView(t)
		}
		tv.Held = true
		snap.Tenants[t] = tv
	}
	for t, c := range s.counts {
		if c.Held.IsZero() {
			continue
		}
		tv, ok := snap.Tenants[t]
		if !ok {
			tv = s.tenantView(t)
		}
		tv.Running = c.Held
		snap.Tenants[t] = tv
	}
	snap.Reserved = s.reservations(now, next)
	return snap
}

// commit turns a plan into one store transaction, publishes what it
// committed, and only then sends the orders.
func (s *Cluster) commit(ctx context.Context, now time.Time, plan scheduler.Plan) {
	for _, j := range plan.Resend {
		s.sendCancel(j, j.CancelRequested)
	}
	if plan.IsZero() {
		return
	}
	b, err := s.build(ctx, now, plan)
	if err != nil {
		s.log.Error("read jobs for a pass", "err", err)
		return
	}
	if len(b.updates) == 0 {
		return
	}
	s.fair.book(b.assigned, s.weight)
	errs, err := s.apply(ctx, b.updates)
	if err != nil {
		for _, a := range b.assigned {
			s.fair.revoke(a.Job.ID, s.weight)
		}
		s.log.Log(ctx, job.StoreErrLevel(err), "commit pass", "jobs", len(b.updates), "err", err)
		s.mu.Lock()
		for _, o := range plan.Cancels {
			s.depCheck[o.Job.ID] = struct{}{} // try again next pass
		}
		s.mu.Unlock()
		return
	}
	bursting := make(map[string]quota.Burst)
	for i, u := range b.updates {
		what := b.what[i]
		if errs[i] != nil {
			switch what.kind {
			case doAssign:
				s.fair.revoke(u.Next.ID, s.weight) // cancelled meanwhile
			case doCancel:
				s.mu.Lock()
				s.depCheck[u.Next.ID] = struct{}{} // changed meanwhile: check again next pass
				s.mu.Unlock()
			default:
				s.log.Warn("pass: change lost a race", "job", u.Next.ID, "err", errs[i])
			}
			continue
		}
		s.committed(now, plan, what, u, bursting)
	}
	s.fair.setBursts(bursting)
}

// committed sends the orders one committed change of a pass needs.
func (s *Cluster) committed(now time.Time, plan scheduler.Plan, what change, u job.Update, bursting map[string]quota.Burst) {
	j := u.Next
	switch what.kind {
	case doAssign:
		a := plan.Assignments[what.index]
		t := j.Spec.Tenant
		if b, ok := plan.Bursts[t]; ok {
			bursting[t] = b
		}
		s.fair.advance(a.Start)
		s.cfg.Dispatcher.Assign(j.Worker, j)
		if j.DeadlineMissed && u.Expect.State == job.Pending && j.Attempt == 1 {
			s.log.Warn("SLA missed", "job", j.ID, "tenant", t, "late", now.Sub(j.Spec.Deadline))
			if s.cfg.Observer != nil {
				s.cfg.Observer.SLAMissed(t)
			}
		}
		if s.cfg.Observer != nil {
			eligible := j.CreatedAt
			if j.NotBefore.After(eligible) {
				eligible = j.NotBefore
			}
			s.cfg.Observer.Dispatched(t, now.Sub(eligible))
		}
	case doPreempt:
		p := plan.Preemptions[what.index]
		// Hold the room for the job it is made for, long enough for the
		// agent to stop the victim or for its worker to be declared lost.
		s.reserved[p.For] = reservation{worker: p.Job.Worker, until: now.Add(2 * (s.cfg.KillGrace + s.cfg.Lease))}
		s.log.Info("preempting", "job", p.Job.ID, "tenant", p.Job.Spec.Tenant, "for_tenant", p.By, "for_job", p.For)
		s.stopRequeued(j)
	case doStop:
		st := plan.Stops[what.index]
		switch st.Kind {
		case scheduler.StopLost, scheduler.StopUnconfirmed:
			s.log.Info("attempt ended by server", "job", j.ID, "attempt", st.Job.Attempt, "why", st.Kind, "state", j.State)
		case scheduler.StopTimeout:
			s.sendCancel(j, scheduler.ReasonTimeout)
		case scheduler.StopBurstEnded:
			if st.Job.State == job.Scheduled {
				// Requeued before it started: stop a start under way.
				s.cfg.Dispatcher.Cancel(st.Job.Worker, s.cancelOrder(st.Job, j.Reason))
			} else {
				s.stopRequeued(j)
			}
		}
	}
}

// changeKind says which part of a plan an update comes from.
type changeKind int

const (
	doAssign changeKind = iota + 1
	doPreempt
	doStop
	doCancel
)

type change struct {
	kind  changeKind
	index int // into the plan's slice of that kind
}

// batch is a plan as store updates.
type batch struct {
	updates  []job.Update
	what     []change
	assigned []scheduler.Assignment // the assignments among updates
}

// build makes the updates of a plan. The waiting jobs it dispatches or
// cancels are read from the store in one read (memory holds only what
// ordering needs); tasks of arrays are made from their array's record.
func (s *Cluster) build(ctx context.Context, now time.Time, plan scheduler.Plan) (batch, error) {
	var ids []string
	for _, a := range plan.Assignments {
		if !a.Job.IsTask() {
			ids = append(ids, a.Job.ID)
		}
	}
	for _, c := range plan.Cancels {
		ids = append(ids, c.Job.ID)
	}
	stored, err := s.GetMany(ctx, ids)
	if err != nil {
		return batch{}, err
	}
	full := make(map[string]*job.Job, len(ids))
	for i, j := range stored {
		if j != nil {
			full[ids[i]] = j
		}
	}
	var b batch
	add := func(u job.Update, kind changeKind, i int) {
		b.updates = append(b.updates, u)
		b.what = append(b.what, change{kind, i})
	}
	for i, a := range plan.Assignments {
		cur, create := full[a.Job.ID], false
		if a.Job.IsTask() {
			cur, create = s.task(a.Job), true
		}
		if cur == nil || cur.State != job.Pending || cur.Attempt != int(a.Job.Attempt) {
			continue // changed meanwhile
		}
		n := cur.Clone()
		n.State, n.Worker, n.ScheduledAt = job.Scheduled, a.Worker, now
		if d := n.Spec.Deadline; !d.IsZero() && now.After(d) && n.Attempt == 1 {
			// An SLA miss is a first start after the deadline; retries
			// and requeues of a job that started in time are not.
			n.DeadlineMissed = true
			n.Reason = fmt.Sprintf(scheduler.ReasonSLAMissedFmt, now.Sub(d).Round(time.Millisecond))
		}
		u := job.Change(cur, n)
		u.Create = create
		add(u, doAssign, i)
		b.assigned = append(b.assigned, a)
	}
	for i, p := range plan.Preemptions {
		add(requeueUpdate(p.Job, fmt.Sprintf(scheduler.ReasonPreemptedFmt, p.By, p.For)), doPreempt, i)
	}
	for i, st := range plan.Stops {
		j := st.Job
		var n *job.Job
		switch st.Kind {
		case scheduler.StopLost:
			n = scheduler.Finished(j, scheduler.Finish{JobID: j.ID, Attempt: j.Attempt, Outcome: scheduler.Lost, ExitCode: -1}, now)
		case scheduler.StopUnconfirmed:
			n = scheduler.Finished(j, scheduler.Finish{JobID: j.ID, Attempt: j.Attempt, Outcome: scheduler.Killed, ExitCode: -1, Reason: scheduler.ReasonNoConfirm}, now)
		case scheduler.StopTimeout:
			n = j.Clone()
			n.CancelRequested, n.Stop = scheduler.ReasonTimeout, job.StopTimeout
		case scheduler.StopBurstEnded:
			why := fmt.Sprintf(scheduler.ReasonBurstEndedFmt, j.Spec.Tenant)
			if j.State == job.Scheduled {
				n = scheduler.Requeued(j, why, now)
			} else {
				n = requeueUpdate(j, why).Next
			}
		}
		add(job.Change(j, n), doStop, i)
	}
	for i, c := range plan.Cancels {
		cur := full[c.Job.ID]
		if cur == nil || cur.State != job.Pending {
			continue
		}
		add(job.Change(cur, scheduler.Cancelled(cur, c.Reason, now)), doCancel, i)
	}
	return b, nil
}

// task is the job of an array task a pass dispatches, as it is before.
func (s *Cluster) task(w *scheduler.Waiting) *job.Job {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.arrays[w.Tasks.Array]
	if st == nil || st.rec.Cancelled {
		return nil
	}
	return st.rec.Task(int(w.Position))
}

// reservation holds room on a worker for one pending job until it is
// placed, ends, or until passes.
type reservation struct {
	worker string
	until  time.Time
}

// reservations returns the live reservations, dropping the ones that
// lapsed or whose job is no longer ready. The caller holds mu.
func (s *Cluster) reservations(now time.Time, next *wakeAt) []scheduler.Reservation {
	if len(s.reserved) == 0 {
		return nil
	}
	out := make([]scheduler.Reservation, 0, len(s.reserved))
	for id, r := range s.reserved {
		sl, ok := s.wait.lookup(id)
		if !ok || s.wait.at(sl).at != ready || !now.Before(r.until) {
			delete(s.reserved, id)
			continue
		}
		out = append(out, scheduler.Reservation{Job: s.waitingOf(sl), Worker: r.worker})
		next.at(r.until)
	}
	return out
}

// requeueUpdate asks the agent of a running job to stop it so that it goes
// back to Pending on a new attempt that is not a retry.
func requeueUpdate(j *job.Job, reason string) job.Update {
	n := j.Clone()
	n.CancelRequested, n.Stop = reason, job.StopRequeue
	return job.Change(j, n)
}

func (s *Cluster) stopRequeued(j *job.Job) {
	s.sendCancel(j, j.CancelRequested)
	if s.cfg.Observer != nil {
		s.cfg.Observer.Preempted(j.Spec.Tenant)
	}
}
