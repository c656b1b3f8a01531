package scheduler

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/quota"
)

// orderSnapshot is a snapshot with something for every part of a plan:
// waiting jobs of several tenants (with deadlines, selectors, an array
// limit), running jobs to preempt, lost, timed out and held by an ended
// burst, reservations and orphans.
func orderSnapshot(rng *rand.Rand) Snapshot {
	s := Snapshot{
		Tenants: map[string]TenantView{
			"a": {Weight: 1, Tag: 1},
			"b": {Weight: 2, Tag: 0.5},
			"c": {Weight: 1, Tag: 3, Preemptible: true},
			"d": {Weight: 1, Held: true, Limits: quota.Limits{MaxRunning: job.Resources{Slots: 1}}},
		},
		Live:         map[string]bool{},
		ArrayRunning: map[string]int{"arr": 1},
		StopSent:     map[string]time.Time{},
		Confirm:      time.Minute,
		Preempt:      true,
	}
	for i := range 12 {
		r := job.Resources{Slots: 4, CPUMillis: 4000, MemoryMiB: 4096}
		free := r
		free.Slots = int64(rng.IntN(3))
		s.Workers = append(s.Workers, WorkerView{ID: fmt.Sprintf("w%02d", i), Free: free, Capacity: r,
			Labels: map[string]string{"zone": fmt.Sprint(i % 3)}})
		s.Live[fmt.Sprintf("w%02d", i)] = true
	}
	tenants := []string{"a", "b", "c", "d"}
	for i := range 200 {
		j := pendingJob(i, tenants[rng.IntN(4)], int64(1+rng.IntN(2)))
		j.Spec.Priority = rng.IntN(1001)
		j.CreatedAt = t0.Add(-time.Duration(rng.IntN(3600)) * time.Second)
		if i%7 == 0 {
			j.Spec.Deadline = t0.Add(time.Duration(rng.IntN(7200)-3600) * time.Second)
		}
		if i%11 == 0 {
			j.Spec.Selector = map[string]string{"zone": fmt.Sprint(i % 4)}
		}
		if i%13 == 0 {
			j.Spec.Array, j.Spec.ArrayLimit = "arr", 3
		}
		s.Pending = append(s.Pending, j)
	}
	for i := range 30 {
		j := pendingJob(1000+i, tenants[i%4], 1)
		j.State, j.Worker = job.Running, fmt.Sprintf("w%02d", i%14) // w12, w13: lost
		j.ScheduledAt = t0.Add(-time.Duration(i) * time.Minute)
		j.StartedAt = j.ScheduledAt
		if i%5 == 0 {
			j.Spec.Timeout = time.Duration(i) * time.Minute
		}
		if i%9 == 0 {
			j.CancelRequested, j.Stop = "cancelled by user", job.StopCancel
			s.StopSent[j.ID] = t0.Add(-time.Duration(i) * time.Second * 10)
		}
		s.Active = append(s.Active, j)
	}
	for _, i := range []int{3, 17, 42} {
		s.Reserved = append(s.Reserved, Reservation{Job: WaitingOf(s.Pending[i], t0, 0), Worker: fmt.Sprintf("w%02d", i%12)})
	}
	for _, i := range []int{5, 50} {
		dep := pendingJob(2000+i, "a", 1)
		dep.State = job.Failed
		s.Orphans = append(s.Orphans, Orphan{Job: WaitingOf(s.Pending[i], t0, 0), Dep: dep, DepID: dep.ID})
	}
	return s
}

// planKey renders what a plan decides, in its order.
func planKey(p Plan) string {
	var b []byte
	for _, a := range p.Assignments {
		b = fmt.Appendf(b, "A %s %s %.3f|", a.Job.ID, a.Worker, a.Start)
	}
	for _, x := range p.Preemptions {
		b = fmt.Appendf(b, "P %s %s %s|", x.Job.ID, x.By, x.For)
	}
	for _, x := range p.Stops {
		b = fmt.Appendf(b, "S %s %s|", x.Job.ID, x.Kind)
	}
	for _, x := range p.Cancels {
		b = fmt.Appendf(b, "C %s %s|", x.Job.ID, x.Reason)
	}
	for _, x := range p.Resend {
		b = fmt.Appendf(b, "R %s|", x.ID)
	}
	return string(b) + fmt.Sprint(p.Bursts, p.Next)
}

// The plan does not depend on the order of the snapshot's slices or on the
// order its maps are walked in (which Go varies from run to run).
func TestDecideIgnoresSnapshotOrder(t *testing.T) {
	for seed := range uint64(10) {
		rng := rand.New(rand.NewPCG(seed, 7))
		base := orderSnapshot(rng)
		want := planKey(Decide(base, t0))
		if len(want) < 100 {
			t.Fatalf("seed %d: plan %q decides too little to compare", seed, want)
		}
		for round := range 30 {
			s := base
			s.Pending, s.Active = slices.Clone(base.Pending), slices.Clone(base.Active)
			s.Workers, s.Reserved, s.Orphans = slices.Clone(base.Workers), slices.Clone(base.Reserved), slices.Clone(base.Orphans)
			shuffle(rng, s.Pending)
			shuffle(rng, s.Active)
			shuffle(rng, s.Workers)
			shuffle(rng, s.Reserved)
			shuffle(rng, s.Orphans)
			if got := planKey(Decide(s, t0)); got != want {
				t.Fatalf("seed %d, shuffle %d: plan\n%s\nwant\n%s", seed, round, got, want)
			}
		}
	}
}

func shuffle[T any](rng *rand.Rand, s []T) {
	rng.Shuffle(len(s), func(i, k int) { s[i], s[k] = s[k], s[i] })
}
