package cluster

import (
	"testing"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// waitForBusy is n job specs for the zone=c worker: all of one shape, or
// each of its own (its cpu).
func waitForBusy(n int, distinct bool) []job.Spec {
	specs := make([]job.Spec, n)
	for i := range specs {
		cpu := int64(100)
		if distinct {
			cpu = int64(i + 1)
		}
		specs[i] = job.Spec{Command: []string{"sleep", "30"}, Priority: job.DefaultPriority,
			Selector: map[string]string{"zone": "c"}, Resources: job.Resources{Slots: 1, CPUMillis: cpu}}
	}
	return specs
}

// busyZone connects a 1-slot zone=c worker and keeps it busy with a job,
// then queues one-shape and distinct-shape backlogs for it.
func busyZone(h *harness, same, distinct int) {
	h.t.Helper()
	h.worker("wc", 1, map[string]string{"zone": "c"})
	first := h.submit(job.Spec{Selector: map[string]string{"zone": "c"}})
	h.settle(10)
	h.start(h.wantState(first.ID, job.Scheduled))
	h.submitMany(waitForBusy(same, false))
	h.submitMany(waitForBusy(distinct, true))
}

// TestBusyDoNotHide is finding A of attack 11b: jobs that wait for room
// on a busy worker, however many and of however many shapes, do not keep
// a later job of their tenant that fits an idle worker from starting.
func TestBusyDoNotHide(t *testing.T) {
	h := newHarness(t)
	busyZone(h, 5000, 300)
	h.worker("wl", 4, map[string]string{"os": "linux"})
	probe := h.submit(job.Spec{Selector: map[string]string{"os": "linux"}})
	h.settle(10)
	h.wantState(probe.ID, job.Scheduled)
	checkWaiting(t, h.s)
	// And again once the walks rotate: a second probe behind them.
	probe2 := h.submit(job.Spec{Selector: map[string]string{"os": "linux"}})
	h.settle(10)
	h.wantState(probe2.ID, job.Scheduled)
}

// TestBusyNotAhead: a job waiting for its own busy worker is not told
// that the jobs waiting for another busy worker are ahead of it.
func TestBusyNotAhead(t *testing.T) {
	h := newHarness(t)
	busyZone(h, 5000, 300)
	h.worker("wl", 1, map[string]string{"os": "linux"})
	first := h.submit(job.Spec{Selector: map[string]string{"os": "linux"}})
	h.settle(10)
	h.start(h.wantState(first.ID, job.Scheduled))
	probe := h.submit(job.Spec{Selector: map[string]string{"os": "linux"}})
	h.settle(10)
	why := h.s.Why(h.wantState(probe.ID, job.Pending))
	if why.Kind != scheduler.WhyQueued || why.Ahead != 0 || why.AtLeast {
		t.Fatalf("why = %+v (%s), want queued, next in tenant", why, why)
	}
}
