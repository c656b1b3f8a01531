package cluster

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

func pstep(name string, needs ...string) job.Step {
	return job.Step{Name: name, Spec: job.Spec{Command: []string{"true"}, Priority: -1}, Needs: needs}
}

// runPipeline submits a pipeline on a sim and returns its record.
func runPipeline(t *testing.T, s *sim, spec job.PipelineSpec) *job.Pipeline {
	t.Helper()
	p, _, err := s.h.s.RunPipeline(s.h.ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func jobsOfStep(s *sim, p *job.Pipeline, step string) []*job.Job {
	for _, st := range p.Steps {
		if st.Name == step {
			var out []*job.Job
			for _, id := range st.Jobs {
				out = append(out, s.h.get(id))
			}
			return out
		}
	}
	return nil
}

func TestPipelineDiamondRunsInOrder(t *testing.T) {
	s := newSim(t, 1, 4)
	var order []string
	s.onDispatch = func(j *job.Job) { order = append(order, j.Spec.Step) }
	p := runPipeline(t, s, job.PipelineSpec{Name: "diamond", Steps: []job.Step{
		pstep("a"), pstep("b", "a"), pstep("c", "a"), pstep("d", "b", "c"),
	}})
	if st, _ := s.h.s.Pipeline(s.h.ctx, p.ID); st.State != job.PipelinePending {
		t.Fatalf("state before anything ran: %s", st.State)
	}
	for range 10 {
		s.step(time.Minute)
	}
	if fmt.Sprint(order) != "[a b c d]" && fmt.Sprint(order) != "[a c b d]" {
		t.Fatalf("dispatch order %v, want a, then b and c together, then d", order)
	}
	b, c := jobsOfStep(s, p, "b")[0], jobsOfStep(s, p, "c")[0]
	if !b.ScheduledAt.Equal(c.ScheduledAt) {
		t.Fatalf("b scheduled at %s, c at %s: want them in the same pass", b.ScheduledAt, c.ScheduledAt)
	}
	if st, _ := s.h.s.Pipeline(s.h.ctx, p.ID); st.State != job.PipelineCompleted || len(st.Jobs) != 4 {
		t.Fatalf("pipeline %s with %d jobs, want COMPLETED with 4", st.State, len(st.Jobs))
	}
}

func TestPipelineMatrixFansOutAndIn(t *testing.T) {
	s := newSim(t, 2, 4)
	test := pstep("test", "build")
	test.Matrix = []job.MatrixAxis{{Key: "os", Values: []string{"linux", "mac", "bsd"}}, {Key: "arch", Values: []string{"amd64", "arm64"}}}
	p := runPipeline(t, s, job.PipelineSpec{Steps: []job.Step{pstep("build"), test, pstep("merge", "test")}})
	tests := jobsOfStep(s, p, "test")
	merge := jobsOfStep(s, p, "merge")[0]
	if len(tests) != 6 || len(merge.Spec.DependsOn) != 6 {
		t.Fatalf("%d test jobs, merge waits for %d; want 6 and 6", len(tests), len(merge.Spec.DependsOn))
	}
	s.duration = func(j *job.Job) time.Duration {
		if j.Spec.Env["MATRIX_OS"] == "bsd" {
			return 5 * time.Minute // the slowest of the fan-out
		}
		return 10 * time.Second
	}
	for range 20 {
		s.step(time.Minute)
	}
	merge = s.h.get(merge.ID)
	for _, tj := range jobsOfStep(s, p, "test") {
		if tj.State != job.Completed || tj.FinishedAt.After(merge.ScheduledAt) {
			t.Fatalf("merge scheduled at %s before test job %s (%s) finished at %s", merge.ScheduledAt, tj.Spec.Name, tj.State, tj.FinishedAt)
		}
	}
}

func TestPipelineFailureCancelsDependentsOnly(t *testing.T) {
	for _, cont := range []bool{false, true} {
		t.Run(fmt.Sprintf("ContinueOnFailure=%v", cont), func(t *testing.T) {
			s := newSim(t, 1, 4)
			b := pstep("b", "a")
			b.ContinueOnFailure = cont
			p := runPipeline(t, s, job.PipelineSpec{Steps: []job.Step{
				pstep("a"), b, pstep("d", "b"), pstep("e", "d"), pstep("side"),
			}})
			// b fails; everything else exits 0.
			failing := jobsOfStep(s, p, "b")[0].ID
			s.h.pass()
			for range 10 {
				for _, a := range s.h.disp.takeAssigns() {
					s.h.start(a.job)
					code := 0
					if a.job.ID == failing {
						code = 3
					}
					if _, err := s.h.finish(a.job, scheduler.Exited, code); err != nil {
						t.Fatal(err)
					}
				}
				s.h.pass()
			}
			d, e := jobsOfStep(s, p, "d")[0], jobsOfStep(s, p, "e")[0]
			if side := jobsOfStep(s, p, "side")[0]; side.State != job.Completed {
				t.Fatalf("independent branch: %s, want COMPLETED", side.State)
			}
			st, _ := s.h.s.Pipeline(s.h.ctx, p.ID)
			if cont {
				if d.State != job.Completed || e.State != job.Completed || st.State != job.PipelineCompleted {
					t.Fatalf("continue_on_failure: d %s, e %s, pipeline %s; want all COMPLETED", d.State, e.State, st.State)
				}
				return
			}
			if d.State != job.Cancelled || d.Reason != "dependency b failed" || e.State != job.Cancelled || e.Reason != "dependency b failed" {
				t.Fatalf("after b failed: d %s %q, e %s %q; want both CANCELLED by \"dependency b failed\"", d.State, d.Reason, e.State, e.Reason)
			}
			if st.State != job.PipelineFailed {
				t.Fatalf("pipeline %s, want FAILED", st.State)
			}
		})
	}
}

func TestPipelineResumesAfterRestart(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Heartbeat, c.Lease = time.Hour, 1000*time.Hour })
	h.worker("w", 4, nil)
	p, _, err := h.s.RunPipeline(h.ctx, job.PipelineSpec{Steps: []job.Step{pstep("a"), pstep("b", "a"), pstep("c", "b")}})
	if err != nil {
		t.Fatal(err)
	}
	h.pass()
	a := h.disp.takeAssigns()[0].job
	h.start(a)
	if _, err := h.finish(a, scheduler.Exited, 0); err != nil {
		t.Fatal(err)
	}
	h.restart()
	h.worker("w", 4, nil)
	h.pass()
	as := h.disp.takeAssigns()
	if len(as) != 1 || as[0].job.Spec.Step != "b" {
		t.Fatalf("after a restart assigned %v, want only b (a completed before)", as)
	}
	st, err := h.s.Pipeline(h.ctx, p.ID)
	if err != nil || st.State != job.PipelineRunning {
		t.Fatalf("recovered pipeline: %v %v, want RUNNING", st.State, err)
	}
}

