package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// Stats is a worker's last reported resource usage.
type Stats struct {
	CPUPercent    float64
	MemoryUsedMiB int64
	Load1         float64
	// The agent's backlog: the job results in its journal and the spooled
	// output bytes the server has not acknowledged.
	UndeliveredResults int
	UnackedLogBytes    int64
}

// workerState is the live view of one worker. Values are immutable.
type workerState struct {
	rec       *job.Worker
	state     job.WorkerState
	connected bool
	lastSeen  time.Time
	stats     Stats
	unsaved   bool // rec has a DownSince the store does not have yet
	leaving   bool // its agent said goodbye: DRAINING until its next Hello, not stored
}

func workerStateOf(w *job.Worker) job.WorkerState {
	if w.Drained {
		return job.WorkerDraining
	}
	return job.WorkerReady
}

// WorkerInfo is a worker as `hodei workers ls` shows it.
type WorkerInfo struct {
	Worker    *job.Worker
	State     job.WorkerState
	Connected bool
	LastSeen  time.Time
	Stats     Stats
	Allocated job.Resources
	Running   []string // ids of its Scheduled and Running jobs
	// Leaving: its agent is stopping or restarting (it said goodbye); the
	// worker is DRAINING until the agent's next Hello, which `workers
	// drain` did not ask for.
	Leaving bool
}

// Ref names one attempt an agent holds.
type Ref struct {
	JobID   string
	Attempt int
}

// Hello is an agent's greeting after it connected.
type Hello struct {
	Worker  *job.Worker
	Running []Ref // attempts the agent holds: running, or ended and not yet delivered
	// Restarted is set by an agent process on its first connection: it
	// cannot have started anything assigned to the worker before, so an
	// attempt it does not hold is lost, not merely undelivered.
	Restarted bool
	// SupervisorsIntact, with Restarted: every supervisor that held the
	// worker's jobs outlived the agent process and was reattached, so what
	// the previous process started is held and listed; a Scheduled job the
	// agent does not list never started (it was assigned in the moments
	// before the restart) and is assigned again, not lost.
	SupervisorsIntact bool
	// Since is when the connection was registered: assignments from then
	// on went to this connection and are not lost.
	Since time.Time
}

// Reconcile is what the server must send an agent that just said Hello.
type Reconcile struct {
	Assign []*job.Job    // assigned to it but not known to be running there
	Cancel []CancelOrder // running there but no longer wanted
}

// WorkerHello registers a connected agent (storing its record when new or
// changed) and reconciles what it runs with what the store says it should:
// Scheduled jobs it does not report are assigned again (unless a restarted
// agent lost the supervisors that could have started them: then they are
// lost), jobs with a pending stop get the order again, Running jobs it no
// longer has are lost, and attempts it runs that the server does not
// expect are cancelled. Report
// the agent's finished attempts (JobFinished) before calling WorkerHello.
func (s *Cluster) WorkerHello(ctx context.Context, h Hello) (Reconcile, error) {
	now := s.cfg.Now()
	rec := h.Worker.Clone()
	rec.DownSince = time.Time{}
	s.gc.mu.Lock()
	old, known := s.workers.Load(rec.ID)
	if known {
		rec.Drained = old.rec.Drained
	}
	if !known || !sameRecord(old.rec, rec) {
		if err := s.cfg.Store.PutWorker(ctx, rec); err != nil {
			s.gc.mu.Unlock()
			return Reconcile{}, fmt.Errorf("store worker %s: %w", rec.ID, err)
		}
	}
	s.workers.Store(rec.ID, &workerState{rec: rec, state: workerStateOf(rec), connected: true, lastSeen: now})
	s.gc.mu.Unlock()
	s.workerChanged(rec.ID)

	reported := make(map[Ref]bool, len(h.Running))
	for _, r := range h.Running {
		reported[r] = true
	}
	var rc Reconcile
	var lost []*job.Job
	for _, j := range s.activeOn(rec.ID) {
		ref := Ref{j.ID, j.Attempt}
		switch {
		case reported[ref] && j.Stop != job.NoStop:
			rc.Cancel = append(rc.Cancel, s.cancelOrder(j, j.CancelRequested))
		case reported[ref]:
		case j.State == job.Scheduled && (!h.Restarted || h.SupervisorsIntact || !j.ScheduledAt.Before(h.Since)):
			rc.Assign = append(rc.Assign, j) // the assignment may have been lost in transit, or to a restart
		default:
			lost = append(lost, j)
		}
		delete(reported, ref)
	}
	for ref := range reported {
		rc.Cancel = append(rc.Cancel, CancelOrder{JobID: ref.JobID, Attempt: ref.Attempt, Grace: s.cfg.KillGrace, Reason: scheduler.ReasonStaleAttempt})
	}
	for _, j := range lost {
		s.loseAttempt(ctx, j, "agent restarted")
	}
	s.poke()
	return rc, nil
}

