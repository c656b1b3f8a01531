package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
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
		want := fmt.Sprintf(scheduler.ReasonPreemptedFmt, "prod", "")
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
