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

// WorkerView is what a decision knows of one worker that accepts work.
type WorkerView struct {
	ID     string
	Labels map[string]string
	Free   job.Resources // capacity minus what its active jobs hold
}

// TenantView is what a decision knows of one tenant.
type TenantView struct {
	Weight  float64       // fair-share weight; <= 0 counts as 1
	Limits  quota.Limits  // running limits enforced at dispatch
	Running job.Resources // held by the tenant's active jobs
}

// Snapshot is the input of Decide: the eligible jobs and the workers that
// accept work, as one consistent picture. Decide does not modify it, except
// that it sorts Pending.
type Snapshot struct {
	Pending   []*job.Job // eligible now: dependencies met, backoff over
	Workers   []WorkerView
	Tenants   map[string]TenantView // missing tenants have weight 1, no limits
	Placement Placement
}

// Assignment places one job on one worker.
type Assignment struct {
	Job    *job.Job
	Worker string
}

// Plan is the output of Decide.
type Plan struct {
	Assignments []Assignment
}

// Decide assigns as many pending jobs as free capacity allows. Between
// tenants it follows weighted fair queuing (each tenant starts at its
// running slots over its weight); within a tenant, higher priority first,
// then older first. A job that fits nowhere is skipped so smaller jobs
// behind it can still start. Decide is pure and deterministic.
func Decide(s Snapshot, now time.Time) Plan {
	if len(s.Pending) == 0 || len(s.Workers) == 0 {
		return Plan{}
	}
	byTenant := make(map[string][]*job.Job)
	for _, j := range s.Pending {
		byTenant[j.Spec.Tenant] = append(byTenant[j.Spec.Tenant], j)
	}
	var picker wfq.Picker
	running := make(map[string]job.Resources, len(byTenant))
	for tenant, jobs := range byTenant {
		slices.SortFunc(jobs, func(a, b *job.Job) int {
			if c := cmp.Compare(b.Spec.Priority, a.Spec.Priority); c != 0 {
				return c
			}
			return cmp.Compare(a.ID, b.ID)
		})
		tv := s.Tenants[tenant]
		running[tenant] = tv.Running
		picker.Add(tenant, weightOf(tv), float64(tv.Running.Slots))
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
	var plan Plan
	next := make(map[string]int, len(byTenant))
	for freeSlots > 0 {
		tenant, ok := picker.Next()
		if !ok {
			break
		}
		jobs := byTenant[tenant]
		i := next[tenant]
		if i >= len(jobs) {
			picker.Remove(tenant)
			continue
		}
		next[tenant] = i + 1
		j := jobs[i]
		if j.NotBefore.After(now) {
			continue // still backing off
		}
		req := j.Spec.Resources
		if !s.Tenants[tenant].Limits.CanRun(running[tenant], req) {
			picker.Remove(tenant) // at its running limit for this pass
			continue
		}
		key := shape{req, selectorKey(j.Spec.Selector)}
		if unplaceable[key] {
			continue
		}
		w := pl.place(j)
		if w < 0 {
			unplaceable[key] = true
			continue
		}
		pl.take(w, req)
		freeSlots -= req.Slots
		running[tenant] = running[tenant].Add(req)
		picker.Charge(tenant, float64(req.Slots))
		plan.Assignments = append(plan.Assignments, Assignment{Job: j, Worker: pl.id(w)})
	}
	return plan
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