func sameRecord(a, b *job.Worker) bool {
	return a.Name == b.Name && a.Hostname == b.Hostname && a.Version == b.Version &&
		a.Capacity == b.Capacity && a.Drained == b.Drained && a.DownSince.Equal(b.DownSince) &&
		maps.Equal(a.Labels, b.Labels)
}

// Heartbeat records that a worker is alive and, when st is not nil, its
// resource usage. Any message from an agent counts. It returns false when
// the worker is unknown or was declared DOWN meanwhile: its jobs were ended
// and retried, so the caller must close the stream, and the agent's next
// Hello reconciles (its stale attempts are cancelled).
func (s *Cluster) Heartbeat(workerID string, st *Stats) bool {
	now := s.cfg.Now()
	alive := false
	s.workers.Compute(workerID, func(old *workerState, loaded bool) (*workerState, bool) {
		if !loaded {
			return nil, true
		}
		if old.state == job.WorkerDown {
			return old, false
		}
		alive = true
		n := *old
		n.lastSeen = now
		if st != nil {
			n.stats = *st
		}
		return &n, false
	})
	return alive
}

// WorkerLeaving stops new assignments to a connected worker whose agent
// said it is going (SIGTERM: detaching, or draining its jobs), until its
// next Hello. It is not persisted: unlike Drain, a restarted agent takes
// work again.
func (s *Cluster) WorkerLeaving(workerID string) {
	changed := false
	s.workers.Compute(workerID, func(old *workerState, loaded bool) (*workerState, bool) {
		if !loaded || old.state != job.WorkerReady {
			return old, !loaded
		}
		n := *old
		n.state, n.leaving, changed = job.WorkerDraining, true, true
		return &n, false
	})
	if changed {
		s.workerChanged(workerID)
	}
}

// WorkerGone marks a worker's stream closed. Its jobs keep their state for
// one lease from its last heartbeat, so that a reconnect finds them.
func (s *Cluster) WorkerGone(workerID string) {
	s.workers.Compute(workerID, func(old *workerState, loaded bool) (*workerState, bool) {
		if !loaded {
			return nil, true
		}
		n := *old
		n.connected = false
		return &n, false
	})
	s.workerChanged(workerID)
	s.poke()
}

// Drain stops new assignments to a worker and persists that. Errors:
// job.ErrNotFound.
func (s *Cluster) Drain(ctx context.Context, workerID string) (WorkerInfo, error) {
	return s.setDrained(ctx, workerID, true)
}

// Undrain undoes Drain and persists that: the worker takes new jobs again
// once it is connected, and the next pass may place the jobs that waited.
// A worker that is not drained is left as it is. Errors: job.ErrNotFound.
func (s *Cluster) Undrain(ctx context.Context, workerID string) (WorkerInfo, error) {
	w, err := s.setDrained(ctx, workerID, false)
	if err == nil {
		s.poke()
	}
	return w, err
}

