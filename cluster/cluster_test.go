package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

func TestDispatchCommitsOncePerPass(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 2, nil)
	a, b, c := h.submit(job.Spec{}), h.submit(job.Spec{}), h.submit(job.Spec{})
	before := h.store.applyCount()
	h.pass()
	if got := h.store.applyCount() - before; got != 1 {
		t.Fatalf("pass made %d Apply calls, want 1 for all assignments", got)
	}
	got := h.disp.takeAssigns()
	if len(got) != 2 || got[0].job.ID != a.ID || got[1].job.ID != b.ID {
		t.Fatalf("assigned %v, want the two oldest jobs", got)
	}
	h.wantState(a.ID, job.Scheduled)
	h.wantState(c.ID, job.Pending)

	// Finishing one frees a slot for the third.
	h.start(a)
	if _, err := h.finish(a, scheduler.Exited, 0); err != nil {
		t.Fatal(err)
	}
	h.wantState(a.ID, job.Completed)
	h.pass()
	if got := h.disp.takeAssigns(); len(got) != 1 || got[0].job.ID != c.ID {
		t.Fatalf("after a slot freed, assigned %v, want %s", got, c.ID)
	}
}

func TestPriorityOrder(t *testing.T) {
	h := newHarness(t)
	low := h.submit(job.Spec{Priority: 100})
	high := h.submit(job.Spec{Priority: 900})
	h.worker("w1", 1, nil)
	h.pass()
	if got := h.disp.takeAssigns(); len(got) != 1 || got[0].job.ID != high.ID {
		t.Fatalf("assigned %v, want the high-priority job first", got)
	}
	h.wantState(low.ID, job.Pending)
}

func TestFinishOutcomes(t *testing.T) {
	tests := []struct {
		name       string
		outcome    scheduler.Outcome
		code       int
		wantState  job.State
		wantReason string
	}{
		{"Completed", scheduler.Exited, 0, job.Completed, ""},
		{"ExitCode", scheduler.Exited, 3, job.Failed, "exit code 3"},
		{"StartFailed", scheduler.StartFailed, -1, job.Failed, "start: no such file"},
		{"TimedOut", scheduler.TimedOut, -1, job.Failed, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.worker("w1", 1, nil)
			j := h.submit(job.Spec{})
			h.pass()
			h.start(j)
			cur := h.get(j.ID)
			got, err := h.s.JobFinished(h.ctx, "w1", scheduler.Finish{JobID: j.ID, Attempt: 1, Outcome: tt.outcome, ExitCode: tt.code, Reason: "no such file"})
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tt.wantState || got.Reason != tt.wantReason || got.ExitCode != tt.code {
				t.Fatalf("finished = %s %q exit %d, want %s %q exit %d", got.State, got.Reason, got.ExitCode, tt.wantState, tt.wantReason, tt.code)
			}
			h.wantState(j.ID, tt.wantState)
			if got.Version != cur.Version+1 {
				t.Fatalf("version %d, want %d", got.Version, cur.Version+1)
			}
			// The same report again is stale and changes nothing.
			if _, err := h.s.JobFinished(h.ctx, "w1", scheduler.Finish{JobID: j.ID, Attempt: 1, Outcome: scheduler.Exited}); !errors.Is(err, job.ErrConflict) {
				t.Fatalf("duplicate report: err = %v, want ErrConflict", err)
			}
			if h.get(j.ID).Version != got.Version {
				t.Fatal("duplicate report changed the job")
			}
		})
	}
}

