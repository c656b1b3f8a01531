package scheduler

import (
	"cmp"
	"iter"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/quota"
	"github.com/hodei-jobs/hodei/wfq"
)

// Placement chooses among the feasible workers for a job.
type Placement int

const (
	// BinPack puts a job on the feasible worker with the most slots in use,
	// keeping whole hosts free for large jobs. The default.
	BinPack Placement = iota
	// Spread puts a job on the feasible worker with the most slots free.
	Spread
)

// ParsePlacement reads "binpack" or "spread".
func ParsePlacement(s string) (Placement, error) {
	switch s {
	case "", "binpack":
		return BinPack, nil
	case "spread":
		return Spread, nil
	}
	return 0, job.Invalid("placement", "%q is not a placement; use binpack or spread", s)
}

// DefaultEstimate is how long a tenant's job is expected to hold its slots
// before any of its jobs has finished.
const DefaultEstimate = 10 * time.Second

// WorkerView is what a decision knows of one worker that accepts work.
type WorkerView struct {
	ID       string
	Labels   map[string]string
	Free     job.Resources // capacity minus what its active jobs hold
	Capacity job.Resources
}

// TenantView is what a decision knows of one tenant.
type TenantView struct {
	Weight  float64       // fair-share weight; <= 0 counts as 1
	Limits  quota.Limits  // running limits enforced at dispatch
	Burst   quota.Burst   // burst state, brought to now
	Running job.Resources // held by the tenant's active jobs
	// Tag is the tenant's fair-queuing tag (wfq.Ledger.Tag): lower goes
	// first.
	Tag float64
	// Estimate is how long its next job is expected to hold its slots;
	// <= 0: DefaultEstimate.
	Estimate time.Duration
	// Preemptible lets Decide stop its running jobs for a tenant below its
	// share.
	Preemptible bool
	// Held holds the tenant at its running limit: its burst just ended, or
	// it cools down. What runs over the limit is stopped and requeued.
	Held bool
}

// Snapshot is the input of Decide: the waiting work, the running work and
// the workers, as one consistent picture. Decide does not modify it.
type Snapshot struct {
	// Queues holds each tenant's eligible waiting work (dependencies met,
	// backoff over), best first. Decide reads a queue only as far as the
	// pass gets: it is never walked whole.
	Queues map[string]Queue
	// Walks gives the same work as Queues, as walks that pass over the
	// rest of a shape at once (see Walk); when set, Queues and Pending are
	// not read.
	Walks Walks
	// Pending is the other way to give Decide waiting work: jobs in any
	// order, which Decide ranks as at now. It is read only when Queues is
	// nil (tests and tools that hold jobs rather than queues).
	Pending []*job.Job
	// Active holds every Scheduled and Running job, in any order.
	Active  []*job.Job
	Workers []WorkerView // accepting work; with Preempt, full ones too
	// Live holds the workers that are not DOWN (connected or within their
	// lease): an active job on any other worker has lost its attempt.
	// nil: every worker of an active job is live.
	Live      map[string]bool
	Tenants   map[string]TenantView // missing tenants have weight 1, no limits
	Placement Placement
	Aging     time.Duration // see EffectivePriority; 0: DefaultAging
	// Preempt allows stopping preemptible jobs of tenants above their share
	// for tenants below it whose jobs fit nowhere.
	Preempt bool
	// ArrayRunning counts the Scheduled and Running jobs of each array that
	// has a limit: an array at its limit waits.
	ArrayRunning map[string]int
	// Reserved holds room for waiting jobs on workers: a preemption is
	// making it for them. Until the job is placed, what it asks for is held
	// back on that worker.
	Reserved []Reservation
	// StopSent holds, by job id, when the last stop order for an active job
	// with CancelRequested went out. A stop with no entry is sent again; a
	// stop not confirmed within Confirm ends the attempt.
	StopSent map[string]time.Time
	Confirm  time.Duration
	// Orphans are waiting jobs one of whose dependencies ended without
	// letting them run.
	Orphans []Orphan
}

