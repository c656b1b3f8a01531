package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// Retention deletes a finished task's job while its array still has tasks
// not materialized; after a restart the deleted task runs again.
func TestAdversarialRetentionRerunsArrayTask(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 1, nil)
	a, err := h.s.SubmitArray(h.ctx, job.Spec{Command: []string{"true"}}, job.ArraySpec{First: 0, Last: 2})
	if err != nil {
		t.Fatal(err)
	}
	h.pass()
	as := h.disp.takeAssigns()
	if len(as) != 1 {
		t.Fatalf("%d assigned", len(as))
	}
	first := as[0].job
	h.start(first)
	if _, err := h.finish(first, scheduler.Exited, 0); err != nil {
		t.Fatal(err)
	}
	// Retention, as the server runs it.
	h.advance(time.Hour)
	before := h.now.Add(-time.Minute)
	ids, err := h.store.DeleteFinished(h.ctx, before, 1000, h.s.Retain(h.ctx, before))
	if err != nil {
		t.Fatal(err)
	}
	h.s.Forget(h.ctx, ids)
	t.Logf("retention deleted %v", ids)
	h.restart()
	h.worker("w1", 1, nil)
	h.pass()
	for _, x := range h.disp.takeAssigns() {
		if x.job.ID == first.ID {
			t.Fatalf("task %s (index %d) completed before the restart and was dispatched again", first.ID, x.job.Spec.ArrayIndex)
		}
	}
	_ = a
}

// A cancelled array's record is never deleted: sweepArrays has no caller.
func TestAdversarialCancelledArrayNeverSwept(t *testing.T) {
	h := newHarness(t)
	a, err := h.s.SubmitArray(h.ctx, job.Spec{Command: []string{"true"}}, job.ArraySpec{First: 0, Last: 9})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.s.CancelArray(h.ctx, a.ID, ""); err != nil {
		t.Fatal(err)
	}
	h.advance(30 * 24 * time.Hour)
	before := h.now.Add(-time.Hour)
	ids, err := h.store.DeleteFinished(h.ctx, before, 1000, h.s.Retain(h.ctx, before))
	if err != nil {
		t.Fatal(err)
	}
	h.s.Forget(h.ctx, ids)
	h.s.SweepArrays(h.ctx, before)
	h.pass()
	arrs, _ := h.store.Arrays(h.ctx)
	h.s.mu.RLock()
	n := len(h.s.arrays)
	h.s.mu.RUnlock()
	if len(arrs) != 0 || n != 0 {
		t.Fatalf("30 days after its cancel: %d array records stored, %d in memory; its 10 cancelled tasks still listed", len(arrs), n)
	}
}

// hookStore runs a function before CancelArray reaches the store, to put a
// pass between CancelArray's read of the array's jobs and its commit.
type hookStore struct {
	*countingStore
	before func()
}

func (s *hookStore) CancelArray(ctx context.Context, a *job.Array, u []job.Update) ([]error, error) {
	if f := s.before; f != nil {
		s.before = nil
		f()
	}
	return s.countingStore.CancelArray(ctx, a, u)
}

