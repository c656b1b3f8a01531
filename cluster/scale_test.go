package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// CancelArray counts as a commit too: it is one.
func (c *countingStore) CancelArray(ctx context.Context, a *job.Array, u []job.Update) ([]error, error) {
	c.mu.Lock()
	c.applies++
	c.mu.Unlock()
	return c.Store.CancelArray(ctx, a, u)
}

// A worker lost while holding 500 jobs costs one commit, not 500.
func TestLostWorkerIsOneCommit(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 500, nil)
	specs := make([]job.Spec, 500)
	for i := range specs {
		specs[i] = job.Spec{Command: []string{"true"}, Retries: 1}
	}
	jobs, err := h.s.SubmitBatch(h.ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	before := h.store.applyCount()
	h.pass()
	if n := h.store.applyCount() - before; n != 1 {
		t.Fatalf("dispatching 500 jobs took %d commits, want 1", n)
	}
	for _, j := range jobs[:250] {
		h.start(j)
	}
	h.advance(h.s.cfg.Lease + time.Second)
	before = h.store.applyCount()
	h.pass()
	if n := h.store.applyCount() - before; n != 1 {
		t.Fatalf("losing a worker with 500 jobs took %d commits, want 1", n)
	}
	for _, j := range jobs {
		got := h.wantState(j.ID, job.Pending)
		if got.Attempt != 2 || got.Reason == "" {
			t.Fatalf("job %s: attempt %d reason %q after its worker was lost", j.ID, got.Attempt, got.Reason)
		}
	}
}

// An array of a million tasks limited to 50 at once: its first 10,000
// tasks run on a fake agent, never more than 50 at a time, and the others
// stay one record; a restart resumes where it was, and cancelling it is
// one commit.
func TestMillionTaskArray(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 10,000 tasks")
	}
	h := newHarness(t)
	h.worker("w1", 64, nil)
	a, err := h.s.SubmitArray(h.ctx, job.Spec{Command: []string{"true"}}, job.ArraySpec{First: 0, Last: 999_999, Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	done := 0
	run := func(until int) {
		for done < until {
			h.pass()
			assigned := h.disp.takeAssigns()
			if len(assigned) == 0 {
				t.Fatalf("a pass assigned nothing with %d tasks done", done)
			}
			if st := h.tenant(job.DefaultTenant); st.Scheduled+st.RunningJobs > 50 {
				t.Fatalf("%d tasks scheduled or running, more than the array's limit of 50", st.Scheduled+st.RunningJobs)
			}
			for _, as := range assigned {
				h.start(as.job)
				if _, err := h.finish(as.job, scheduler.Exited, 0); err != nil {
					t.Fatal(err)
				}
				done++
			}
			h.advance(time.Second)
			h.s.Heartbeat("w1", nil)
		}
	}
	run(5000)
	h.restart()
	h.worker("w1", 64, nil)
	run(10_000)
	stored := 0
	if err := h.store.Scan(h.ctx, func(j *job.Job) error {
		if j.Spec.Array != a.ID || j.State != job.Completed || j.Attempt != 1 {
			t.Errorf("stored job %s of array %q: %s attempt %d", j.ID, j.Spec.Array, j.State, j.Attempt)
		}
		stored++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if stored != done {
		t.Fatalf("%d jobs stored for %d tasks run: the others must stay in the array's record", stored, done)
	}
	if st := h.tenant(job.DefaultTenant); st.PendingJobs != 1_000_000-done {
		t.Fatalf("%d tasks pending, want %d", st.PendingJobs, 1_000_000-done)
	}
	if j := h.get(job.TaskID(a.ID, 999_999)); j.State != job.Pending || j.Spec.ArrayIndex != 999_999 {
		t.Fatalf("the last task looked up by id: %s index %d", j.State, j.Spec.ArrayIndex)
	}
	before := h.store.applyCount()
	_, n, err := h.s.CancelArray(h.ctx, a.ID, "")
	if err != nil || n != 1_000_000-done {
		t.Fatalf("cancel: %d tasks, %v; want %d", n, err, 1_000_000-done)
	}
	if c := h.store.applyCount() - before; c != 1 {
		t.Fatalf("cancelling the array took %d commits, want 1", c)
	}
	if st := h.tenant(job.DefaultTenant); st.Queued != 0 {
		t.Fatalf("%d tasks queued after the cancel", st.Queued)
	}
	if j := h.get(job.TaskID(a.ID, 999_999)); j.State != job.Cancelled {
		t.Fatalf("the last task after the cancel: %s", j.State)
	}
}

func (h *harness) tenant(name string) TenantStatus {
	h.t.Helper()
	st, err := h.s.Tenant(name)
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

// Retention deletes the record of an array cancelled before its cutoff
// (its tasks that never ran go with it), and keeps a live one.
func TestSweepArrays(t *testing.T) {
	h := newHarness(t)
	done, err := h.s.SubmitArray(h.ctx, job.Spec{Command: []string{"true"}}, job.ArraySpec{First: 0, Last: 9})
	if err != nil {
		t.Fatal(err)
	}
	live, err := h.s.SubmitArray(h.ctx, job.Spec{Command: []string{"true"}}, job.ArraySpec{First: 0, Last: 9})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.s.CancelArray(h.ctx, done.ID, ""); err != nil {
		t.Fatal(err)
	}
	h.advance(time.Hour)
	h.s.SweepArrays(h.ctx, h.now)
	arrays, err := h.store.Arrays(h.ctx)
	if err != nil || len(arrays) != 1 || arrays[0].ID != live.ID {
		t.Fatalf("arrays after the sweep: %v, %v; want only %s", arrays, err, live.ID)
	}
	if _, err := h.s.Get(h.ctx, job.TaskID(done.ID, 3)); err == nil {
		t.Fatal("a task of the swept array is still found")
	}
	if j := h.get(job.TaskID(live.ID, 3)); j.State != job.Pending {
		t.Fatalf("a task of the live array: %s", j.State)
	}
	h.restart()
	if j := h.get(job.TaskID(live.ID, 3)); j.State != job.Pending {
		t.Fatalf("after a restart, a task of the live array: %s", j.State)
	}
}
