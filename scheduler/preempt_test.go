package scheduler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

func TestPreemptionStopsOnlyPreemptibleWorkAboveItsShare(t *testing.T) {
	obs := &countingObserver{}
	s := newSim(t, 4, 2, func(c *Config) { c.Preemption = true; c.Observer = obs }) // 8 slots
	s.tenant("batch", 1, func(tn *job.Tenant) { tn.Preemptible = true })
	s.tenant("steady", 1)
	s.tenant("prod", 2)
	s.duration = func(j *job.Job) time.Duration {
		if j.Spec.Tenant == "prod" {
			return 10 * time.Minute
		}
		return time.Hour
	}
	s.submit("batch", 4, job.Spec{Priority: 100, Retries: 1})
	s.submit("steady", 4, job.Spec{})
	s.step(time.Minute)
	held, _ := s.running()
	if held["batch"].Slots != 4 || held["steady"].Slots != 4 {
		t.Fatalf("before prod arrives: %v, want batch and steady at 4 slots each", held)
	}

	// prod (share 8 × 2/4 = 4) arrives; only batch (share 2) may give way.
	prod := s.submit("prod", 6, job.Spec{})
	shares := map[string]float64{"batch": 2, "steady": 2, "prod": 4}
	stopped := map[string]bool{}
	s.onStep = func() {
		_, kept := s.running()
		for _, c := range s.stops {
			j := s.h.get(c.JobID)
			stopped[j.ID] = true
			if j.Spec.Tenant != "batch" {
				t.Fatalf("stopped %s of %s, which is not preemptible", j.ID, j.Spec.Tenant)
			}
			if float64(kept["batch"].Slots) < shares["batch"] {
				t.Fatalf("preemption left batch at %d slots, below its share %.0f", kept["batch"].Slots, shares["batch"])
			}
		}
	}
	var prodAt int64
	for range 6 {
		s.step(time.Minute)
		held, _ := s.running()
		prodAt = max(prodAt, held["prod"].Slots)
	}
	if len(stopped) != 2 || obs.preempted["batch"] != 2 {
		t.Fatalf("stopped %d batch jobs (metric %d), want 2: batch 4 → its share of 2", len(stopped), obs.preempted["batch"])
	}
	if prodAt < 2 {
		t.Fatalf("prod ran at most %d slots after preemption, want the 2 freed", prodAt)
	}
	for id := range stopped {
		j := s.h.get(id)
		want := fmt.Sprintf(ReasonPreemptedFmt, "prod", "")
		if j.State != job.Pending || j.Attempt != 2 || j.Preemptions != 1 || !strings.HasPrefix(j.Reason, "attempt 1: "+want) {
			t.Fatalf("preempted job %s: %s attempt %d preemptions %d reason %q; want PENDING attempt 2, reason naming prod",
				id, j.State, j.Attempt, j.Preemptions, j.Reason)
		}
		if !j.AttemptsLeft() {
			t.Fatalf("preempted job %s has no attempts left: preemption used a retry", id)
		}
	}
	_ = prod

	// Everything completes in the end, the preempted jobs included.
	s.onStep = nil
	for range 200 {
		s.step(time.Hour)
	}
	for id := range stopped {
		if j := s.h.get(id); j.State != job.Completed || j.Attempt != 2 {
			t.Fatalf("preempted job %s ended %s on attempt %d, want COMPLETED on attempt 2", id, j.State, j.Attempt)
		}
	}
}

func TestNoPreemptionWhenOff(t *testing.T) {
	s := newSim(t, 1, 2)
	s.tenant("batch", 1, func(tn *job.Tenant) { tn.Preemptible = true })
	s.tenant("prod", 1)
	s.duration = func(*job.Job) time.Duration { return time.Hour }
	s.submit("batch", 2, job.Spec{})
	s.step(time.Minute)
	s.submit("prod", 1, job.Spec{})
	for range 3 {
		s.step(time.Minute)
	}
	if n := s.dispatches; n != 2 {
		t.Fatalf("%d dispatches, want the 2 batch jobs only", n)
	}
	if n := len(s.stops); n != 0 {
		t.Fatalf("%d stop orders with preemption off", n)
	}
}

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
	active[0].CancelRequested, active[0].Requeue = "preempted", true
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
		Reserved: map[string]string{waiting.ID: "w"},
	}
	plan := Decide(snap, t0)
	if len(plan.Assignments) != 1 || plan.Assignments[0].Job.ID != waiting.ID {
		t.Fatalf("assignments = %+v, want only the job the room is reserved for", plan.Assignments)
	}

	// The victims are still stopping: the one free slot is held for the
	// two-slot job that waits for it, the rest of the worker is not.
	waiting.Spec.Resources.Slots = 2
	snap.Workers[0].Free.Slots = 1
	if plan := Decide(snap, t0); len(plan.Assignments) != 0 {
		t.Fatalf("placed %+v in room reserved for another job", plan.Assignments)
	}
	snap.Workers[0].Free.Slots = 3
	if plan := Decide(snap, t0); len(plan.Assignments) != 2 {
		t.Fatalf("assignments = %+v, want the reserved job and the other in the slot left over", plan.Assignments)
	}
}

func TestPreemptionMakesRoomForSeveralJobsOnOneWorker(t *testing.T) {
	s := newSim(t, 1, 4, func(c *Config) { c.Preemption = true })
	s.tenant("batch", 1, func(tn *job.Tenant) { tn.Preemptible = true })
	s.tenant("prod", 3)
	s.duration = func(*job.Job) time.Duration { return time.Hour }
	s.submit("batch", 4, job.Spec{})
	s.step(time.Minute)
	s.submit("batch", 4, job.Spec{}) // batch keeps a backlog of its own
	s.submit("prod", 3, job.Spec{})
	s.step(time.Minute) // three batch jobs stopped; the room is reserved
	s.step(time.Minute) // and taken by prod's three jobs
	held, _ := s.running()
	if held["prod"].Slots != 3 || held["batch"].Slots != 1 {
		t.Fatalf("after preemption: %v, want prod at its share of 3 and batch at 1", held)
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