// Reservation is room held on Worker for Job.
type Reservation struct {
	Job    *Waiting
	Worker string
}

// Orphan is a waiting job that can never run because of Dep, one of its
// dependencies: it ended other than Completed (Dep is that job), or it no
// longer exists (Dep nil, DepID its id).
type Orphan struct {
	Job   *Waiting
	Dep   *job.Job
	DepID string
}

// Assignment places one job on one worker.
type Assignment struct {
	// Job is the waiting job; for a task of an array not yet materialized,
	// a Waiting with Tasks set, its own ID and Position.
	Job    *Waiting
	Worker string
	// Charge is what the dispatch costs its tenant in the fair-queuing
	// ledger: slots × expected seconds, before the weight.
	Charge float64
	// Start is the tenant's tag when it was picked for this job: the
	// virtual time moves up to the Start of the last dispatch.
	Start float64
}

// Preemption is a running job to stop and put back in the queue.
type Preemption struct {
	Job *job.Job
	By  string // the tenant that needs the room
	For string // the id of the job that needs it
}

// StopKind says why a pass ends or stops an active job.
type StopKind int

const (
	// StopLost: the job's worker is DOWN; the attempt ended as lost and
	// the job retries per its policy.
	StopLost StopKind = iota + 1
	// StopUnconfirmed: a stop order went out and no agent confirmed it
	// within Snapshot.Confirm; the attempt ended as killed.
	StopUnconfirmed
	// StopTimeout: a Running job passed its timeout; its agent is told to
	// stop it.
	StopTimeout
	// StopBurstEnded: its tenant's burst ended and it runs over the
	// running limit; it goes back to the queue (at once when not started).
	StopBurstEnded
)

func (k StopKind) String() string {
	switch k {
	case StopLost:
		return "lost"
	case StopUnconfirmed:
		return "unconfirmed"
	case StopTimeout:
		return "timeout"
	case StopBurstEnded:
		return "burst-ended"
	}
	return "StopKind(" + strconv.Itoa(int(k)) + ")"
}

// Stop ends or stops one active job.
type Stop struct {
	Job  *job.Job
	Kind StopKind
}

// Cancel ends a waiting job that can never run.
type Cancel struct {
	Job    *Waiting
	Reason string
}

// Plan is the output of Decide: everything one pass changes, to be
// committed at once.
type Plan struct {
	Assignments []Assignment
	// Bursts holds the tenants whose burst state the plan changes (a burst
	// starts with one of its assignments).
	Bursts      map[string]quota.Burst
	Preemptions []Preemption
	Stops       []Stop
	Cancels     []Cancel
	// Resend holds active jobs whose stop order must go out again (none
	// went out since the server started).
	Resend []*job.Job
	// Next is the earliest later instant at which a timer in the snapshot
	// (a timeout, a stop's confirmation) comes due; zero: none.
	Next time.Time
	// Held is the worker the pass kept out of use for a waiting job that
	// does not fit on it yet, if any; it changes nothing by itself, and
	// says why jobs wait.
	Held *Hold
}

// Hold is a worker a pass kept out of use for Job, the least-served
// tenant's first job that fit no worker's free room: Worker is the one
// closest to fitting it, and Free what it had free. No smaller job takes
// that room meanwhile (there is no backfill), so that the worker empties
// instead of filling with small jobs.
type Hold struct {
	Job    *Waiting
	Worker string
	Free   job.Resources
}

// IsZero reports whether the plan changes nothing.
func (p *Plan) IsZero() bool {
	return len(p.Assignments) == 0 && len(p.Preemptions) == 0 && len(p.Stops) == 0 &&
		len(p.Cancels) == 0 && len(p.Resend) == 0
}

