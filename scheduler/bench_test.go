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

// queueSnapshot is passSnapshot with its pending jobs given as the live
// cluster gives them: ranked per tenant beforehand (QueueOf), so that a
// pass reads each queue only as far as it gets.
func queueSnapshot(s Snapshot) Snapshot {
	by := make(map[string][]*Waiting)
	for _, j := range s.Pending {
		by[j.Spec.Tenant] = append(by[j.Spec.Tenant], WaitingOf(j, t0, s.Aging))
	}
	s.Queues = make(map[string]Queue, len(by))
	for t, ws := range by {
		s.Queues[t] = QueueOf(ws)
	}
	s.Pending = nil
	return s
}

// passAssignments is what a pass over passSnapshot places: every slot.
const passAssignments = 8000

// BenchmarkPass times one pass over 100,000 pending jobs of 1,000 tenants
// on 1,000 workers (8,000 assignments): fair from the pending jobs
// (Snapshot.Pending, ranked by the pass), fair from queues ranked
// beforehand (Snapshot.Queues, as the live cluster keeps them), and the
// FIFO baseline.
func BenchmarkPass(b *testing.B) {
	snap := passSnapshot()
	queued := queueSnapshot(snap)
	for _, c := range []struct {
		name   string
		decide func() Plan
	}{
		{"pending=100000/tenants=1000/workers=1000/fair", func() Plan { return Decide(snap, t0) }},
		{"pending=100000/tenants=1000/workers=1000/fair-queues", func() Plan { return Decide(queued, t0) }},
		{"pending=100000/tenants=none/workers=1000/fifo", func() Plan { return decideFIFO(snap) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			if n := len(c.decide().Assignments); n != passAssignments {
				b.Fatalf("assigned %d, want %d", n, passAssignments)
			}
			b.ReportAllocs()
			for b.Loop() {
				c.decide()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/passAssignments, "ns/assignment")
		})
	}
}

// BenchmarkPassFairOverFIFO times the three passes of BenchmarkPass in the
// same loop and reports each one's ns per assignment and the ratios of
// the fair passes' costs to FIFO's: fair/fifo (from Snapshot.Pending) must
// stay at or under 2; queues/fifo is the pass the live cluster runs.
func BenchmarkPassFairOverFIFO(b *testing.B) {
	snap := passSnapshot()
	queued := queueSnapshot(snap)
	if a, q := Decide(snap, t0).Assignments, Decide(queued, t0).Assignments; len(a) != passAssignments || len(q) != len(a) {
		b.Fatalf("assigned %d from pending, %d from queues; want %d", len(a), len(q), passAssignments)
	}
	var fair, queues, fifo time.Duration
	for b.Loop() {
		start := time.Now()
		Decide(snap, t0)
		t1 := time.Now()
		Decide(queued, t0)
		t2 := time.Now()
		decideFIFO(snap)
		fair += t1.Sub(start)
		queues += t2.Sub(t1)
		fifo += time.Since(t2)
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) / passAssignments }
	b.ReportMetric(per(fair), "fair-ns/assignment")
	b.ReportMetric(per(queues), "queues-ns/assignment")
	b.ReportMetric(per(fifo), "fifo-ns/assignment")
	b.ReportMetric(float64(fair)/float64(fifo), "fair/fifo")
	b.ReportMetric(float64(queues)/float64(fifo), "queues/fifo")
}