func TestCancelPipeline(t *testing.T) {
	s := newSim(t, 1, 4)
	s.duration = func(*job.Job) time.Duration { return time.Hour }
	p := runPipeline(t, s, job.PipelineSpec{Steps: []job.Step{pstep("a"), pstep("b", "a")}})
	s.step(time.Minute)
	if _, err := s.h.s.CancelPipeline(s.h.ctx, p.ID, ""); err != nil {
		t.Fatal(err)
	}
	s.step(time.Minute) // the agent stops a
	st, _ := s.h.s.Pipeline(s.h.ctx, p.ID)
	if st.State != job.PipelineCancelled {
		t.Fatalf("pipeline %s after cancel, want CANCELLED", st.State)
	}
	if b := jobsOfStep(s, p, "b")[0]; b.State != job.Cancelled || b.Reason != ReasonPipelineCancelled {
		t.Fatalf("b: %s %q, want CANCELLED by the pipeline cancel", b.State, b.Reason)
	}
	if _, err := s.h.s.CancelPipeline(s.h.ctx, p.ID, ""); !errors.Is(err, job.ErrConflict) {
		t.Fatalf("cancel again: %v, want Conflict", err)
	}
}

func TestInvalidPipelineStoresNothing(t *testing.T) {
	h := newHarness(t)
	_, _, err := h.s.RunPipeline(h.ctx, job.PipelineSpec{Steps: []job.Step{pstep("a", "b"), pstep("b", "a")}})
	var fe *job.FieldError
	if !errors.As(err, &fe) || fe.Field != "steps" {
		t.Fatalf("cycle: %v, want a FieldError on steps", err)
	}
	if ps, _ := h.store.Pipelines(h.ctx); len(ps) != 0 || len(mustPipelines(t, h)) != 0 {
		t.Fatalf("%d pipelines stored after a refused one", len(ps))
	}
	if jobs, _, _ := h.store.List(h.ctx, job.Filter{}); len(jobs) != 0 {
		t.Fatalf("%d jobs stored after a refused pipeline", len(jobs))
	}
}