func TestRetryWithBackoff(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 1, nil)
	j := h.submit(job.Spec{Retries: 2, Backoff: time.Second})
	h.pass()
	h.start(j)
	if _, err := h.finish(j, scheduler.Exited, 1); err != nil {
		t.Fatal(err)
	}
	cur := h.wantState(j.ID, job.Pending)
	if cur.Attempt != 2 || !cur.NotBefore.Equal(h.now.Add(time.Second)) {
		t.Fatalf("after first failure: attempt %d not before %v, want 2 and +1s", cur.Attempt, cur.NotBefore.Sub(h.now))
	}
	h.disp.takeAssigns()
	if next := h.pass(); !next.Equal(cur.NotBefore) {
		t.Fatalf("pass wants to wake at %v, want at the end of the backoff %v", next, cur.NotBefore)
	}
	if got := h.disp.takeAssigns(); len(got) != 0 {
		t.Fatalf("assigned during backoff: %v", got)
	}
	h.advance(time.Second)
	h.pass()
	if got := h.disp.takeAssigns(); len(got) != 1 || got[0].job.Attempt != 2 {
		t.Fatalf("after backoff assigned %v, want attempt 2", got)
	}
	// The stale first attempt's late report is rejected.
	if _, err := h.s.JobFinished(h.ctx, "w1", scheduler.Finish{JobID: j.ID, Attempt: 1, Outcome: scheduler.Exited}); !errors.Is(err, job.ErrConflict) {
		t.Fatalf("stale report: err = %v, want ErrConflict", err)
	}
	h.start(j)
	h.finish(j, scheduler.Exited, 1)
	if cur := h.wantState(j.ID, job.Pending); cur.Attempt != 3 || !cur.NotBefore.Equal(h.now.Add(2*time.Second)) {
		t.Fatalf("second backoff: attempt %d, delay %v; want 3 and 2s (doubled)", cur.Attempt, cur.NotBefore.Sub(h.now))
	}
	h.advance(2 * time.Second)
	h.pass()
	h.start(j)
	h.finish(j, scheduler.Exited, 1)
	if cur := h.wantState(j.ID, job.Failed); cur.Attempt != 3 || cur.Reason != "exit code 1" {
		t.Fatalf("out of retries: attempt %d reason %q", cur.Attempt, cur.Reason)
	}
}