// setDrained writes a worker's Drained flag, then publishes it with the
// state that follows: READY ↔ DRAINING for a connected worker; DOWN and
// UNKNOWN stay (a Hello derives the state from the flag).
func (s *Cluster) setDrained(ctx context.Context, workerID string, drained bool) (WorkerInfo, error) {
	s.gc.mu.Lock()
	ws, ok := s.workers.Load(workerID)
	if !ok {
		s.gc.mu.Unlock()
		return WorkerInfo{}, fmt.Errorf("worker %s: %w", workerID, job.ErrNotFound)
	}
	if ws.rec.Drained != drained {
		rec := ws.rec.Clone()
		rec.Drained = drained
		if err := s.cfg.Store.PutWorker(ctx, rec); err != nil {
			s.gc.mu.Unlock()
			return WorkerInfo{}, err
		}
		s.workers.Compute(workerID, func(old *workerState, loaded bool) (*workerState, bool) {
			if !loaded {
				return nil, true
			}
			n := *old
			n.rec, n.unsaved, n.leaving = rec, false, false // drained or undrained by hand now
			switch {
			case drained && n.state == job.WorkerReady:
				n.state = job.WorkerDraining
			case !drained && n.state == job.WorkerDraining:
				n.state = job.WorkerReady
			}
			return &n, false
		})
	}
	s.gc.mu.Unlock()
	s.workerChanged(workerID)
	if w, ok := s.Worker(workerID); ok {
		return w, nil
	}
	return WorkerInfo{}, fmt.Errorf("worker %s: %w", workerID, job.ErrNotFound)
}

// Workers returns every known worker sorted by id, with its allocation.
// It costs every worker and every running job; WorkerPage costs a page.
func (s *Cluster) Workers() []WorkerInfo {
	alloc := make(map[string]job.Resources, s.workers.Size())
	running := make(map[string][]string, s.workers.Size())
	s.forActive(func(j *job.Job) {
		alloc[j.Worker] = alloc[j.Worker].Add(j.Spec.Resources)
		running[j.Worker] = append(running[j.Worker], j.ID)
	})
	var out []WorkerInfo
	s.workers.Range(func(id string, w *workerState) bool {
		slices.Sort(running[id])
		out = append(out, workerInfo(w, alloc[id], running[id]))
		return true
	})
	slices.SortFunc(out, func(a, b WorkerInfo) int { return cmp.Compare(a.Worker.ID, b.Worker.ID) })
	return out
}

// WorkerCounts are the workers by state and the slots of those not DOWN
// or UNKNOWN, as an overview shows them. Leaving workers (their agent said
// goodbye) are counted apart from the drained.
type WorkerCounts struct {
	Ready, Draining, Leaving, Down, Unknown int
	Slots, SlotsUsed                        int64
}

// CountWorkers counts the workers by state and their slots. It costs the
// number of workers and of active jobs, and lists neither.
func (s *Cluster) CountWorkers() WorkerCounts {
	var c WorkerCounts
	live := make(map[string]bool, s.workers.Size())
	s.workers.Range(func(id string, w *workerState) bool {
		switch {
		case w.state == job.WorkerReady:
			c.Ready++
		case w.state == job.WorkerDraining && w.leaving:
			c.Leaving++
		case w.state == job.WorkerDraining:
			c.Draining++
		case w.state == job.WorkerDown:
			c.Down++
		default:
			c.Unknown++
		}
		if w.state != job.WorkerDown && w.state != job.WorkerUnknown {
			live[id] = true
			c.Slots += w.rec.Capacity.Slots
		}
		return true
	})
	s.mu.RLock()
	for _, j := range s.active {
		if live[j.Worker] {
			c.SlotsUsed += j.Spec.Resources.Slots
		}
	}
	s.mu.RUnlock()
	return c
}

// Page sizes of WorkerPage.
const MaxWorkerPage = 1000

