package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func pendingJob(i int, tenant string, slots int64) *job.Job {
	return &job.Job{
		ID:      fmt.Sprintf("J%025d", i),
		Spec:    job.Spec{Tenant: tenant, Priority: job.DefaultPriority, Resources: job.Resources{Slots: slots}},
		State:   job.Pending,
		Attempt: 1,
	}
}

func TestDecidePlacement(t *testing.T) {
	workers := func() []WorkerView {
		return []WorkerView{
			{ID: "a", Free: job.Resources{Slots: 4, CPUMillis: 4000, MemoryMiB: 4096}},
			{ID: "b", Free: job.Resources{Slots: 1, CPUMillis: 1000, MemoryMiB: 1024}, Labels: map[string]string{"gpu": "yes"}},
		}
	}
	tests := []struct {
		name      string
		placement Placement
		job       func(*job.Job)
		want      string // worker id, "" for none
	}{
		{"BinPackFullest", BinPack, func(*job.Job) {}, "b"},
		{"SpreadEmptiest", Spread, func(*job.Job) {}, "a"},
		{"Selector", Spread, func(j *job.Job) { j.Spec.Selector = map[string]string{"gpu": "yes"} }, "b"},
		{"SelectorNoMatch", BinPack, func(j *job.Job) { j.Spec.Selector = map[string]string{"gpu": "no"} }, ""},
		{"Memory", BinPack, func(j *job.Job) { j.Spec.Resources.MemoryMiB = 2048 }, "a"},
		{"CPU", BinPack, func(j *job.Job) { j.Spec.Resources.CPUMillis = 5000 }, ""},
		{"Slots", BinPack, func(j *job.Job) { j.Spec.Resources.Slots = 3 }, "a"},
		{"Backoff", BinPack, func(j *job.Job) { j.NotBefore = t0.Add(time.Second) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := pendingJob(1, "default", 1)
			tt.job(j)
			plan := Decide(Snapshot{Pending: []*job.Job{j}, Workers: workers(), Placement: tt.placement}, t0)
			got := ""
			if len(plan.Assignments) == 1 {
				got = plan.Assignments[0].Worker
			}
			if got != tt.want {
				t.Fatalf("placed on %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDecideFillsCapacityAndSkipsWhatDoesNotFit(t *testing.T) {
	big := pendingJob(1, "default", 8)
	small := []*job.Job{pendingJob(2, "default", 1), pendingJob(3, "default", 1), pendingJob(4, "default", 1)}
	snap := Snapshot{
		Pending: append([]*job.Job{big}, small...),
		Workers: []WorkerView{{ID: "w", Free: job.Resources{Slots: 2}}},
	}
	plan := Decide(snap, t0)
	if len(plan.Assignments) != 2 || plan.Assignments[0].Job.ID != small[0].ID || plan.Assignments[1].Job.ID != small[1].ID {
		t.Fatalf("plan %+v, want the two oldest small jobs behind the big one", plan.Assignments)
	}
}

func TestDecideSharesBetweenTenants(t *testing.T) {
	var pending []*job.Job
	for i := range 100 {
		pending = append(pending, pendingJob(i, "a", 1), pendingJob(1000+i, "b", 1))
	}
	snap := Snapshot{
		Pending: pending,
		Workers: []WorkerView{{ID: "w", Free: job.Resources{Slots: 40}}},
		Tenants: map[string]TenantView{"a": {Weight: 3}, "b": {Weight: 1, Running: job.Resources{Slots: 0}}},
	}
	got := map[string]int{}
	for _, a := range Decide(snap, t0).Assignments {
		got[a.Job.Tenant]++
	}
	if got["a"] != 30 || got["b"] != 10 {
		t.Fatalf("shares %v, want a:30 b:10 for weights 3:1", got)
	}
}

func TestDecideIsDeterministic(t *testing.T) {
	mk := func() Snapshot {
		var s Snapshot
		for i := range 50 {
			s.Pending = append(s.Pending, pendingJob(i, fmt.Sprint("t", i%3), int64(1+i%2)))
		}
		for i := range 5 {
			s.Workers = append(s.Workers, WorkerView{ID: fmt.Sprint("w", i), Free: job.Resources{Slots: 7}})
		}
		return s
	}
	a, b := Decide(mk(), t0), Decide(mk(), t0)
	if len(a.Assignments) != len(b.Assignments) {
		t.Fatal("different plan sizes")
	}
	for i := range a.Assignments {
		if a.Assignments[i].Job.ID != b.Assignments[i].Job.ID || a.Assignments[i].Worker != b.Assignments[i].Worker {
			t.Fatalf("plans differ at %d", i)
		}
	}
}

// BenchmarkDecide measures one pass over 10,000 pending jobs and 1,000
// workers with 8 free slots each (8,000 assignments).
func BenchmarkDecide(b *testing.B) {
	for _, p := range []struct {
		name string
		p    Placement
	}{{"binpack", BinPack}, {"spread", Spread}} {
		b.Run(fmt.Sprintf("pending=10000/workers=1000/%s", p.name), func(b *testing.B) {
			var pending []*job.Job
			for i := range 10000 {
				j := pendingJob(i, fmt.Sprint("tenant-", i%10), 1)
				j.Spec.Priority = i % 1000
				pending = append(pending, j)
			}
			workers := make([]WorkerView, 1000)
			for i := range workers {
				workers[i] = WorkerView{ID: fmt.Sprintf("w%04d", i), Free: job.Resources{Slots: 8, CPUMillis: 8000, MemoryMiB: 16384}}
			}
			snap := Snapshot{Pending: pending, Workers: workers, Placement: p.p}
			var assigned int
			b.ReportAllocs()
			for b.Loop() {
				assigned = len(Decide(snap, t0).Assignments)
			}
			if assigned != 8000 {
				b.Fatalf("assigned %d, want 8000", assigned)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(assigned), "ns/assignment")
		})
	}
}

// A job that fits no worker's free room now, but one worker's capacity,
// has that worker kept for it for the pass, and the plan says so (Held):
// the smaller job behind it does not take the room.
func TestDecideHolds(t *testing.T) {
	two, one := pendingJob(1, "default", 2), pendingJob(2, "default", 1)
	snap := Snapshot{
		Pending: []*job.Job{two, one},
		Workers: []WorkerView{{ID: "w", Free: job.Resources{Slots: 1}, Capacity: job.Resources{Slots: 2}}},
	}
	plan := Decide(snap, t0)
	if len(plan.Assignments) != 0 {
		t.Fatalf("assigned %+v in the room kept for %s", plan.Assignments, two.ID)
	}
	if h := plan.Held; h == nil || h.Job.ID != two.ID || h.Worker != "w" || h.Free.Slots != 1 {
		t.Fatalf("held %+v, want w kept for %s with 1 slot free", h, two.ID)
	}
	if !plan.IsZero() {
		t.Fatal("a plan that only holds a worker changes something")
	}

	// A job no worker could ever take holds nothing.
	snap.Pending = []*job.Job{pendingJob(3, "default", 3), one}
	plan = Decide(snap, t0)
	if plan.Held != nil || len(plan.Assignments) != 1 || plan.Assignments[0].Job.ID != one.ID {
		t.Fatalf("held %+v, assigned %+v; want nothing held and %s placed", plan.Held, plan.Assignments, one.ID)
	}
}