// maxSkips bounds the placement attempts one pass spends on a tenant's
// queue without placing anything (the entry fits no worker's free room
// now, or its array is at its limit). An entry that fits no free room
// makes the walk leave out every later entry of its shape for the rest of
// the pass (Walk.SkipShape), so a backlog of one shape costs one attempt
// however many jobs it holds, and this budget bounds the distinct shapes
// a pass tries per tenant; maxShapeSkips bounds those it meets that are
// already known to fit nowhere this pass (found so in another tenant's
// queue), which cost a step, no placement. When a tenant's walk runs out
// of either, the pass stops reading it (the walk is cut), and the
// cluster's next walk of that queue starts after the last shape this one
// tried and comes round to the others last, so that a job that fits free
// room is reached within a few passes whatever number of shapes waiting
// for busy workers are ahead of it. Jobs no ready worker could ever take
// are not in the walks at all: the cluster parks them until a worker
// that could take them joins (cluster/park.go).
const (
	maxSkips      = 256
	maxShapeSkips = 16 * maxSkips
)

// cursor draws one tenant's work from its queue for a pass, expanding an
// array's unmaterialized tasks one at a time.
type cursor struct {
	walk   Walk
	cut    bool     // the pass stopped reading it for its budget
	gen    *Waiting // the array entry being drawn from, if any
	genAt  func() (int, bool)
	genEnd func()
	skips  int // entries passed over that cost a placement (or hit a limit)
	known  int // entries passed over for a shape known to fit nowhere
}

func newCursor(w Walk) *cursor { return &cursor{walk: w} }

// pop returns the next job, or a task of an array; ok is false when the
// queue is done.
func (c *cursor) pop() (*Waiting, bool) {
	for {
		if c.gen != nil {
			if p, ok := c.genAt(); ok {
				return c.gen.task(p), true
			}
			c.dropArray()
		}
		w, ok := c.walk.Next()
		if !ok {
			return nil, false
		}
		if w.Tasks == nil {
			return w, true
		}
		c.gen = w
		c.genAt, c.genEnd = iter.Pull(w.Tasks.Positions())
	}
}

// dropArray stops drawing from the current array for this pass.
func (c *cursor) dropArray() {
	if c.gen != nil {
		c.genEnd()
		c.gen = nil
	}
}

func (c *cursor) close() {
	c.dropArray()
	c.walk.Stop(c.cut)
}

// task is the Waiting of position p of the array entry w.
func (w *Waiting) task(p int) *Waiting {
	t := *w
	t.ID = job.TaskID(w.Tasks.Array, p)
	t.Position = int32(p)
	return &t
}

// IsTask reports whether w is a task of an array not yet materialized
// (Position says which).
func (w *Waiting) IsTask() bool { return w.Tasks != nil && w.ID != w.Tasks.Array }