func TestArrayLimitsRunningJobs(t *testing.T) {
	s := newSim(t, 4, 8) // 32 slots
	a, err := s.h.s.SubmitArray(s.h.ctx, job.Spec{Command: []string{"true"}}, job.ArraySpec{First: 0, Last: 99, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if j := s.h.get(job.TaskID(a.ID, 42)); a.Len() != 100 || j.Spec.Env["HODEI_ARRAY_INDEX"] != "42" || j.Spec.Array != a.ID {
		t.Fatalf("%d tasks; task 42 env %v array %q", a.Len(), j.Spec.Env, j.Spec.Array)
	}
	maxHeld := int64(0)
	s.onStep = func() {
		held, _ := s.running()
		maxHeld = max(maxHeld, held[job.DefaultTenant].Slots)
	}
	for range 40 {
		s.step(time.Minute)
	}
	done := 0
	for p := range a.Len() {
		if s.h.get(job.TaskID(a.ID, p)).State == job.Completed {
			done++
		}
	}
	if maxHeld != 10 || done != 100 {
		t.Fatalf("at most %d running at once, %d completed; want 10 and 100", maxHeld, done)
	}
	cancelled, n, err := s.h.s.CancelArray(s.h.ctx, a.ID, "")
	if err != nil || len(cancelled) != 0 || n != 0 {
		t.Fatalf("cancel a finished array: %v %d %v", cancelled, n, err)
	}
	if _, _, err := s.h.s.CancelArray(s.h.ctx, "nope", ""); !errors.Is(err, job.ErrNotFound) {
		t.Fatalf("cancel an unknown array: %v", err)
	}
}

func mustPipelines(t *testing.T, h *harness) []PipelineStatus {
	t.Helper()
	ps, next, err := h.s.Pipelines(h.ctx, PipelineFilter{Limit: MaxPipelinePage})
	if err != nil || next != "" {
		t.Fatalf("pipelines: next %q, %v", next, err)
	}
	return ps
}

func TestRetentionKeepsWhatAPipelineStillNeeds(t *testing.T) {
	s := newSim(t, 1, 1) // one slot: a, then b, then c
	s.duration = func(j *job.Job) time.Duration {
		if j.Spec.Step == "b" {
			return time.Hour
		}
		return time.Second
	}
	p := runPipeline(t, s, job.PipelineSpec{Steps: []job.Step{pstep("a"), pstep("b"), pstep("c", "a", "b")}})
	sweep := func() []string {
		ids, err := s.h.store.DeleteFinished(s.h.ctx, s.h.now, 100, s.h.s.Retain(s.h.ctx, s.h.now))
		if err != nil {
			t.Fatal(err)
		}
		s.h.s.Forget(s.h.ctx, ids)
		return ids
	}
	for range 3 {
		s.step(time.Minute)
	}
	if a := jobsOfStep(s, p, "a")[0]; a.State != job.Completed {
		t.Fatalf("a is %s", a.State)
	}
	if ids := sweep(); len(ids) != 0 {
		t.Fatalf("retention deleted %v while c still waits for a", ids)
	}
	for range 10 {
		s.step(time.Hour)
	}
	if st, _ := s.h.s.Pipeline(s.h.ctx, p.ID); st.State != job.PipelineCompleted {
		t.Fatalf("pipeline %s, want COMPLETED", st.State)
	}
	if ids := sweep(); len(ids) != 3 {
		t.Fatalf("retention deleted %v, want the pipeline's three jobs together", ids)
	}
	if _, err := s.h.s.Pipeline(s.h.ctx, p.ID); !errors.Is(err, job.ErrNotFound) {
		t.Fatalf("pipeline after its jobs were deleted: %v, want NotFound", err)
	}
	if ps, _ := s.h.store.Pipelines(s.h.ctx); len(ps) != 0 {
		t.Fatalf("%d pipeline records left", len(ps))
	}
}

// TestDependencyReleaseRaces submits a dependent while its dependency
// completes, from two goroutines, many times: whichever publish comes
// second must see the other, so the dependent is always released.
func TestDependencyReleaseRaces(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Heartbeat, c.Lease = time.Hour, 1000*time.Hour })
	h.worker("w", job.MaxWorkerSlots, nil)
	const rounds = 200
	for i := range rounds {
		a := h.submit(job.Spec{})
		h.pass()
		h.disp.takeAssigns()
		h.start(a)
		done := make(chan *job.Job)
		go func() {
			j, err := h.s.Submit(h.ctx, job.Spec{Command: []string{"true"}, DependsOn: []string{a.ID}})
			if err != nil {
				t.Error(err)
			}
			done <- j
		}()
		if _, err := h.s.JobFinished(h.ctx, "w", scheduler.Finish{JobID: a.ID, Attempt: 1, Outcome: scheduler.Exited}); err != nil {
			t.Fatal(err)
		}
		b := <-done
		if b == nil {
			t.FailNow()
		}
		h.pass()
		as := h.disp.takeAssigns()
		if len(as) != 1 || as[0].job.ID != b.ID {
			t.Fatalf("round %d: assigned %v, want the dependent %s released", i, as, b.ID)
		}
		h.start(as[0].job)
		if _, err := h.finish(as[0].job, scheduler.Exited, 0); err != nil {
			t.Fatal(err)
		}
	}
}