// A pass that dispatches a task between CancelArray's read of the array's
// jobs and its commit: the task is Scheduled and stays so, and runs, though
// its array is cancelled.
func TestAdversarialCancelArrayRacesDispatch(t *testing.T) {
	h := newHarness(t)
	hs := &hookStore{countingStore: h.store}
	h.s.cfg.Store = hs
	a, err := h.s.SubmitArray(h.ctx, job.Spec{Command: []string{"true"}}, job.ArraySpec{First: 0, Last: 3})
	if err != nil {
		t.Fatal(err)
	}
	h.worker("w1", 1, nil)
	hs.before = func() { h.pass() }
	_, n, err := h.s.CancelArray(h.ctx, a.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	as := h.disp.takeAssigns()
	t.Logf("cancel said %d tasks; %d dispatched meanwhile", n, len(as))
	for i := 0; i < 3; i++ {
		h.advance(time.Second)
		h.pass()
	}
	for _, x := range as {
		if j := h.get(x.job.ID); !j.State.Terminal() && j.Stop == job.NoStop {
			t.Fatalf("task %s is %s with no stop after its array was cancelled", j.ID, j.State)
		}
	}
}

// A task that starts between CancelArray's read of the array's jobs and
// its commit: its update loses to the start, and it is stopped all the
// same.
func TestAdversarialCancelArrayRacesStart(t *testing.T) {
	h := newHarness(t)
	hs := &hookStore{countingStore: h.store}
	h.s.cfg.Store = hs
	a, err := h.s.SubmitArray(h.ctx, job.Spec{Command: []string{"true"}}, job.ArraySpec{First: 0, Last: 3})
	if err != nil {
		t.Fatal(err)
	}
	h.worker("w1", 1, nil)
	h.pass()
	as := h.disp.takeAssigns()
	if len(as) != 1 {
		t.Fatalf("%d tasks dispatched, want 1", len(as))
	}
	hs.before = func() { h.start(as[0].job) }
	if _, _, err := h.s.CancelArray(h.ctx, a.ID, ""); err != nil {
		t.Fatal(err)
	}
	if j := h.get(as[0].job.ID); j.State != job.Running || j.Stop == job.NoStop {
		t.Fatalf("task %s is %s with stop %v after its array was cancelled; want RUNNING and stopping", j.ID, j.State, j.Stop)
	}
}

// 100,000 jobs of one tenant that fit nowhere (a selector no worker has),
// plus another tenant's small jobs: the small ones start, and a pass costs
// what it places.
func TestAdversarialUnfitBacklog(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AutoTenants = true })
	for range 10 {
		specs := make([]job.Spec, 10_000)
		for i := range specs {
			specs[i] = job.Spec{Tenant: "big", Command: []string{"true"}, Selector: map[string]string{"gpu": "yes"}}
		}
		if _, err := h.s.SubmitBatch(h.ctx, specs); err != nil {
			t.Fatal(err)
		}
	}
	// and a 100,000-task array with the same selector
	if _, err := h.s.SubmitArray(h.ctx, job.Spec{Tenant: "big", Command: []string{"true"}, Selector: map[string]string{"gpu": "yes"}}, job.ArraySpec{First: 0, Last: 99_999}); err != nil {
		t.Fatal(err)
	}
	var small []*job.Job
	for range 20 {
		small = append(small, h.submit(job.Spec{Tenant: "small"}))
	}
	h.worker("w1", 4, nil)
	started := 0
	var worst time.Duration
	for round := 0; round < 10 && started < len(small); round++ {
		t0 := time.Now()
		h.pass()
		worst = max(worst, time.Since(t0))
		for _, a := range h.disp.takeAssigns() {
			if a.job.Spec.Tenant != "small" {
				t.Fatalf("dispatched %s of %s", a.job.ID, a.job.Spec.Tenant)
			}
			h.start(a.job)
			if _, err := h.finish(a.job, scheduler.Exited, 0); err != nil {
				t.Fatal(err)
			}
			started++
		}
		h.advance(time.Second)
		h.s.Heartbeat("w1", nil)
	}
	t.Logf("%d/%d small jobs ran; slowest pass %v", started, len(small), worst)
	if started < len(small) {
		t.Fatalf("only %d of %d small jobs ran in 10 passes", started, len(small))
	}
}

// One tenant: 300 jobs that fit nowhere submitted before 5 that fit. The
// 5 never start: every pass gives up on the tenant after 256 skips.
func TestAdversarialHeadOfLineUnfit(t *testing.T) {
	h := newHarness(t)
	specs := make([]job.Spec, 300)
	for i := range specs {
		specs[i] = job.Spec{Command: []string{"true"}, Priority: job.DefaultPriority, Selector: map[string]string{"gpu": "yes"}}
	}
	if _, err := h.s.SubmitBatch(h.ctx, specs); err != nil {
		t.Fatal(err)
	}
	h.advance(time.Millisecond)
	for range 5 {
		h.submit(job.Spec{})
	}
	h.worker("w1", 4, nil)
	n := 0
	for range 20 {
		h.pass()
		n += len(h.disp.takeAssigns())
		h.advance(time.Minute)
		h.s.Heartbeat("w1", nil)
	}
	if n == 0 {
		t.Fatalf("20 passes over 20 minutes, 4 free slots: none of the 5 runnable jobs started behind 300 that fit nowhere")
	}
}