func TestTimeout(t *testing.T) {
	for _, confirm := range []bool{true, false} {
		name := map[bool]string{true: "AgentConfirms", false: "AgentSilent"}[confirm]
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.worker("w1", 1, nil)
			j := h.submit(job.Spec{Timeout: 10 * time.Second})
			h.pass()
			h.start(j)
			if next := h.pass(); next.IsZero() || next.After(h.now.Add(10*time.Second)) {
				t.Fatalf("next wake %v, want at most the timeout", next)
			}
			h.advance(10 * time.Second)
			h.s.Heartbeat("w1", &Stats{})
			h.pass()
			c := h.disp.takeCancels()
			if len(c) != 1 || c[0].Reason != scheduler.ReasonTimeout || c[0].Grace != 2*time.Second {
				t.Fatalf("cancels = %+v, want one timeout order with the kill grace", c)
			}
			if confirm {
				h.finish(j, scheduler.Killed, -1)
			} else {
				for range 7 { // kill grace + lease, heartbeats keep the worker up
					h.advance(time.Second)
					h.s.Heartbeat("w1", &Stats{})
					h.pass()
				}
			}
			if got := h.wantState(j.ID, job.Failed); got.Reason != scheduler.ReasonTimeout {
				t.Fatalf("reason %q, want timeout", got.Reason)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 2, nil)
	pending := h.submit(job.Spec{Selector: map[string]string{"gpu": "yes"}})
	scheduled := h.submit(job.Spec{})
	running := h.submit(job.Spec{})
	h.pass()
	h.start(running)

	if got, err := h.s.Cancel(h.ctx, pending.ID, ""); err != nil || got.State != job.Cancelled || got.Reason != scheduler.ReasonUserCancel {
		t.Fatalf("cancel pending = %+v, %v", got, err)
	}
	if _, err := h.s.Cancel(h.ctx, scheduled.ID, ""); err != nil {
		t.Fatal(err)
	}
	h.wantState(scheduled.ID, job.Cancelled)
	got, err := h.s.Cancel(h.ctx, running.ID, "")
	if err != nil || got.State != job.Running || got.CancelRequested != scheduler.ReasonUserCancel {
		t.Fatalf("cancel running = %+v, %v; want Running with a stop requested", got, err)
	}
	if c := h.disp.takeCancels(); len(c) != 2 {
		t.Fatalf("stop orders = %+v, want one for the scheduled and one for the running job", c)
	}
	// However the process ends, a user's cancel makes it Cancelled.
	if _, err := h.finish(running, scheduler.Exited, 143); err != nil {
		t.Fatal(err)
	}
	h.wantState(running.ID, job.Cancelled)
	if _, err := h.s.Cancel(h.ctx, running.ID, ""); !errors.Is(err, job.ErrConflict) {
		t.Fatalf("cancel of a terminal job: err = %v, want ErrConflict", err)
	}
	if _, err := h.s.Cancel(h.ctx, "01ARZ3NDEKTSV4RRFFQ69G5FAV", ""); !errors.Is(err, job.ErrNotFound) {
		t.Fatalf("cancel of unknown job: err = %v, want ErrNotFound", err)
	}
}

func TestDependencies(t *testing.T) {
	t.Run("RunsAfterCompleted", func(t *testing.T) {
		h := newHarness(t)
		h.worker("w1", 4, nil)
		a := h.submit(job.Spec{})
		b := h.submit(job.Spec{DependsOn: []string{a.ID}})
		h.pass()
		if got := h.disp.takeAssigns(); len(got) != 1 || got[0].job.ID != a.ID {
			t.Fatalf("assigned %v, want only the dependency", got)
		}
		h.start(a)
		h.finish(a, scheduler.Exited, 0)
		h.pass()
		if got := h.disp.takeAssigns(); len(got) != 1 || got[0].job.ID != b.ID {
			t.Fatalf("after a completed, assigned %v, want b", got)
		}
	})
	t.Run("CancelledWhenDependencyFails", func(t *testing.T) {
		h := newHarness(t)
		h.worker("w1", 4, nil)
		a := h.submit(job.Spec{})
		b := h.submit(job.Spec{DependsOn: []string{a.ID}})
		c := h.submit(job.Spec{DependsOn: []string{b.ID}})
		h.pass()
		h.start(a)
		h.finish(a, scheduler.Exited, 2)
		h.pass()
		if got := h.wantState(b.ID, job.Cancelled); got.Reason != "dependency "+a.ID+" failed" {
			t.Fatalf("b reason %q", got.Reason)
		}
		h.pass()
		// The first cause is passed down the chain.
		if got := h.wantState(c.ID, job.Cancelled); got.Reason != "dependency "+a.ID+" failed" {
			t.Fatalf("c reason %q", got.Reason)
		}
	})
	t.Run("DependencyAlreadyFailed", func(t *testing.T) {
		h := newHarness(t)
		a := h.submit(job.Spec{})
		h.s.Cancel(h.ctx, a.ID, "")
		b := h.submit(job.Spec{DependsOn: []string{a.ID}})
		h.pass()
		h.wantState(b.ID, job.Cancelled)
	})
	t.Run("UnknownDependency", func(t *testing.T) {
		h := newHarness(t)
		_, err := h.s.Submit(h.ctx, job.Spec{Command: []string{"true"}, Priority: 1, DependsOn: []string{"01ARZ3NDEKTSV4RRFFQ69G5FAV"}})
		var fe *job.FieldError
		if !errors.As(err, &fe) || fe.Field != "after" {
			t.Fatalf("err = %v, want a field error on after", err)
		}
	})
}

func TestWorkerLost(t *testing.T) {
	obs := &countingObserver{}
	h := newHarness(t, func(c *Config) { c.Observer = obs })
	h.worker("w1", 2, nil)
	retry := h.submit(job.Spec{Retries: 1})
	once := h.submit(job.Spec{})
	h.pass()
	h.start(retry)
	h.start(once)
	h.advance(4 * time.Second)
	h.pass()
	h.wantState(retry.ID, job.Running) // still within the lease
	h.advance(time.Second)
	h.pass()
	if got := h.wantState(retry.ID, job.Pending); got.Attempt != 2 || !strings.Contains(got.Reason, scheduler.ReasonWorkerLost) {
		t.Fatalf("retry job: attempt %d reason %q", got.Attempt, got.Reason)
	}
	if got := h.wantState(once.ID, job.Failed); got.Reason != scheduler.ReasonWorkerLost {
		t.Fatalf("once job reason %q", got.Reason)
	}
	if ws := h.s.Workers(); len(ws) != 1 || ws[0].State != job.WorkerDown {
		t.Fatalf("workers = %+v, want w1 DOWN", ws)
	}
	if obs.lost != 1 {
		t.Fatalf("observer saw %d workers lost, want 1", obs.lost)
	}
	// A second worker takes the retry; the lost attempt's late report is rejected.
	h.worker("w2", 1, nil)
	h.advance(time.Second)
	h.pass()
	if got := h.wantState(retry.ID, job.Scheduled); got.Worker != "w2" {
		t.Fatalf("retry went to %s, want w2", got.Worker)
	}
	if _, err := h.s.JobFinished(h.ctx, "w1", scheduler.Finish{JobID: retry.ID, Attempt: 1, Outcome: scheduler.Exited}); !errors.Is(err, job.ErrConflict) {
		t.Fatalf("late report: %v, want ErrConflict", err)
	}
	h.wantState(retry.ID, job.Scheduled)
}

func TestRecoverAndReconcile(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 3, nil)
	kept := h.submit(job.Spec{})
	gone := h.submit(job.Spec{})
	unsent := h.submit(job.Spec{})
	h.pass()
	h.start(kept)
	h.start(gone)
	waiting := h.submit(job.Spec{})

	h.restart()
	h.wantState(waiting.ID, job.Pending)
	h.wantState(kept.ID, job.Running)
	// The agent comes back running only one of its two jobs.
	rc := h.worker("w1", 4, nil, Ref{kept.ID, 1})
	if len(rc.Assign) != 1 || rc.Assign[0].ID != unsent.ID {
		t.Fatalf("reconcile assigns %v, want the scheduled job re-sent", rc.Assign)
	}
	h.wantState(kept.ID, job.Running)
	h.wantState(gone.ID, job.Failed)
	h.pass()
	h.wantState(waiting.ID, job.Scheduled)
}