// WorkerPage returns up to limit workers (at most MaxWorkerPage) in id
// order after the id after ("" : from the first), as Workers lists them,
// and the page token of the next page ("" when there is none): the last
// id of this one. It finds the page in an ordered index and reads only
// the page's workers' jobs, so a page costs its size among any number of
// workers.
func (s *Cluster) WorkerPage(after string, limit int) ([]WorkerInfo, string) {
	limit = min(max(limit, 1), MaxWorkerPage)
	ids, more := s.workers.after(after, limit)
	out := make([]WorkerInfo, 0, len(ids))
	for _, id := range ids {
		if w, ok := s.Worker(id); ok { // else deleted meanwhile
			out = append(out, w)
		}
	}
	if !more || len(ids) == 0 {
		return out, ""
	}
	return out, ids[len(ids)-1]
}

// Worker returns one worker as Workers would list it; ok is false when
// there is no such worker. It costs what that worker runs.
func (s *Cluster) Worker(id string) (w WorkerInfo, ok bool) {
	ws, ok := s.workers.Load(id)
	if !ok {
		return WorkerInfo{}, false
	}
	var (
		alloc   job.Resources
		running []string
	)
	for _, j := range s.activeOn(id) {
		alloc = alloc.Add(j.Spec.Resources)
		running = append(running, j.ID)
	}
	return workerInfo(ws, alloc, running), true
}

// workerInfo is a worker as listings show it, with what its jobs hold.
func workerInfo(w *workerState, alloc job.Resources, running []string) WorkerInfo {
	seen := w.lastSeen
	if w.state == job.WorkerUnknown {
		seen = time.Time{} // not seen since the restart; lastSeen times its lease
	}
	return WorkerInfo{
		Worker: w.rec, State: w.state, Connected: w.connected, LastSeen: seen,
		Stats: w.stats, Allocated: alloc, Running: running, Leaving: w.leaving,
	}
}

// JobStarted records that an agent started an attempt. A repeated report is
// accepted; a report for an attempt the job has left fails with
// job.ErrConflict.
func (s *Cluster) JobStarted(ctx context.Context, workerID string, ref Ref, at time.Time) error {
	for range 3 {
		cur, err := s.Get(ctx, ref.JobID)
		if err != nil {
			return err
		}
		if cur.Attempt != ref.Attempt || cur.Worker != workerID {
			return job.Conflict(ref.JobID, "%s: attempt %d on %s is not the current one", scheduler.ReasonStaleAttempt, ref.Attempt, workerID)
		}
		switch cur.State {
		case job.Running:
			return nil
		case job.Scheduled:
		default:
			return job.Conflict(ref.JobID, "%s: job is %s", scheduler.ReasonStaleAttempt, cur.State)
		}
		next := cur.Clone()
		next.State, next.StartedAt = job.Running, at
		errs, err := s.apply(ctx, []job.Update{job.Change(cur, next)})
		if err != nil {
			return err
		}
		if !errors.Is(errs[0], job.ErrConflict) {
			return errs[0]
		}
		s.refresh(ctx, ref.JobID)
	}
	return job.Conflict(ref.JobID, "changed too often")
}

// JobFinished records the end of an attempt and moves the job on: to
// Completed, to Failed or Cancelled, or back to Pending for a retry. A
// report for an attempt the job has already left (a duplicate, or one from
// a worker declared lost) fails with job.ErrConflict and changes nothing.
func (s *Cluster) JobFinished(ctx context.Context, workerID string, f scheduler.Finish) (*job.Job, error) {
	for range 3 {
		cur, err := s.Get(ctx, f.JobID)
		if err != nil {
			return nil, err
		}
		if cur.Attempt != f.Attempt || cur.Worker != workerID || !cur.State.Active() {
			return nil, job.Conflict(f.JobID, "%s: attempt %d on %s is not running (job is %s, attempt %d)",
				scheduler.ReasonStaleAttempt, f.Attempt, workerID, cur.State, cur.Attempt)
		}
		next := scheduler.Finished(cur, f, s.cfg.Now())
		errs, err := s.apply(ctx, []job.Update{job.Change(cur, next)})
		if err != nil {
			return nil, err
		}
		if errs[0] == nil {
			return next, nil
		}
		if !errors.Is(errs[0], job.ErrConflict) {
			return nil, errs[0]
		}
		s.refresh(ctx, f.JobID)
	}
	return nil, job.Conflict(f.JobID, "changed too often")
}