// An array with a deadline: the once-a-second re-key treats its queue entry
// as a waiting job — it files a waitRef under the array's id and replaces
// the tree entry the array no longer points to, so a stale copy of the
// array's tasks stays in the queue for good.
func TestAdversarialRekeyArrayWithDeadline(t *testing.T) {
	h := newHarness(t)
	a, err := h.s.SubmitArray(h.ctx, job.Spec{Command: []string{"true"}, Deadline: h.now.Add(time.Hour)}, job.ArraySpec{First: 0, Last: 3})
	if err != nil {
		t.Fatal(err)
	}
	h.worker("w1", 1, nil)
	ran := map[string]int{}
	for range 12 {
		h.advance(2 * time.Second)
		h.s.Heartbeat("w1", nil)
		h.pass()
		for _, x := range h.disp.takeAssigns() {
			ran[x.job.ID]++
			h.start(x.job)
			if _, err := h.finish(x.job, scheduler.Exited, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	h.s.mu.RLock()
	_, bogus := h.s.wait.lookup(a.ID)
	entries := 0
	for _, q := range h.s.queues {
		entries += q.n
	}
	h.s.mu.RUnlock()
	t.Logf("ran %d tasks: %v; waiting[array id] present: %v; queue entries left: %d", len(ran), ran, bogus, entries)
	if bogus || entries != 0 || len(ran) != 4 {
		t.Fatalf("after the array's 4 tasks: waiting has the array id: %v, %d queue entries left, %d tasks ran", bogus, entries, len(ran))
	}
}

// ...and the stale entry takes the slot of every later pass: a job of the
// same tenant submitted after the array finished never starts.
func TestAdversarialRekeyArrayStarves(t *testing.T) {
	h := newHarness(t)
	_, err := h.s.SubmitArray(h.ctx, job.Spec{Command: []string{"true"}, Deadline: h.now.Add(time.Hour)}, job.ArraySpec{First: 0, Last: 3})
	if err != nil {
		t.Fatal(err)
	}
	h.worker("w1", 1, nil)
	step := func() int {
		h.advance(2 * time.Second)
		h.s.Heartbeat("w1", nil)
		before := h.store.applyCount()
		h.pass()
		as := h.disp.takeAssigns()
		for _, x := range as {
			h.start(x.job)
			if _, err := h.finish(x.job, scheduler.Exited, 0); err != nil {
				t.Fatal(err)
			}
		}
		_ = before
		return len(as)
	}
	for range 8 {
		step()
	}
	h.dumpQueues()
	j := h.submit(job.Spec{Priority: 1})
	h.dumpQueues()
	commits := h.store.applyCount()
	for range 10 {
		step()
	}
	got := h.get(j.ID)
	t.Logf("10 passes made %d commits", h.store.applyCount()-commits)
	if got.State == job.Pending {
		t.Fatalf("a job submitted after the array ended is still %s after 10 passes on a free worker", got.State)
	}
}

func (h *harness) dumpQueues() {
	h.s.mu.RLock()
	defer h.s.mu.RUnlock()
	for tn, q := range h.s.queues {
		q.each(func(it qitem) bool {
			w := h.s.waitingOf(it.slot)
			h.t.Logf("queue %s: %s key=%d tasks=%v deadline=%d", tn, w.ID, w.Key, w.Tasks, w.Deadline)
			return true
		})
	}
}

// Cancelled arrays are never swept, and every listing page walks every
// array from the first, building a probe task for each.
func TestAdversarialListWalksAllArrays(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AutoTenants = true })
	const n = 20_000
	for i := range n {
		a, err := h.s.SubmitArray(h.ctx, job.Spec{Command: []string{"true"}, Env: map[string]string{"A": "b"}}, job.ArraySpec{First: 0, Last: 0})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := h.s.CancelArray(h.ctx, a.ID, ""); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 0 {
			h.advance(time.Millisecond)
		}
	}
	h.submit(job.Spec{Tenant: "other"})
	t0 := time.Now()
	const pages = 50
	for range pages {
		if _, _, err := h.s.List(h.ctx, job.Filter{Tenant: "other", Limit: 10}); err != nil {
			t.Fatal(err)
		}
	}
	per := time.Since(t0) / pages
	allocs := testing.AllocsPerRun(5, func() { h.s.List(h.ctx, job.Filter{Tenant: "other", Limit: 10}) })
	t.Logf("one page of tenant other's 1 job with %d cancelled arrays of another tenant kept: %v, %.0f allocs", n, per, allocs)
}