func TestRecoveredWorkerMustReturnWithinLease(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 1, nil)
	j := h.submit(job.Spec{})
	h.pass()
	h.start(j)
	h.restart()
	h.advance(5 * time.Second)
	h.pass()
	h.wantState(j.ID, job.Failed)
}

func TestDrain(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 1, nil)
	if _, err := h.s.Drain(h.ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	h.submit(job.Spec{})
	h.pass()
	if got := h.disp.takeAssigns(); len(got) != 0 {
		t.Fatalf("a drained worker got %v", got)
	}
	// Draining survives a restart and a reconnect.
	h.restart()
	h.worker("w1", 1, nil)
	h.pass()
	if got := h.disp.takeAssigns(); len(got) != 0 {
		t.Fatalf("a drained worker got %v after restart", got)
	}
	if _, err := h.s.Drain(h.ctx, "nope"); !errors.Is(err, job.ErrNotFound) {
		t.Fatalf("drain unknown: %v", err)
	}
}

func TestUndrain(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 1, nil)
	if _, err := h.s.Drain(h.ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	j := h.submit(job.Spec{})
	h.pass()
	h.wantState(j.ID, job.Pending)
	w, err := h.s.Undrain(h.ctx, "w1")
	if err != nil || w.State != job.WorkerReady || w.Worker.Drained {
		t.Fatalf("undrain: %+v, %v; want READY, not drained", w, err)
	}
	if h.storedWorker("w1").Drained {
		t.Fatal("undrain was not stored")
	}
	h.pass()
	h.wantState(j.ID, job.Scheduled)

	// Undrained survives a restart: the worker takes jobs after its Hello.
	h.restart()
	h.worker("w1", 2, nil)
	k := h.submit(job.Spec{})
	h.pass()
	h.wantState(k.ID, job.Scheduled)

	// A worker that is not drained, or not connected, is undrained in place.
	if w, err := h.s.Undrain(h.ctx, "w1"); err != nil || w.State != job.WorkerReady {
		t.Fatalf("undrain of a ready worker: %+v, %v", w, err)
	}
	if _, err := h.s.Undrain(h.ctx, "nope"); !errors.Is(err, job.ErrNotFound) {
		t.Fatalf("undrain unknown: %v", err)
	}
}

