package cluster

import (
	"fmt"
	"testing"

	"github.com/hodei-jobs/hodei/job"
)

// settle runs passes until one asks for no immediate successor (a pass
// that parked as many entries as it may asks for the next at once), and
// returns how many it ran. It fails past limit.
func (h *harness) settle(limit int) int {
	h.t.Helper()
	for n := 1; n <= limit; n++ {
		if next := h.pass(); next.IsZero() || next.After(h.now) {
			return n
		}
	}
	h.t.Fatalf("still passing after %d passes", limit)
	return limit
}

// submitMany submits specs in batches of up to 10,000.
func (h *harness) submitMany(specs []job.Spec) {
	h.t.Helper()
	for len(specs) > 0 {
		n := min(len(specs), 10_000)
		if _, err := h.s.SubmitBatch(h.ctx, specs[:n]); err != nil {
			h.t.Fatal(err)
		}
		specs = specs[n:]
	}
}

// pinned is n job specs pinned to hosts that do not exist: each its own
// host (distinct), or all the same one.
func pinned(n int, distinct bool) []job.Spec {
	specs := make([]job.Spec, n)
	for i := range specs {
		host := "nowhere"
		if distinct {
			host = fmt.Sprintf("node-%d", i)
		}
		specs[i] = job.Spec{Command: []string{"true"}, Priority: job.DefaultPriority, Selector: map[string]string{"host": host}}
	}
	return specs
}

// TestUnplaceableDoNotHide is finding 1 of attack 11: jobs that no ready
// worker could ever take, however many and of however many shapes, do not
// keep a job of their tenant that fits an idle worker from starting.
func TestUnplaceableDoNotHide(t *testing.T) {
	for _, tt := range []struct {
		name     string
		n        int
		distinct bool
	}{
		{"DistinctShapes", 300, true},
		{"OneShape", 5000, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.worker("w1", 2, nil)
			h.submitMany(pinned(tt.n, tt.distinct))
			j := h.submit(job.Spec{})
			h.settle(100)
			h.wantState(j.ID, job.Scheduled)
		})
	}
}