// Decide is one pass's whole decision. It ends the attempts of jobs whose
// worker is lost, stops jobs past their timeout or over a running limit
// their tenant's burst no longer covers, gives up on stops no agent
// confirmed, cancels waiting jobs a dependency failed, and assigns as many
// waiting jobs as free capacity allows: between tenants by weighted fair
// queuing on their tags; within a tenant in queue order. A tenant at its
// running limit (burst included) waits; a job that fits nowhere is skipped
// so smaller jobs behind it can still start, and with Preempt it may make
// room by preemption.
//
// Decide is pure and deterministic: the same snapshot gives the same plan,
// whatever the order of its slices and maps.
func Decide(s Snapshot, now time.Time) Plan {
	var plan Plan
	running := make(map[string]job.Resources, len(s.Tenants))
	for _, tenant := range sortedKeys(s.Tenants) {
		running[tenant] = s.Tenants[tenant].Running
	}
	arrays := maps.Clone(s.ArrayRunning)
	if arrays == nil {
		arrays = make(map[string]int)
	}
	stopActive(s, now, &plan, running, arrays)
	gone := make(map[string]bool, len(s.Orphans)) // cancelled by this plan
	for _, o := range sortedOrphans(s.Orphans) {
		plan.Cancels = append(plan.Cancels, Cancel{Job: o.Job, Reason: orphanReason(o)})
		gone[o.Job.ID] = true
	}
	queues := s.Walks
	if queues == nil {
		qs := s.Queues
		if qs == nil {
			qs = queuesFrom(s.Pending, now, s.Aging)
		}
		queues = make(Walks, len(qs))
		for t, q := range qs {
			queues[t] = func() Walk { return WalkOf(q) }
		}
	}
	if len(queues) == 0 || len(s.Workers) == 0 {
		return plan
	}
	cursors := make(map[string]*cursor, len(queues))
	defer func() {
		for _, c := range cursors {
			c.close()
		}
	}()
	var picker wfq.Picker
	bursts := make(map[string]quota.Burst, len(s.Tenants))
	for _, tenant := range sortedKeys(s.Tenants) {
		bursts[tenant] = s.Tenants[tenant].Burst
	}
	for _, tenant := range sortedKeys(queues) {
		tv := s.Tenants[tenant]
		picker.Add(tenant, tv.Weight, tv.Tag)
		cursors[tenant] = newCursor(queues[tenant]())
	}

	pl := newPlacer(sortedWorkers(s.Workers), s.Placement)
	assign := func(w *Waiting, at int, tv TenantView, burst quota.Burst) {
		tenant, req := w.Tenant, w.Resources
		if burst != bursts[tenant] {
			bursts[tenant] = burst
			if plan.Bursts == nil {
				plan.Bursts = make(map[string]quota.Burst)
			}
			plan.Bursts[tenant] = burst
		}
		pl.take(at, req)
		running[tenant] = running[tenant].Add(req)
		if w.ArrayLimit > 0 {
			arrays[w.Array]++
		}
		charge := float64(req.Slots) * estimateOf(tv).Seconds()
		start := picker.Tag(tenant)
		picker.Charge(tenant, charge)
		plan.Assignments = append(plan.Assignments, Assignment{Job: w, Worker: pl.id(at), Charge: charge, Start: start})
	}
	atLimit := func(w *Waiting) bool { // its array runs as many as it may
		return w.ArrayLimit > 0 && arrays[w.Array] >= int(w.ArrayLimit)
	}
	placed := placeReserved(s, now, pl, running, bursts, gone, atLimit, assign)
	var freeSlots int64
	for _, w := range pl.workers {
		freeSlots += max(w.Free.Slots, 0)
	}
	// unplaceable remembers job shapes that found no worker this pass, so a
	// backlog of identical jobs costs one scan, not one scan each.
	type shape struct {
		res      job.Resources
		selector string
	}
	unplaceable := make(map[shape]bool)
	// never remembers the shapes no worker could ever take (reserve found
	// none): asking again would cost a scan of the workers for each job.
	never := make(map[shape]bool)
	unfit := make(map[string][]*Waiting) // tenant → its jobs that fit nowhere, in order
	nowNano := now.UnixNano()
	for freeSlots > 0 {
		tenant, ok := picker.Next()
		if !ok {
			break
		}
		c := cursors[tenant]
		if c.skips >= maxSkips || c.known >= maxShapeSkips {
			c.cut = true
			picker.Remove(tenant)
			continue
		}
		w, ok := c.pop()
		if !ok {
			picker.Remove(tenant)
			continue
		}
		if placed[w.ID] || gone[w.ID] || w.Since > nowNano {
			continue // placed by its reservation, cancelled, or still backing off
		}
		if atLimit(w) {
			c.skips++
			if w.Tasks != nil {
				c.dropArray()
			}
			continue
		}
		tv := s.Tenants[tenant]
		req := w.Resources
		burst, ok := tv.Limits.Admit(bursts[tenant], running[tenant], req, now)
		if !ok {
			picker.Remove(tenant) // at its running limit for this pass
			continue
		}
		key := shape{req, SelectorKey(w.Selector)}
		at := -1
		if unplaceable[key] {
			c.known++
		} else {
			at = pl.place(w)
		}
		if at < 0 {
			if !unplaceable[key] {
				c.skips++
			}
			unplaceable[key] = true
			unfit[tenant] = append(unfit[tenant], w)
			if w.Tasks != nil {
				c.dropArray() // its other tasks are the same shape
			}
			c.walk.SkipShape() // and so are the later entries of its shape

			if plan.Held == nil && !never[key] {
				// The least-served tenant's job fits nowhere: keep the
				// worker closest to fitting it out of this pass, so that
				// it empties instead of filling with smaller jobs.
				if r := pl.reserve(w); r >= 0 {
					plan.Held = &Hold{Job: w, Worker: pl.id(r), Free: pl.workers[r].Free}
					freeSlots -= max(pl.workers[r].Free.Slots, 0)
				} else {
					never[key] = true
				}
			}
			continue
		}
		assign(w, at, tv, burst)
		freeSlots -= req.Slots
	}
	if s.Preempt {
		memo := make(map[string][]*Waiting)
		waiting := func(tenant string) []*Waiting {
			if out, ok := memo[tenant]; ok {
				return out
			}
			out := slices.Clone(unfit[tenant])
			if c := cursors[tenant]; c != nil {
				for len(out) < maxPreemptTries {
					w, ok := c.pop()
					if !ok {
						break
					}
					if !placed[w.ID] && !gone[w.ID] {
						out = append(out, w)
					}
				}
			}
			out = slices.DeleteFunc(out, atLimit)
			memo[tenant] = out
			return out
		}
		plan.Preemptions = preempt(s, now, pl, running, bursts, waiting)
	}
	return plan
}

