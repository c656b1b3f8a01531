package cluster

import (
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// oldestReady returns the default tenant's TenantStatus.OldestReady.
func (h *harness) oldestReady() time.Time {
	h.t.Helper()
	for _, st := range h.s.Tenants() {
		if st.Tenant.Name == job.DefaultTenant {
			return st.OldestReady
		}
	}
	h.t.Fatal("no default tenant")
	return time.Time{}
}

func TestOldestReady(t *testing.T) {
	h := newHarness(t)
	want := func(step string, at time.Time) {
		t.Helper()
		if got := h.oldestReady(); !got.Equal(at) {
			t.Fatalf("%s: oldest ready since %v, want %v", step, got, at)
		}
	}
	want("nothing queued", time.Time{})
	h.worker("w1", 1, nil)
	advance := func(d time.Duration) { // within w1's lease
		h.advance(d)
		h.s.Heartbeat("w1", nil)
	}
	a := h.submit(job.Spec{})
	advance(10 * time.Second)
	b := h.submit(job.Spec{Retries: 1, Backoff: 30 * time.Second})
	c := h.submit(job.Spec{DependsOn: []string{a.ID}})
	want("a and b ready, c blocked", t0)
	h.pass() // a runs
	want("a dispatched", t0.Add(10*time.Second))

	// c waited 50 s for a: its wait in the queue starts when a completed,
	// not at its submit.
	advance(50 * time.Second)
	h.start(a)
	h.finish(a, scheduler.Exited, 0)
	h.pass() // b runs; c waits for the slot
	h.wantState(b.ID, job.Scheduled)
	want("c unblocked", t0.Add(60*time.Second))

	// b fails and backs off: not ready until its backoff ends, then ready
	// from that moment.
	h.start(b)
	h.finish(b, scheduler.Exited, 1)
	h.wantState(b.ID, job.Pending)
	want("b in backoff", t0.Add(60*time.Second))
	if _, err := h.s.Cancel(h.ctx, c.ID, ""); err != nil {
		t.Fatal(err)
	}
	want("c cancelled, b in backoff", time.Time{})
	advance(30*time.Second + 500*time.Millisecond)
	h.s.mu.Lock()
	h.s.undelay(h.now)
	h.s.mu.Unlock()
	want("b's backoff over", t0.Add(90*time.Second)) // to the second below

	// A job no worker can take is parked, and still counted.
	h.pass() // b runs
	h.wantState(b.ID, job.Scheduled)
	advance(time.Second)
	g := h.submit(job.Spec{Selector: map[string]string{"gpu": "yes"}})
	h.pass()
	want("g parked", h.now.Truncate(time.Second))
	if _, err := h.s.Cancel(h.ctx, g.ID, ""); err != nil {
		t.Fatal(err)
	}
	want("all gone", time.Time{})
	h.s.mu.RLock()
	defer h.s.mu.RUnlock()
	if len(h.s.unblocked) != 0 {
		t.Fatalf("unblocked keeps %d entries of jobs that left", len(h.s.unblocked))
	}
}

func TestReadyAges(t *testing.T) {
	var a readyAges
	if _, ok := a.oldest(); ok {
		t.Fatal("zero value has an oldest")
	}
	a.add(5e9+1, 1)
	a.add(3e9+999_999_999, 1)
	a.add(3e9, 1)
	if sec, _ := a.oldest(); sec != 3 {
		t.Fatalf("oldest %d, want 3", sec)
	}
	a.add(3e9, -1)
	if sec, _ := a.oldest(); sec != 3 {
		t.Fatalf("after one of two left: oldest %d, want 3", sec)
	}
	a.add(3e9+999_999_999, -1)
	if sec, _ := a.oldest(); sec != 5 {
		t.Fatalf("oldest %d, want 5", sec)
	}
	a.add(5e9+1, -1)
	if _, ok := a.oldest(); ok || a.secs.Len() != 0 {
		t.Fatalf("emptied: %d buckets left", a.secs.Len())
	}
}
