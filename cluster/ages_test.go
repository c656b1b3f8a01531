package cluster

import (
	"maps"
	"math/rand/v2"
	"slices"
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
	a.add(5e9 + 1)
	a.add(3e9 + 999_999_999)
	a.add(3e9)
	if sec, _ := a.oldest(); sec != 3 {
		t.Fatalf("oldest %d, want 3", sec)
	}
	a.remove(3e9)
	if sec, _ := a.oldest(); sec != 3 {
		t.Fatalf("after one of two left: oldest %d, want 3", sec)
	}
	a.remove(3e9 + 999_999_999)
	if sec, _ := a.oldest(); sec != 5 {
		t.Fatalf("oldest %d, want 5", sec)
	}
	a.remove(5e9 + 1)
	if _, ok := a.oldest(); ok || len(a.secs) != 0 {
		t.Fatalf("emptied: %d seconds left", len(a.secs))
	}
}

// TestReadyAgesProperty checks readyAges against a map of counts over
// random adds and removes, mostly near a moving now, as entries come:
// the oldest, and the invariants (sorted, last not empty, first, empty).
func TestReadyAgesProperty(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	var a readyAges
	want := map[int64]int{} // second → entries
	var live []int64        // ns of the entries added and not removed
	now := int64(1_700_000_000e9)
	for step := range 100_000 {
		now += rng.Int64N(2e8)
		switch r := rng.IntN(100); {
		case r < 50 || len(live) == 0:
			ns := now
			if rng.IntN(10) == 0 {
				ns -= rng.Int64N(600e9) // an old second: a retry, an array refiled
			}
			a.add(ns)
			want[ns/1e9]++
			live = append(live, ns)
		default:
			i := rng.IntN(len(live))
			if r < 80 {
				i = rng.IntN(min(len(live), 8)) // mostly the oldest-filed: dispatch order
			}
			ns := live[i]
			live = slices.Delete(live, i, i+1)
			a.remove(ns)
			if want[ns/1e9]--; want[ns/1e9] == 0 {
				delete(want, ns/1e9)
			}
		}
		got, ok := a.oldest()
		if ok != (len(want) > 0) || ok && got != slices.Min(slices.Collect(maps.Keys(want))) {
			t.Fatalf("step %d: oldest %d %v; want the min of %d seconds", step, got, ok, len(want))
		}
		if step%1000 == 0 || len(want) == 0 {
			checkAges(t, &a, want)
		}
	}
}

// checkAges checks a's invariants and its counts against want.
func checkAges(t *testing.T, a *readyAges, want map[int64]int) {
	t.Helper()
	empty, first := 0, len(a.secs)
	for i, b := range a.secs {
		if i > 0 && a.secs[i-1].off >= b.off {
			t.Fatalf("seconds out of order at %d", i)
		}
		if b.n == 0 {
			empty++
		} else if first == len(a.secs) {
			first = i
		}
		if sec := a.base + int64(b.off); int(b.n) != want[sec] {
			t.Fatalf("second %d counts %d, want %d", sec, b.n, want[sec])
		}
	}
	if n := len(a.secs); n > 0 && a.secs[n-1].n == 0 {
		t.Fatal("the last second is empty")
	}
	if empty != a.empty || first != a.first || len(a.secs)-empty != len(want) {
		t.Fatalf("empty %d first %d (counted %d, %d); %d seconds, want %d", a.empty, a.first, empty, first, len(a.secs)-empty, len(want))
	}
}
