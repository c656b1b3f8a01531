package scheduler

import (
	"maps"
	"slices"
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
}

// Snapshot is the input of Decide: the eligible jobs and the workers that
// accept work, as one consistent picture. Decide does not modify it, except
// that it reorders Pending.
type Snapshot struct {
	Pending []*job.Job // eligible now: dependencies met, backoff over
	// Active holds the Scheduled and Running jobs; Decide reads it only to
	// choose preemption victims.
	Active    []*job.Job
	Workers   []WorkerView          // with Preempt, full workers too
	Tenants   map[string]TenantView // missing tenants have weight 1, no limits
	Placement Placement
	Aging     time.Duration // see EffectivePriority; 0: DefaultAging
	// Preempt allows stopping preemptible jobs of tenants above their share
	// for tenants below it whose jobs fit nowhere.
	Preempt bool
	// ArrayRunning counts the Scheduled and Running jobs of each array that
	// has a limit (Spec.ArrayLimit): an array at its limit waits.
	ArrayRunning map[string]int
	// Reserved holds room for jobs on workers (job id → worker id): a
	// preemption is making it for them. Until the job is placed, what it
	// asks for is held back on that worker.
	Reserved map[string]string
}

// Assignment places one job on one worker.
type Assignment struct {
	Job    *job.Job
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

// Plan is the output of Decide.
type Plan struct {
	Assignments []Assignment
	// Bursts holds the tenants whose burst state the plan changes (a burst
	// starts with one of its assignments).
	Bursts      map[string]quota.Burst
	Preemptions []Preemption
}

// queue is one tenant's eligible jobs. It becomes a heap on effective
// priority the first time the tenant is picked, so a pass orders only the
// queues it serves and pops only the jobs it places.
type queue struct {
	jobs   []ranked
	heaped bool
}

type ranked struct {
	job  *job.Job
	prio float64
}

// before reports whether a goes before b: higher effective priority, then
// older (ids are time-ordered).
func (a ranked) before(b ranked) bool {
	if a.prio != b.prio {
		return a.prio > b.prio
	}
	return a.job.ID < b.job.ID
}

// pop removes and returns the queue's next job; ok is false when empty.
func (q *queue) pop(now time.Time, aging time.Duration) (*job.Job, bool) {
	if !q.heaped {
		q.rank(now, aging)
		for i := len(q.jobs)/2 - 1; i >= 0; i-- {
			q.down(i)
		}
		q.heaped = true
	}
	n := len(q.jobs)
	if n == 0 {
		return nil, false
	}
	top := q.jobs[0].job
	q.jobs[0] = q.jobs[n-1]
	q.jobs = q.jobs[:n-1]
	q.down(0)
	return top, true
}

// rank computes the effective priority of every job in the queue.
func (q *queue) rank(now time.Time, aging time.Duration) {
	for i := range q.jobs {
		q.jobs[i].prio = EffectivePriority(q.jobs[i].job, now, aging)
	}
}

// rest returns up to limit of the jobs left, best first, without removing
// them.
func (q *queue) rest(limit int, now time.Time, aging time.Duration) []*job.Job {
	if !q.heaped {
		q.rank(now, aging)
	}
	left := slices.Clone(q.jobs)
	slices.SortFunc(left, func(a, b ranked) int {
		if a.before(b) {
			return -1
		}
		return 1
	})
	out := make([]*job.Job, 0, min(limit, len(left)))
	for _, r := range left[:min(limit, len(left))] {
		out = append(out, r.job)
	}
	return out
}

func (q *queue) down(i int) {
	h := q.jobs
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r].before(h[l]) {
			m = r
		}
		if !h[m].before(h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// queuesOf groups pending jobs by tenant in one allocation.
func queuesOf(pending []*job.Job) map[string]*queue {
	index := make(map[string]int)
	var names []string
	var counts []int
	of := make([]int32, len(pending))
	last, lastIdx := "", -1
	for i, j := range pending {
		t := j.Spec.Tenant
		if t != last || lastIdx < 0 {
			k, ok := index[t]
			if !ok {
				k = len(names)
				index[t] = k
				names = append(names, t)
				counts = append(counts, 0)
			}
			last, lastIdx = t, k
		}
		of[i] = int32(lastIdx)
		counts[lastIdx]++
	}
	all := make([]ranked, len(pending))
	queues := make([]queue, len(names))
	off := 0
	for k, n := range counts {
		queues[k].jobs = all[off : off : off+n]
		off += n
	}
	for i, j := range pending {
		q := &queues[of[i]]
		q.jobs = append(q.jobs, ranked{job: j})
	}
	out := make(map[string]*queue, len(names))
	for k, t := range names {
		out[t] = &queues[k]
	}
	return out
}

// Decide assigns as many pending jobs as free capacity allows. Between
// tenants it follows weighted fair queuing on the tenants' tags; within a
// tenant, higher effective priority first, then older first. A tenant at
// its running limit (burst included) waits; a job that fits nowhere is
// skipped so smaller jobs behind it can still start, and with Preempt it
// may make room by preemption. Decide is pure and deterministic.
func Decide(s Snapshot, now time.Time) Plan {
	var plan Plan
	if len(s.Pending) == 0 || len(s.Workers) == 0 {
		return plan
	}
	queues := queuesOf(s.Pending)
	var picker wfq.Picker
	running := make(map[string]job.Resources, len(s.Tenants))
	bursts := make(map[string]quota.Burst, len(s.Tenants))
	for tenant, tv := range s.Tenants {
		running[tenant], bursts[tenant] = tv.Running, tv.Burst
	}
	for tenant := range queues {
		tv := s.Tenants[tenant]
		picker.Add(tenant, tv.Weight, tv.Tag)
	}

	pl := newPlacer(s.Workers, s.Placement)
	var freeSlots int64
	for _, w := range s.Workers {
		freeSlots += max(w.Free.Slots, 0)
	}
	arrays := maps.Clone(s.ArrayRunning)
	if arrays == nil {
		arrays = make(map[string]int)
	}
	assign := func(j *job.Job, w int, tv TenantView, burst quota.Burst) {
		tenant, req := j.Spec.Tenant, j.Spec.Resources
		if burst != bursts[tenant] {
			bursts[tenant] = burst
			if plan.Bursts == nil {
				plan.Bursts = make(map[string]quota.Burst)
			}
			plan.Bursts[tenant] = burst
		}
		pl.take(w, req)
		freeSlots -= req.Slots
		running[tenant] = running[tenant].Add(req)
		if j.Spec.ArrayLimit > 0 {
			arrays[j.Spec.Array]++
		}
		charge := float64(req.Slots) * estimateOf(tv).Seconds()
		start := picker.Tag(tenant)
		picker.Charge(tenant, charge)
		plan.Assignments = append(plan.Assignments, Assignment{Job: j, Worker: pl.id(w), Charge: charge, Start: start})
	}
	atLimit := func(j *job.Job) bool { // its array runs as many as it may
		return j.Spec.ArrayLimit > 0 && arrays[j.Spec.Array] >= j.Spec.ArrayLimit
	}
	placed := placeReserved(s, now, pl, running, bursts, atLimit, assign)
	freeSlots = 0
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
	unfit := make(map[string][]*job.Job) // tenant → its jobs that fit nowhere, in order
	heldBack := false                    // a worker is held back for a job that did not fit
	for freeSlots > 0 {
		tenant, ok := picker.Next()
		if !ok {
			break
		}
		j, ok := queues[tenant].pop(now, s.Aging)
		if !ok {
			picker.Remove(tenant)
			continue
		}
		if placed[j.ID] {
			continue
		}
		if j.NotBefore.After(now) {
			continue // still backing off
		}
		if atLimit(j) {
			continue
		}
		tv := s.Tenants[tenant]
		req := j.Spec.Resources
		burst, ok := tv.Limits.Admit(bursts[tenant], running[tenant], req, now)
		if !ok {
			picker.Remove(tenant) // at its running limit for this pass
			continue
		}
		key := shape{req, selectorKey(j.Spec.Selector)}
		w := -1
		if !unplaceable[key] {
			w = pl.place(j)
		}
		if w < 0 {
			unplaceable[key] = true
			unfit[tenant] = append(unfit[tenant], j)
			if !heldBack {
				// The least-served tenant's job fits nowhere: keep the
				// worker closest to fitting it out of this pass, so that
				// it empties instead of filling with smaller jobs.
				if r := pl.reserve(j); r >= 0 {
					heldBack = true
					freeSlots -= max(pl.workers[r].Free.Slots, 0)
				}
			}
			continue
		}
		assign(j, w, tv, burst)
	}
	if s.Preempt {
		memo := make(map[string][]*job.Job)
		waiting := func(tenant string) []*job.Job {
			if out, ok := memo[tenant]; ok {
				return out
			}
			out := unfit[tenant]
			if q := queues[tenant]; q != nil && len(out) < maxPreemptTries {
				out = append(slices.Clip(out), q.rest(maxPreemptTries-len(out), now, s.Aging)...)
			}
			out = slices.DeleteFunc(slices.Clone(out), atLimit)
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
func placeReserved(s Snapshot, now time.Time, pl *placer, running map[string]job.Resources,
	bursts map[string]quota.Burst, atLimit func(*job.Job) bool, assign func(*job.Job, int, TenantView, quota.Burst)) map[string]bool {
	if len(s.Reserved) == 0 {
		return nil
	}
	placed := make(map[string]bool)
	for _, j := range s.Pending {
		w, ok := s.Reserved[j.ID]
		if !ok {
			continue
		}
		i := pl.index(w)
		if i < 0 || !job.LabelsMatch(pl.workers[i].Labels, j.Spec.Selector) {
			continue // gone or relabelled: the reservation lapses
		}
		req := j.Spec.Resources
		tv := s.Tenants[j.Spec.Tenant]
		if !j.NotBefore.After(now) && !atLimit(j) && pl.workers[i].Free.Covers(req) {
			if burst, ok := tv.Limits.Admit(bursts[j.Spec.Tenant], running[j.Spec.Tenant], req, now); ok {
				assign(j, i, tv, burst)
				placed[j.ID] = true
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

func selectorKey(sel map[string]string) string {
	if len(sel) == 0 {
		return ""
	}
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b []byte
	for _, k := range keys {
		b = append(b, k...)
		b = append(b, '=')
		b = append(b, sel[k]...)
		b = append(b, 0)
	}
	return string(b)
}
