package scheduler

import (
	"cmp"
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
}

// Assignment places one job on one worker.
type Assignment struct {
	Job    *job.Job
	Worker string
	// Charge is what the dispatch costs its tenant in the fair-queuing
	// ledger: slots × expected seconds, before the weight.
	Charge float64
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

// queue is one tenant's eligible jobs in the order they go.
type queue struct {
	jobs []ranked
	next int
}

type ranked struct {
	job  *job.Job
	prio float64
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
	queues := make(map[string]*queue)
	for _, j := range s.Pending {
		q := queues[j.Spec.Tenant]
		if q == nil {
			q = &queue{}
			queues[j.Spec.Tenant] = q
		}
		q.jobs = append(q.jobs, ranked{j, EffectivePriority(j, now, s.Aging)})
	}
	var picker wfq.Picker
	running := make(map[string]job.Resources, len(s.Tenants))
	bursts := make(map[string]quota.Burst, len(s.Tenants))
	for tenant, tv := range s.Tenants {
		running[tenant], bursts[tenant] = tv.Running, tv.Burst
	}
	for tenant, q := range queues {
		slices.SortFunc(q.jobs, func(a, b ranked) int {
			if c := cmp.Compare(b.prio, a.prio); c != 0 {
				return c
			}
			return cmp.Compare(a.job.ID, b.job.ID)
		})
		tv := s.Tenants[tenant]
		picker.Add(tenant, tv.Weight, tv.Tag)
	}

	pl := newPlacer(s.Workers, s.Placement)
	var freeSlots int64
	for _, w := range s.Workers {
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
	for freeSlots > 0 {
		tenant, ok := picker.Next()
		if !ok {
			break
		}
		q := queues[tenant]
		if q.next >= len(q.jobs) {
			picker.Remove(tenant)
			continue
		}
		j := q.jobs[q.next].job
		q.next++
		if j.NotBefore.After(now) {
			continue // still backing off
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
			continue
		}
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
		charge := float64(req.Slots) * estimateOf(tv).Seconds()
		picker.Charge(tenant, charge)
		plan.Assignments = append(plan.Assignments, Assignment{Job: j, Worker: pl.id(w), Charge: charge})
	}
	if s.Preempt {
		waiting := func(tenant string) []*job.Job {
			out := unfit[tenant]
			q := queues[tenant]
			if q == nil {
				return out
			}
			for _, r := range q.jobs[q.next:] {
				if len(out) >= maxPreemptTries {
					break
				}
				out = append(out, r.job)
			}
			return out
		}
		plan.Preemptions = preempt(s, now, pl, running, bursts, waiting)
	}
	return plan
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
