package scheduler

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// passSnapshot is a pass over 100,000 pending jobs of 1,000 tenants on
// 1,000 workers of 8 slots: 8,000 assignments. Jobs have mixed priorities,
// ages and (one in ten) deadlines; tenants have mixed weights and tags.
func passSnapshot() Snapshot {
	const pending, tenants, workers = 100_000, 1000, 1000
	s := Snapshot{Tenants: make(map[string]TenantView, tenants)}
	for i := range tenants {
		s.Tenants[fmt.Sprintf("tenant-%04d", i)] = TenantView{
			Weight: float64(1 + i%10), Tag: float64(i % 37), Estimate: time.Duration(1+i%60) * time.Second,
		}
	}
	for i := range pending {
		j := pendingJob(i, fmt.Sprintf("tenant-%04d", i%tenants), 1)
		j.Spec.Priority = (i * 7919) % 1001
		j.CreatedAt = t0.Add(-time.Duration(i%3600) * time.Second)
		if i%10 == 0 {
			j.Spec.Deadline = t0.Add(time.Duration(i%7200) * time.Second)
		}
		s.Pending = append(s.Pending, j)
	}
	// The shell gathers pending jobs from a concurrent map: no order.
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(s.Pending), func(i, k int) { s.Pending[i], s.Pending[k] = s.Pending[k], s.Pending[i] })
	for i := range workers {
		r := job.Resources{Slots: 8, CPUMillis: 8000, MemoryMiB: 16384}
		s.Workers = append(s.Workers, WorkerView{ID: fmt.Sprintf("w%04d", i), Free: r, Capacity: r})
	}
	return s
}

// decideFIFO is the baseline a fair pass is measured against: one queue in
// submission order, no tenants, no priorities, the same placement.
func decideFIFO(s Snapshot) Plan {
	pending := slices.Clone(s.Pending)
	slices.SortFunc(pending, func(a, b *job.Job) int { return cmp.Compare(a.ID, b.ID) })
	pl := newPlacer(s.Workers, s.Placement)
	var free int64
	for _, w := range s.Workers {
		free += w.Free.Slots
	}
	var plan Plan
	for _, j := range pending {
		if free <= 0 {
			break
		}
		wj := WaitingOf(j, t0, 0)
		w := pl.place(wj)
		if w < 0 {
			continue
		}
		pl.take(w, j.Spec.Resources)
		free -= j.Spec.Resources.Slots
		plan.Assignments = append(plan.Assignments, Assignment{Job: wj, Worker: pl.id(w)})
	}
	return plan
}

func BenchmarkPass(b *testing.B) {
	snap := passSnapshot()
	for _, c := range []struct {
		name   string
		decide func(Snapshot) Plan
	}{
		{"pending=100000/tenants=1000/workers=1000/fair", func(s Snapshot) Plan { return Decide(s, t0) }},
		{"pending=100000/tenants=none/workers=1000/fifo", decideFIFO},
	} {
		b.Run(c.name, func(b *testing.B) {
			if n := len(c.decide(snap).Assignments); n != 8000 {
				b.Fatalf("assigned %d, want 8000", n)
			}
			b.ReportAllocs()
			for b.Loop() {
				c.decide(snap)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/8000, "ns/assignment")
		})
	}
}

// BenchmarkPassFairOverFIFO times both passes in the same loop and reports
// the ratio of their costs, which must stay at or under 2.
func BenchmarkPassFairOverFIFO(b *testing.B) {
	snap := passSnapshot()
	var fair, fifo time.Duration
	for b.Loop() {
		start := time.Now()
		Decide(snap, t0)
		mid := time.Now()
		decideFIFO(snap)
		fair += mid.Sub(start)
		fifo += time.Since(mid)
	}
	b.ReportMetric(float64(fair)/float64(fifo), "fair/fifo")
}
