package scheduler

import (
	"cmp"
	"slices"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/quota"
)

// maxPreemptTries bounds the waiting jobs of one tenant that one pass tries
// to make room for.
const maxPreemptTries = 16

// Shares returns each tenant's weighted share of total slots: its weight
// over the sum of the weights of the tenants in active (those with work,
// pending or running). Tenants not in active have no share.
func Shares(tenants map[string]TenantView, active []string, total int64) map[string]float64 {
	var sum float64
	for _, t := range active {
		sum += weightOf(tenants[t])
	}
	out := make(map[string]float64, len(active))
	for _, t := range active {
		out[t] = float64(total) * weightOf(tenants[t]) / sum
	}
	return out
}

// preempt chooses running jobs to stop so that tenants below their weighted
// share get room for waiting jobs that fit nowhere. A victim is a Running
// job, preemptible by its tenant or its own spec, of another tenant that
// stays at or above its share without it; victims go lowest priority first,
// then shortest-running first. Only one wave is in flight at a time: while
// an earlier preemption has not ended, preempt chooses none. running and pl
// are Decide's, after its assignments; preempt books what it frees on them.
func preempt(s Snapshot, now time.Time, pl *placer, running map[string]job.Resources,
	bursts map[string]quota.Burst, waiting func(string) []*Waiting) []Preemption {
	var victims []*job.Job
	for _, j := range s.Active {
		if j.Stop == job.StopRequeue {
			return nil // the last wave is still stopping
		}
		if j.State == job.Running && j.Stop == job.NoStop &&
			(j.Spec.Preemptible || s.Tenants[j.Spec.Tenant].Preemptible) {
			victims = append(victims, j)
		}
	}
	if len(victims) == 0 {
		return nil
	}
	slices.SortFunc(victims, func(a, b *job.Job) int {
		if c := cmp.Compare(a.Spec.Priority, b.Spec.Priority); c != 0 {
			return c
		}
		if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
			return c // started later: has run for less time
		}
		return cmp.Compare(a.ID, b.ID)
	})

	var total int64
	index := make(map[string]int, len(pl.workers))
	for i, w := range pl.workers {
		total += w.Capacity.Slots
		index[w.ID] = i
	}
	var active []string
	for t, r := range running {
		if r.Slots > 0 || waiting(t) != nil {
			active = append(active, t)
		}
	}
	slices.Sort(active)
	shares := Shares(s.Tenants, active, total)
	below := func(t string) bool { return float64(running[t].Slots) < shares[t] }
	var needy []string
	for _, t := range active {
		if below(t) && len(waiting(t)) > 0 {
			needy = append(needy, t)
		}
	}
	slices.SortStableFunc(needy, func(a, b string) int {
		return cmp.Compare(float64(running[a].Slots)/shares[a], float64(running[b].Slots)/shares[b])
	})

	used := make(map[string]bool)
	var out []Preemption
	for _, t := range needy {
		tv := s.Tenants[t]
		for _, j := range waiting(t) {
			if !below(t) {
				break
			}
			req := j.Resources
			if j.Since > now.UnixNano() {
				continue
			}
			if _, ok := tv.Limits.Admit(bursts[t], running[t], req, now); !ok {
				break
			}
			w, chosen := roomFor(j, pl, index, victims, used, running, shares)
			if w < 0 {
				continue
			}
			freed := job.Resources{}
			for _, v := range chosen {
				used[v.ID] = true
				running[v.Spec.Tenant] = running[v.Spec.Tenant].Sub(v.Spec.Resources)
				freed = freed.Add(v.Spec.Resources)
				out = append(out, Preemption{Job: v, By: t, For: j.ID})
			}
			pl.workers[w].Free = pl.workers[w].Free.Add(freed).Sub(req)
			running[t] = running[t].Add(req)
		}
	}
	return out
}

// roomFor finds the first worker, in victim order, on which stopping unused
// victims makes room for j, and returns it with those victims, or -1.
func roomFor(j *Waiting, pl *placer, index map[string]int, victims []*job.Job, used map[string]bool,
	running map[string]job.Resources, shares map[string]float64) (int, []*job.Job) {
	req := j.Resources
	freed := make(map[int]job.Resources)
	chosen := make(map[int][]*job.Job)
	taken := make(map[int]map[string]int64) // worker → tenant → slots chosen there
	for _, v := range victims {
		vt := v.Spec.Tenant
		w, ok := index[v.Worker]
		if used[v.ID] || vt == j.Tenant || !ok {
			continue
		}
		wv := pl.workers[w]
		if !wv.Capacity.Covers(req) || !job.LabelsMatch(wv.Labels, j.Selector) {
			continue
		}
		if taken[w] == nil {
			taken[w] = make(map[string]int64)
		}
		left := running[vt].Slots - taken[w][vt] - v.Spec.Resources.Slots
		if float64(left) < shares[vt] {
			continue // never push a tenant below its share
		}
		taken[w][vt] += v.Spec.Resources.Slots
		freed[w] = freed[w].Add(v.Spec.Resources)
		chosen[w] = append(chosen[w], v)
		if wv.Free.Add(freed[w]).Covers(req) {
			return w, chosen[w]
		}
	}
	return -1, nil
}