// finishAttempt ends an attempt on the server's own authority (worker lost,
// stop not confirmed), logging rather than returning a lost race.
func (s *Cluster) finishAttempt(ctx context.Context, cur *job.Job, f scheduler.Finish, why string) error {
	next := scheduler.Finished(cur, f, s.cfg.Now())
	errs, err := s.apply(ctx, []job.Update{job.Change(cur, next)})
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		s.log.Warn("end attempt", "job", cur.ID, "attempt", cur.Attempt, "why", why, "err", err)
		return err
	}
	s.log.Info("attempt ended by server", "job", cur.ID, "attempt", cur.Attempt, "why", why, "state", next.State)
	return nil
}

// loseAttempt ends an attempt its worker no longer has, retrying when a
// concurrent write (a start report in flight, say) moved the job first but
// left the same attempt on the same worker.
func (s *Cluster) loseAttempt(ctx context.Context, j *job.Job, why string) {
	for range 3 {
		if s.finishAttempt(ctx, j, scheduler.Finish{JobID: j.ID, Attempt: j.Attempt, Outcome: scheduler.Lost, ExitCode: -1}, why) == nil {
			return
		}
		s.refresh(ctx, j.ID)
		cur, err := s.Get(ctx, j.ID)
		if err != nil || cur.Attempt != j.Attempt || cur.Worker != j.Worker || !cur.State.Active() {
			return // ended or moved on meanwhile
		}
		j = cur
	}
}

// forActive calls fn for every job that is Scheduled or Running, from a
// copy taken under the lock.
func (s *Cluster) forActive(fn func(*job.Job)) {
	s.mu.RLock()
	jobs := make([]*job.Job, 0, len(s.active))
	for _, j := range s.active {
		jobs = append(jobs, j)
	}
	s.mu.RUnlock()
	for _, j := range jobs {
		fn(j)
	}
}

// activeCount returns how many Scheduled and Running jobs a worker holds.
func (s *Cluster) activeCount(worker string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byWorker[worker])
}

// activeOn returns the Scheduled and Running jobs of one worker, in id
// order. It costs what that worker runs, not what the cluster does.
func (s *Cluster) activeOn(worker string) []*job.Job {
	s.mu.RLock()
	jobs := make([]*job.Job, 0, len(s.byWorker[worker]))
	for id := range s.byWorker[worker] {
		jobs = append(jobs, s.active[id])
	}
	s.mu.RUnlock()
	slices.SortFunc(jobs, func(a, b *job.Job) int { return cmp.Compare(a.ID, b.ID) })
	return jobs
}

func (s *Cluster) cancelOrder(j *job.Job, reason string) CancelOrder {
	return CancelOrder{JobID: j.ID, Attempt: j.Attempt, Grace: s.cfg.KillGrace, Reason: reason}
}

// sendCancel sends a stop order for j's attempt and starts the clock on its
// confirmation.
func (s *Cluster) sendCancel(j *job.Job, reason string) {
	s.cancelSent.Store(j.ID, s.cfg.Now())
	s.cfg.Dispatcher.Cancel(j.Worker, s.cancelOrder(j, reason))
	s.poke()
}

// Revoke declares a worker DOWN at once, because its agent was cut off:
// the next pass ends its jobs as lost, and they retry per their policy.
// It reports whether the worker was known.
func (s *Cluster) Revoke(workerID string) bool {
	known := false
	now := s.cfg.Now()
	s.workers.Compute(workerID, func(old *workerState, loaded bool) (*workerState, bool) {
		if !loaded {
			return nil, true
		}
		known = true
		n := downState(old, now)
		n.connected = false
		return n, false
	})
	if known {
		s.gc.dirty.Store(true)
		s.workerChanged(workerID)
	}
	s.poke()
	return known
}

// workerChanged tells Config.OnWorker that a worker changed.
func (s *Cluster) workerChanged(id string) {
	if s.cfg.OnWorker != nil {
		s.cfg.OnWorker(id)
	}
}
