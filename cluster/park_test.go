package cluster

import (
	"context"
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

// submitMany submits specs in batches of up to 10,000 and returns the
// ids.
func (h *harness) submitMany(specs []job.Spec) []string {
	h.t.Helper()
	var ids []string
	for len(specs) > 0 {
		n := min(len(specs), 10_000)
		jobs, err := h.s.SubmitBatch(h.ctx, specs[:n])
		if err != nil {
			h.t.Fatal(err)
		}
		for _, j := range jobs {
			ids = append(ids, j.ID)
		}
		specs = specs[n:]
	}
	return ids
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

// checkParking fails unless every parked entry is where its shape's list
// says, and the lists hold park.n entries of their own shape.
func (h *harness) checkParking() {
	h.t.Helper()
	s := h.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for key, ps := range s.park.shapes {
		if len(ps.slots) == 0 {
			h.t.Fatalf("shape %v parked with no entry", key)
		}
		for i, sl := range ps.slots {
			e := s.wait.at(sl)
			if e.at != parked || int(e.pos) != i || s.shapeOf(e) != key {
				h.t.Fatalf("parked slot %d: at %d pos %d shape %v, want parked at %d in %v", sl, e.at, e.pos, s.shapeOf(e), i, key)
			}
			n++
		}
	}
	if n != s.park.n {
		h.t.Fatalf("%d entries parked, park.n says %d", n, s.park.n)
	}
}

// parkedCount is how many entries are parked.
func (h *harness) parkedCount() int {
	h.s.mu.RLock()
	defer h.s.mu.RUnlock()
	return h.s.park.n
}

// Parked jobs go back to their queues when a worker that could take them
// joins, is undrained, or is relabelled, and are dispatched; cancelling
// one, and a restart, keep the parked lists whole.
func TestParkedComeBack(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 2, nil)
	ids := h.submitMany(pinned(300, true))
	array, err := h.s.SubmitArray(h.ctx, job.Spec{Command: []string{"true"}, Selector: map[string]string{"host": "node-7"}}, job.ArraySpec{First: 0, Last: 9})
	if err != nil {
		t.Fatal(err)
	}
	h.settle(10)
	if n := h.parkedCount(); n != 301 {
		t.Fatalf("%d entries parked, want 301 (300 jobs and one array)", n)
	}
	h.checkParking()

	// A cancelled parked job leaves its list.
	if _, err := h.s.Cancel(h.ctx, ids[0], ""); err != nil {
		t.Fatal(err)
	}
	h.wantState(ids[0], job.Cancelled)
	h.checkParking()

	// A worker with host=node-7 joins: the jobs and the array pinned to it
	// come back and run; the others stay parked.
	h.worker("n7", 16, map[string]string{"host": "node-7"})
	h.settle(10)
	h.checkParking()
	for i := range 10 {
		h.wantState(job.TaskID(array.ID, i), job.Scheduled)
	}
	h.wantState(ids[7], job.Scheduled)

	// Drained, node-7 takes nothing more: a new job for it parks, and
	// comes back once node-7 is undrained.
	if _, err := h.s.Drain(h.ctx, "n7"); err != nil {
		t.Fatal(err)
	}
	late := h.submit(job.Spec{Selector: map[string]string{"host": "node-7"}})
	h.settle(10)
	if got := h.get(late.ID).State; got != job.Pending {
		t.Fatalf("job for a drained worker is %s", got)
	}
	h.checkParking()
	if _, err := h.s.Undrain(h.ctx, "n7"); err != nil {
		t.Fatal(err)
	}
	h.settle(10)
	h.wantState(late.ID, job.Scheduled)

	// A restart rebuilds the queues from the store; the first passes park
	// again what no worker can take, and a job that fits still starts.
	h.restart()
	h.worker("w1", 2, nil)
	j := h.submit(job.Spec{})
	h.settle(10)
	h.wantState(j.ID, job.Scheduled)
	h.checkParking()
	if n := h.parkedCount(); n < 290 {
		t.Fatalf("%d entries parked after a restart, want the 298 pinned jobs nobody has", n)
	}

	// A worker that comes back relabelled takes the jobs of its new label.
	h.worker("w1", 2, map[string]string{"host": "node-42"})
	h.settle(10)
	h.checkParking()
	scheduled := 0
	for _, a := range h.disp.takeAssigns() {
		if a.job.Spec.Selector["host"] == "node-42" {
			scheduled++
		}
	}
	if scheduled != 1 {
		t.Fatalf("%d jobs for node-42 assigned once w1 has its label, want 1", scheduled)
	}
}

// TestMillionUnplaceableAhead is TestUnplaceableDoNotHide at scale: a
// million queued jobs of one shape no worker has and 10,000 of distinct
// such shapes, recovered from bbolt as a restart finds them, ahead of a
// job that fits the one idle worker. It starts after a few passes, each
// of which parks at most maxParkPerPass; after that, passes park nothing
// and walk nothing of the backlog.
func TestMillionUnplaceableAhead(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a store with a million jobs")
	}
	const same, distinct = 1_000_000, 10_000
	db := openBenchStore(t, t.TempDir(), false)
	t.Cleanup(func() { db.Close() })
	fillStoreWith(t, db, same+distinct, benchTenants(1), func(i int, spec *job.Spec) {
		if i < distinct {
			spec.Selector = map[string]string{"host": fmt.Sprintf("node-%d", i)}
		} else {
			spec.Selector = map[string]string{"zone": "nowhere"}
		}
	})
	agent := &fakeAgent{}
	clock := newBenchClock(t0)
	s := recoverCluster(t, db, agent, clock)
	connectWorker(t, s, "w1", 2)
	j, err := s.Submit(context.Background(), job.Spec{Command: []string{"true"}, Priority: job.DefaultPriority})
	if err != nil {
		t.Fatal(err)
	}
	passes := 0
	for {
		passes++
		next := s.Pass(context.Background())
		agent.mu.Lock()
		n := len(agent.assigned)
		agent.mu.Unlock()
		if n > 0 {
			break
		}
		if next.IsZero() || next.After(clock.now()) {
			t.Fatalf("job %s not dispatched, and no pass due, after %d passes", j.ID, passes)
		}
		if passes > (same+distinct)/maxParkPerPass+2 {
			t.Fatalf("job %s not dispatched after %d passes", j.ID, passes)
		}
	}
	if got := agent.assigned[0].ID; got != j.ID {
		t.Fatalf("dispatched %s, want %s", got, j.ID)
	}
	t.Logf("dispatched after %d passes", passes)
	for next := s.Pass(context.Background()); !next.IsZero() && !next.After(clock.now()); next = s.Pass(context.Background()) {
	}
	s.mu.RLock()
	parked, queues := s.park.n, len(s.queues)
	s.mu.RUnlock()
	if parked != same+distinct || queues != 0 {
		t.Fatalf("%d entries parked and %d tenants with a queue, want all %d parked and none", parked, queues, same+distinct)
	}
}
