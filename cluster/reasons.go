package cluster

import (
	"sync"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// A Pending job says why it waits (Why). Nothing of it is computed by a
// pass or stored: a reason is derived when someone asks (jobs get, jobs
// ls, pipeline get), from what memory keeps anyway — the job's entry in
// the wait table, the workers, its tenant's figures and limits, and the
// one worker the last pass kept for a job (Cluster.held, from the plan)
// — so a pass costs what it did however many jobs wait and of how many
// shapes, a restart has nothing to rebuild, and a reason is never stale:
// a worker that joins with the missing label changes the next answer.
//
// What costs is explaining a job against the workers, O(workers): it
// depends only on the job's shape (resources and selector) and on the
// workers, so it is cached per shape for one generation of the workers
// (see workerMap), and a listing of many jobs of a few shapes explains
// each shape once.

// maxCachedShapes bounds the shapes explained per worker generation;
// past it the cache starts over.
const maxCachedShapes = 4096

// aheadWalk bounds the entries of a tenant's queue that counting the jobs
// ahead of one walks; past it the count is "at least".
const aheadWalk = 1000

// reasonCache holds, for one generation of the workers, what explanations
// read of them and the explanation of each shape asked about.
type reasonCache struct {
	mu      sync.Mutex
	valid   bool
	gen     uint64                     // guarded by mu: of workerMap, when workers was taken
	workers []scheduler.WorkerStatus   // guarded by mu
	shapes  map[shapeKey]scheduler.Why // guarded by mu
	// readyFor is, per shape asked about, the ready workers that could
	// ever take it (Cluster.readyFor); each slice is never modified.
	readyFor map[shapeKey][]scheduler.WorkerStatus // guarded by mu
}

// shapeKey is a waiting job's shape: what it asks of a worker.
type shapeKey struct {
	res      job.Resources
	selector string // scheduler.SelectorKey
}

// statuses brings c up to the workers' current generation. The caller
// holds c.mu.
func (s *Cluster) statuses(c *reasonCache) []scheduler.WorkerStatus {
	gen := s.workers.generation() // before the walk: a change during it moves it again
	if c.valid && c.gen == gen {
		return c.workers
	}
	c.workers = c.workers[:0]
	s.workers.Range(func(_ string, w *workerState) bool {
		c.workers = append(c.workers, scheduler.WorkerStatus{
			Labels: w.rec.Labels, Capacity: w.rec.Capacity, State: w.state, Connected: w.connected,
		})
		return true
	})
	c.gen, c.valid = gen, true
	c.shapes = make(map[shapeKey]scheduler.Why)
	c.readyFor = make(map[shapeKey][]scheduler.WorkerStatus)
	return c.workers
}

// unfit is scheduler.Unfit against the registered workers, cached per
// shape for the workers' generation.
func (s *Cluster) unfit(res job.Resources, sel map[string]string) scheduler.Why {
	key := shapeKey{res, scheduler.SelectorKey(sel)}
	c := &s.reasons
	c.mu.Lock()
	defer c.mu.Unlock()
	ws := s.statuses(c)
	if why, ok := c.shapes[key]; ok {
		return why
	}
	why := scheduler.Unfit(res, sel, ws)
	if len(c.shapes) >= maxCachedShapes {
		clear(c.shapes)
	}
	c.shapes[key] = why
	return why
}

// NeverFits explains why no registered worker, whatever it runs and
// whether it is draining or down, could take a job of spec (by capacity
// and labels): submit's require-fit check. WhyNone when one could. Safe
// for concurrent use.
func (s *Cluster) NeverFits(spec job.Spec) scheduler.Why {
	c := &s.reasons
	c.mu.Lock()
	defer c.mu.Unlock()
	return scheduler.NeverFits(spec.Resources, spec.Selector, s.statuses(c))
}

// FitError is the error of a submit with require-fit for a job no
// registered worker could take (see NeverFits): a *job.FieldError naming
// the field that does not fit, nil when one could.
func (s *Cluster) FitError(spec job.Spec) error {
	why := s.NeverFits(spec)
	field := ""
	switch why.Kind {
	case scheduler.WhyNone:
		return nil
	case scheduler.WhyLabels:
		field = "selector"
	case scheduler.WhySlots:
		field = "resources.slots"
	case scheduler.WhyCPU:
		field = "resources.cpu_millis"
	case scheduler.WhyMemory:
		field = "resources.memory_mib"
	case scheduler.WhyResources:
		field = "resources"
	default:
		field = "require_fit"
	}
	return job.Invalid(field, "%s (--require-fit)", why)
}

// waitInfo is what Why reads of a waiting job under the lock.
type waitInfo struct {
	at         where
	res        job.Resources
	sel        map[string]string
	tenant     string
	array      string
	arrayLimit int32
	attempt    int32
	since      int64
	held       job.Resources // what its tenant's active jobs hold
	running    int           // its array's active jobs
	dep        string        // the first dependency that has not ended
	depState   job.State
}

// Why says why the Pending job j waits, as of now (see scheduler.Why): a
// dependency that has not completed, its retry backoff, workers none of
// which could take it, its tenant's running limit, its array's limit, the
// worker the last pass kept for it (WhyReserved) or for a larger job
// whose kept room it would fit (WhyHeldBack), or the jobs ahead of it in
// its tenant's queue. WhyNone for a job that is
// not Pending (or no longer waits in memory). It reads memory only and
// costs O(1) but for counting the jobs ahead (at most aheadWalk entries)
// and, once per shape and worker generation, O(workers). Safe for
// concurrent use.
func (s *Cluster) Why(j *job.Job) scheduler.Why {
	if j.State != job.Pending {
		return scheduler.Why{}
	}
	now := s.cfg.Now()
	in, ok := s.waitInfo(j)
	if !ok {
		return scheduler.Why{}
	}
	switch in.at {
	case blocked:
		if in.dep == "" {
			return scheduler.Why{} // every dependency ended: the next pass files it
		}
		return scheduler.Why{Kind: scheduler.WhyDependency, Dep: in.dep, DepState: in.depState}
	case delayed:
		return scheduler.Why{Kind: scheduler.WhyBackoff, Attempt: int(in.attempt), Left: max(time.Unix(0, in.since).Sub(now), 0)}
	}
	if why := s.unfit(in.res, in.sel); why.Kind != scheduler.WhyNone {
		return why
	}
	l := s.limits(in.tenant)
	b, _ := l.At(s.fair.burst(in.tenant), now)
	if why := scheduler.TenantLimit(in.tenant, l, b, in.held, in.res, now); why.Kind != scheduler.WhyNone {
		return why
	}
	if in.arrayLimit > 0 && in.running >= int(in.arrayLimit) {
		return scheduler.Why{Kind: scheduler.WhyArrayLimit, Array: in.array, Running: in.running, ArrayCap: int(in.arrayLimit)}
	}
	// Only queued: count what is ahead of it, which is the one part that
	// walks (a bounded stretch of its tenant's queue).
	s.mu.RLock()
	defer s.mu.RUnlock()
	sl, pos, ok := s.slotOf(j)
	if !ok || !isReady(s.wait.at(sl).at) {
		return scheduler.Why{} // dispatched or moved meanwhile
	}
	if why, ok := s.heldWhy(j.ID, in.res, in.sel); ok {
		return why
	}
	ahead, atLeast := s.ahead(sl, pos)
	return scheduler.Why{Kind: scheduler.WhyQueued, Tenant: in.tenant, Ahead: ahead, AtLeast: atLeast}
}

// heldFor is what Why reads of the last pass's scheduler.Hold: the job a
// worker was kept for, and what that worker had free.
type heldFor struct {
	job   string
	array string // for a task not materialized yet, its array and
	pos   int    // its position; else -1
	free  job.Resources
	why   scheduler.Why // the job's own: scheduler.Reserved
}

// heldOf is h as Why reads it; nil for none.
func heldOf(h *scheduler.Hold) *heldFor {
	if h == nil {
		return nil
	}
	out := &heldFor{job: h.Job.ID, pos: -1, free: h.Free, why: scheduler.Reserved(h.Job.Resources, h.Worker, h.Free)}
	if h.Job.IsTask() {
		out.array, out.pos = h.Job.Tasks.Array, int(h.Job.Position)
	}
	return out
}

// heldWhy says whether the last pass's hold keeps the queued job id (of
// res and sel) waiting: it is the job the worker is kept for, or it would
// fit the room kept there. The caller holds mu.
func (s *Cluster) heldWhy(id string, res job.Resources, sel map[string]string) (scheduler.Why, bool) {
	h := s.held
	if h == nil || !s.stillWaits(h) {
		return scheduler.Why{}, false
	}
	if h.job == id {
		return h.why, true
	}
	res.Slots = max(res.Slots, 1) // as placement counts it
	w, ok := s.workers.Load(h.why.Worker)
	if !ok || !h.free.Covers(res) || !job.LabelsMatch(w.rec.Labels, sel) {
		return scheduler.Why{}, false
	}
	return scheduler.HeldBack(h.job, h.why), true
}

// stillWaits reports whether the job a hold is for still waits in its
// queue. The caller holds mu.
func (s *Cluster) stillWaits(h *heldFor) bool {
	if h.pos < 0 {
		sl, ok := s.wait.lookup(h.job)
		return ok && isReady(s.wait.at(sl).at)
	}
	st := s.arrays[h.array]
	return st != nil && st.entry != noSlot && st.tasks.Lazy(h.pos) && isReady(s.wait.at(st.entry).at)
}

// slotOf returns the slot of j's waiting entry: its own, or its array's
// for a task not materialized yet (pos is then its position; else -1).
// The caller holds mu.
func (s *Cluster) slotOf(j *job.Job) (sl slot, pos int, ok bool) {
	if sl, ok := s.wait.lookup(j.ID); ok {
		return sl, -1, true
	}
	if !s.isLazy(j) {
		return noSlot, -1, false
	}
	st := s.arrays[j.Spec.Array]
	if st == nil || st.entry == noSlot {
		return noSlot, -1, false
	}
	p, found := st.rec.Position(j.ID)
	if !found || !st.tasks.Lazy(p) {
		return noSlot, -1, false
	}
	return st.entry, p, true
}

// waitInfo reads what Why needs of j's waiting entry (see slotOf) under
// the lock; false when there is none.
func (s *Cluster) waitInfo(j *job.Job) (waitInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sl, _, ok := s.slotOf(j)
	if !ok {
		return waitInfo{}, false
	}
	e := s.wait.at(sl)
	in := waitInfo{
		at: e.at, res: e.res, sel: s.wait.selectors.get(e.selector),
		tenant: s.tenantList[e.tenant].name, array: s.wait.arrays.get(e.array),
		arrayLimit: e.arrayLimit, attempt: e.attempt, since: e.since,
	}
	switch e.at {
	case blocked:
		in.dep, in.depState = s.pendingDep(j.ID)
	case ready, parked:
		if c := s.counts[in.tenant]; c != nil {
			in.held = c.Held
		}
		in.running = s.arrayRunning[in.array]
	}
	return in, true
}

// pendingDep returns the first dependency of the blocked job id that has
// not ended, and its state; "" when they all ended. The caller holds mu.
func (s *Cluster) pendingDep(id string) (string, job.State) {
	for _, d := range s.needs[id] {
		if _, ok := s.wait.lookup(d); ok {
			return d, job.Pending
		}
		if a := s.active[d]; a != nil {
			return d, a.State
		}
		if st := s.arrayOf(d); st != nil {
			if p, ok := st.rec.Position(d); ok && st.tasks.Lazy(p) {
				return d, job.Pending
			}
		}
	}
	return "", 0
}

// ahead counts the jobs before the entry in slot sl in its tenant's queue
// (an array's entry counts its tasks not yet materialized), and for
// position pos of an array's entry (-1: none) the array's tasks before
// it. Only jobs that could run on a ready worker that could run this one
// count: jobs that wait for other workers (busy ones, or none: see
// park.go) hold nothing back, as a pass leaves out the rest of a shape
// that fits no free room (see walk.go). The count stops at aheadWalk
// (atLeast: there may be more), after at most aheadWalk entries counted
// and as many shapes left out. The caller holds mu.
func (s *Cluster) ahead(sl slot, pos int) (n int, atLeast bool) {
	e := s.wait.at(sl)
	if pos >= 0 {
		if st := s.arrays[s.wait.arrays.get(e.array)]; st != nil {
			n += st.tasks.LazyIn(0, pos-1)
		}
	}
	q := s.queues[s.tenantList[e.tenant].name]
	if q == nil {
		return min(n, aheadWalk), n > aheadWalk
	}
	mine := s.readyFor(e)
	walked, passed := 0, 0 // entries counted, and shapes left out
	at := qitem{e.key, sl}
	q.heads.AscendLessThan(at, func(h qitem) bool {
		if walked >= aheadWalk || passed >= aheadWalk || n > aheadWalk {
			atLeast = true
			return false
		}
		o := s.wait.at(h.slot)
		if !scheduler.Placeable(o.res, s.wait.selectors.get(o.selector), mine) {
			passed++
			return true
		}
		q.shapes[s.shapeOf(o)].AscendLessThan(at, func(it qitem) bool {
			if walked >= aheadWalk || n > aheadWalk {
				atLeast = true
				return false
			}
			walked++
			if o := s.wait.at(it.slot); o.tasks {
				if st := s.arrays[s.wait.arrays.get(o.array)]; st != nil {
					n += st.tasks.Left()
				}
				return true
			}
			n++
			return true
		})
		return !atLeast
	})
	if n > aheadWalk {
		return aheadWalk, true
	}
	return n, atLeast
}

// readyFor returns the ready workers that could ever take the entry e,
// cached per shape for the workers' generation (as unfit is); the caller
// must not modify the slice. The caller holds mu.
func (s *Cluster) readyFor(e *entry) []scheduler.WorkerStatus {
	key := s.shapeOf(e)
	c := &s.reasons
	c.mu.Lock()
	defer c.mu.Unlock()
	ws := s.statuses(c)
	if out, ok := c.readyFor[key]; ok {
		return out
	}
	sel := s.wait.selectors.get(e.selector)
	var out []scheduler.WorkerStatus
	for i := range ws {
		if scheduler.Placeable(e.res, sel, ws[i:i+1]) {
			out = append(out, ws[i])
		}
	}
	if len(c.readyFor) >= maxCachedShapes {
		clear(c.readyFor)
	}
	c.readyFor[key] = out
	return out
}