func TestStaleAgentStartIsRejected(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 1, nil)
	j := h.submit(job.Spec{})
	h.pass()
	if err := h.s.JobStarted(h.ctx, "w2", Ref{j.ID, 1}, h.now); !errors.Is(err, job.ErrConflict) {
		t.Fatalf("start from the wrong worker: %v", err)
	}
	if err := h.s.JobStarted(h.ctx, "w1", Ref{j.ID, 1}, h.now); err != nil {
		t.Fatal(err)
	}
	if err := h.s.JobStarted(h.ctx, "w1", Ref{j.ID, 1}, h.now); err != nil {
		t.Fatalf("repeated start: %v, want accepted", err)
	}
}

// TestCancelWinsOverAConcurrentResult: a result computed from the job as it
// was before a cancel request must not overwrite that request.
func TestCancelWinsOverAConcurrentResult(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 1, nil)
	j := h.submit(job.Spec{Retries: 1})
	h.pass()
	h.start(j)
	before := h.get(j.ID) // what a result handler read
	if _, err := h.s.Cancel(h.ctx, j.ID, ""); err != nil {
		t.Fatal(err)
	}
	stale := scheduler.Finished(before, scheduler.Finish{JobID: j.ID, Attempt: 1, Outcome: scheduler.Exited, ExitCode: 1}, h.now)
	errs, err := h.store.Apply(h.ctx, []job.Update{{Expect: before.Expected(), Next: stale}})
	if err != nil || !errors.Is(errs[0], job.ErrConflict) {
		t.Fatalf("a result computed before the cancel was applied: %v %v", errs, err)
	}
	if _, err := h.finish(j, scheduler.Exited, 1); err != nil {
		t.Fatal(err)
	}
	if got := h.wantState(j.ID, job.Cancelled); got.Attempt != 1 {
		t.Fatalf("cancelled job went on to attempt %d", got.Attempt)
	}
}

func TestLostOutputIsInTheReason(t *testing.T) {
	cur := &job.Job{ID: "j", State: job.Running, Attempt: 1}
	got := scheduler.Finished(cur, scheduler.Finish{JobID: "j", Attempt: 1, Outcome: scheduler.Exited, Lost: "disk error"}, time.Time{})
	if got.State != job.Completed || got.Reason != "output lost: disk error" {
		t.Fatalf("exit 0 with lost output: %s %q", got.State, got.Reason)
	}
	got = scheduler.Finished(cur, scheduler.Finish{JobID: "j", Attempt: 1, Outcome: scheduler.Exited, ExitCode: -1, Reason: "signal: segmentation fault"}, time.Time{})
	if got.State != job.Failed || got.Reason != "signal: segmentation fault" {
		t.Fatalf("killed by a signal: %s %q", got.State, got.Reason)
	}
}

// TestWorkerLeaving: a worker whose agent said goodbye gets no new jobs
// until its next Hello, which (unlike Drain) takes work again.
func TestWorkerLeaving(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 1, nil)
	h.s.WorkerLeaving("w1")
	h.submit(job.Spec{})
	h.pass()
	if got := h.disp.takeAssigns(); len(got) != 0 {
		t.Fatalf("a leaving worker got %v", got)
	}
	h.worker("w1", 1, nil) // its next agent says Hello
	h.pass()
	if got := h.disp.takeAssigns(); len(got) != 1 {
		t.Fatalf("the worker back got %d assignments, want 1", len(got))
	}
	h.s.WorkerLeaving("nope") // unknown: nothing happens
}
