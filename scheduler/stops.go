package scheduler

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/quota"
)

// stopActive decides the stops of a pass: attempts on lost workers, stops
// no agent confirmed, timeouts, and what runs over a running limit once a
// tenant's burst ended. It takes what it ends off running and arrays, so
// that the dispatch part of the pass sees the room it frees. It walks the
// active jobs in any order and sorts only what it decides.
func stopActive(s Snapshot, now time.Time, plan *Plan, running map[string]job.Resources, arrays map[string]int) {
	stopped := make(map[string]bool)
	free := func(j *job.Job) {
		running[j.Spec.Tenant] = running[j.Spec.Tenant].Sub(j.Spec.Resources)
		if j.Spec.ArrayLimit > 0 {
			arrays[j.Spec.Array]--
		}
	}
	wake := func(t time.Time) {
		if plan.Next.IsZero() || t.Before(plan.Next) {
			plan.Next = t
		}
	}
	for _, j := range s.Active {
		switch {
		case s.Live != nil && !s.Live[j.Worker]:
			plan.Stops = append(plan.Stops, Stop{Job: j, Kind: StopLost})
			stopped[j.ID] = true
			free(j)
		case j.Stop != job.NoStop:
			sent, ok := s.StopSent[j.ID]
			if !ok {
				plan.Resend = append(plan.Resend, j) // e.g. after a server restart
				sent = now
			}
			deadline := sent.Add(s.Confirm)
			if !now.Before(deadline) {
				plan.Stops = append(plan.Stops, Stop{Job: j, Kind: StopUnconfirmed})
				stopped[j.ID] = true
				free(j)
			} else {
				wake(deadline)
			}
		case j.State == job.Running && j.Spec.Timeout > 0:
			deadline := j.StartedAt.Add(j.Spec.Timeout)
			if !now.Before(deadline) {
				plan.Stops = append(plan.Stops, Stop{Job: j, Kind: StopTimeout})
				stopped[j.ID] = true
			} else {
				wake(deadline)
			}
		}
	}
	// Tenants whose burst ended, or that cool down, are held at their
	// running limit: what runs over it goes back to the queue, newest
	// first.
	byTenant := make(map[string][]*job.Job)
	for _, j := range s.Active {
		if tv, ok := s.Tenants[j.Spec.Tenant]; ok && tv.Held && j.Stop == job.NoStop && !stopped[j.ID] {
			byTenant[j.Spec.Tenant] = append(byTenant[j.Spec.Tenant], j)
		}
	}
	for _, t := range slices.Sorted(maps.Keys(byTenant)) {
		jobs := byTenant[t]
		l := s.Tenants[t].Limits
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
			plan.Stops = append(plan.Stops, Stop{Job: j, Kind: StopBurstEnded})
			if j.State == job.Scheduled {
				free(j) // back in the queue at once
			}
		}
	}
	slices.SortFunc(plan.Stops, func(a, b Stop) int { return byID(a.Job, b.Job) }) // a job has one stop
	slices.SortFunc(plan.Resend, byID)
}

// orphanReason says why an orphan is cancelled, naming its dependency's
// step when it has one and passing on the first cause along a chain of
// cancellations.
func orphanReason(o Orphan) string {
	if o.Dep == nil {
		return fmt.Sprintf(ReasonDependencyFmt, o.DepID, "no longer exists")
	}
	return DependencyReason(o.Dep)
}

// DependencyReason says why a dependent of dep, which ended without
// letting it run, is cancelled.
func DependencyReason(dep *job.Job) string {
	if dep.State == job.Cancelled && strings.HasPrefix(dep.Reason, reasonDependencyPrefix) {
		return dep.Reason
	}
	name := dep.ID
	if dep.Spec.Step != "" {
		name = dep.Spec.Step
	}
	verb := "failed"
	if dep.State == job.Cancelled {
		verb = "was cancelled"
	}
	return fmt.Sprintf(ReasonDependencyFmt, name, verb)
}

func byID(a, b *job.Job) int { return cmp.Compare(a.ID, b.ID) }

func sortedOrphans(os []Orphan) []Orphan {
	out := slices.Clone(os)
	slices.SortFunc(out, func(a, b Orphan) int { return cmp.Compare(a.Job.ID, b.Job.ID) })
	return out
}

func sortedWorkers(ws []WorkerView) []WorkerView {
	out := slices.Clone(ws)
	slices.SortFunc(out, func(a, b WorkerView) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