// placeReserved places the jobs that have room reserved for them where it
// is free by now, holds back what the others ask for on their workers (the
// victims are still stopping), and returns the ids it placed.
func placeReserved(s Snapshot, now time.Time, pl *placer, running map[string]job.Resources, bursts map[string]quota.Burst,
	gone map[string]bool, atLimit func(*Waiting) bool, assign func(*Waiting, int, TenantView, quota.Burst)) map[string]bool {
	if len(s.Reserved) == 0 {
		return nil
	}
	rs := slices.Clone(s.Reserved)
	slices.SortFunc(rs, func(a, b Reservation) int { return cmp.Compare(a.Job.ID, b.Job.ID) })
	placed := make(map[string]bool)
	for _, r := range rs {
		w := r.Job
		if gone[w.ID] {
			continue
		}
		i := pl.index(r.Worker)
		if i < 0 || !job.LabelsMatch(pl.workers[i].Labels, w.Selector) {
			continue // gone or relabelled: the reservation lapses
		}
		req := w.Resources
		tv := s.Tenants[w.Tenant]
		if w.Since <= now.UnixNano() && !atLimit(w) && pl.workers[i].Free.Covers(req) {
			if burst, ok := tv.Limits.Admit(bursts[w.Tenant], running[w.Tenant], req, now); ok {
				assign(w, i, tv, burst)
				placed[w.ID] = true
				continue
			}
		}
		pl.take(i, capAt(req, pl.workers[i].Free)) // held back for it
	}
	return placed
}

// capAt returns r with each dimension at most what free has (and not below
// zero).
func capAt(r, free job.Resources) job.Resources {
	return job.Resources{
		CPUMillis: max(min(r.CPUMillis, free.CPUMillis), 0),
		MemoryMiB: max(min(r.MemoryMiB, free.MemoryMiB), 0),
		Slots:     max(min(r.Slots, free.Slots), 0),
	}
}

func estimateOf(tv TenantView) time.Duration {
	if tv.Estimate <= 0 {
		return DefaultEstimate
	}
	return tv.Estimate
}

func weightOf(tv TenantView) float64 {
	if tv.Weight <= 0 {
		return 1
	}
	return tv.Weight
}

// SelectorKey is a selector as a string, equal for equal selectors and
// different for different ones whatever bytes they hold: each key and value
// after its length, keys in order. The cluster interns selectors by it.
func SelectorKey(sel map[string]string) string {
	if len(sel) == 0 {
		return "" // most jobs: no allocation on a pass's path
	}
	var b []byte
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		v := sel[k]
		b = strconv.AppendInt(b, int64(len(k)), 10)
		b = append(b, ':')
		b = append(b, k...)
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	}
	return string(b)
}
