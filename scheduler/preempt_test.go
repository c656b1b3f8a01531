package scheduler

import (
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

func TestDecidePreemptsLowestPriorityThenShortestRunning(t *testing.T) {
	running := func(i int, prio int, started time.Duration) *job.Job {
		j := pendingJob(i, "batch", 1)
		j.State, j.Worker, j.Spec.Priority, j.StartedAt = job.Running, "w", prio, t0.Add(started)
		return j
	}
	active := []*job.Job{
		running(1, 500, 0),
		running(2, 100, 0),           // lowest priority, longest running
		running(3, 100, time.Minute), // lowest priority, shortest running: first
		running(4, 900, 2*time.Minute),
	}
	need := pendingJob(9, "prod", 1)
	snap := Snapshot{
		Pending: []*job.Job{need},
		Active:  active,
		Workers: []WorkerView{{ID: "w", Capacity: job.Resources{Slots: 4}}},
		Tenants: map[string]TenantView{
			"batch": {Running: job.Resources{Slots: 4}, Preemptible: true},
			"prod":  {},
		},
		Preempt: true,
	}
	plan := Decide(snap, t0.Add(time.Hour))
	if len(plan.Preemptions) != 1 || plan.Preemptions[0].Job.ID != active[2].ID ||
		plan.Preemptions[0].By != "prod" || plan.Preemptions[0].For != need.ID {
		t.Fatalf("preemptions = %+v, want job 3 (priority 100, started last) for prod's job", plan.Preemptions)
	}

	// A wave still stopping holds the next one back.
	active[0].CancelRequested, active[0].Stop = "preempted", job.StopRequeue
	if plan := Decide(snap, t0.Add(time.Hour)); len(plan.Preemptions) != 0 {
		t.Fatalf("preempted %+v while an earlier preemption was stopping", plan.Preemptions)
	}
}

func TestDecideKeepsReservedRoomForItsJob(t *testing.T) {
	waiting := pendingJob(1, "prod", 1)
	other := pendingJob(0, "batch", 1) // older, and its tenant is first by tag
	snap := Snapshot{
		Pending:  []*job.Job{other, waiting},
		Workers:  []WorkerView{{ID: "w", Free: job.Resources{Slots: 1}, Capacity: job.Resources{Slots: 4}}},
		Tenants:  map[string]TenantView{"prod": {Tag: 10}},
		Reserved: []Reservation{{Job: WaitingOf(waiting, t0, 0), Worker: "w"}},
	}
	plan := Decide(snap, t0)
	if len(plan.Assignments) != 1 || plan.Assignments[0].Job.ID != waiting.ID {
		t.Fatalf("assignments = %+v, want only the job the room is reserved for", plan.Assignments)
	}

	// The victims are still stopping: the one free slot is held for the
	// two-slot job that waits for it, the rest of the worker is not.
	waiting.Spec.Resources.Slots = 2
	snap.Reserved = []Reservation{{Job: WaitingOf(waiting, t0, 0), Worker: "w"}}
	snap.Workers[0].Free.Slots = 1
	if plan := Decide(snap, t0); len(plan.Assignments) != 0 {
		t.Fatalf("placed %+v in room reserved for another job", plan.Assignments)
	}
	snap.Workers[0].Free.Slots = 3
	if plan := Decide(snap, t0); len(plan.Assignments) != 2 {
		t.Fatalf("assignments = %+v, want the reserved job and the other in the slot left over", plan.Assignments)
	}
}

func TestPreemptionRespectsArrayLimits(t *testing.T) {
	var victims []*job.Job
	for i := range 2 {
		v := pendingJob(i, "batch", 1)
		v.State, v.Worker, v.StartedAt = job.Running, "w", t0
		victims = append(victims, v)
	}
	arrayJob := pendingJob(3, "prod", 1)
	arrayJob.Spec.Array, arrayJob.Spec.ArrayLimit = "arr", 1
	snap := Snapshot{
		Pending:      []*job.Job{arrayJob},
		Active:       victims,
		Workers:      []WorkerView{{ID: "w", Capacity: job.Resources{Slots: 2}}},
		Tenants:      map[string]TenantView{"batch": {Running: job.Resources{Slots: 2}, Preemptible: true}, "prod": {}},
		ArrayRunning: map[string]int{"arr": 1}, // another job of the array runs elsewhere
		Preempt:      true,
	}
	if plan := Decide(snap, t0); len(plan.Preemptions) != 0 {
		t.Fatalf("preempted %+v for an array job at its limit", plan.Preemptions)
	}
	snap.ArrayRunning = nil
	if plan := Decide(snap, t0); len(plan.Preemptions) != 1 {
		t.Fatalf("preemptions = %+v, want one once the array has room", plan.Preemptions)
	}
}
