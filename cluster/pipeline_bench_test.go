package cluster

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// randomDAG is a pipeline of n steps, each needing up to maxNeeds steps
// before it, chosen at random with a fixed seed (0: independent steps).
func randomDAG(n, maxNeeds int) job.PipelineSpec {
	rng := rand.New(rand.NewPCG(7, 11))
	p := job.PipelineSpec{Name: "dag", Tenant: job.DefaultTenant, Defaults: job.Spec{Priority: -1}}
	for i := range n {
		st := job.Step{Name: fmt.Sprintf("s%05d", i), Spec: job.Spec{Command: []string{"true"}, Priority: -1}}
		if i > 0 {
			for range rng.IntN(maxNeeds + 1) {
				need := fmt.Sprintf("s%05d", rng.IntN(i))
				if !slices.Contains(st.Needs, need) {
					st.Needs = append(st.Needs, need)
				}
			}
		}
		p.Steps = append(p.Steps, st)
	}
	return p
}

// chain is a pipeline of n steps, each needing the one before: the
// deepest DAG, one pass per job.
func chain(n int) job.PipelineSpec {
	p := randomDAG(n, 0)
	for i := 1; i < n; i++ {
		p.Steps[i].Needs = []string{p.Steps[i-1].Name}
	}
	return p
}

// BenchmarkPipelineValidate checks and expands a 10,000-step random DAG.
func BenchmarkPipelineValidate(b *testing.B) {
	p := randomDAG(10_000, 3)
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Validate(job.PipelineLimits{}); err != nil {
			b.Fatal(err)
		}
		p.Expand()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10_000, "ns/step")
}

// runToCompletion drives every pending job to COMPLETED on one big worker:
// pass, start and finish what was assigned, until nothing is left. It
// returns the passes it took.
func runToCompletion(tb testing.TB, h *harness, n int) int {
	passes, done := 0, 0
	for done < n {
		h.pass()
		passes++
		as := h.disp.takeAssigns()
		if len(as) == 0 {
			tb.Fatalf("pass %d assigned nothing with %d of %d done", passes, done, n)
		}
		for _, a := range as {
			h.start(a.job)
			if _, err := h.finish(a.job, scheduler.Exited, 0); err != nil {
				tb.Fatal(err)
			}
		}
		done += len(as)
	}
	return passes
}

// BenchmarkDependencyRelease runs 10,000 jobs to completion, as a random
// DAG (up to three needs a step) and as a pipeline of independent steps,
// in the same run: the difference per job is what releasing dependencies
// costs. The in-memory store keeps the disk out of it.
func BenchmarkDependencyRelease(b *testing.B) {
	const n = 10_000
	for _, c := range []struct {
		name   string
		submit func(*harness)
	}{
		{"jobs=10000/dag", func(h *harness) {
			if _, _, err := h.s.RunPipeline(h.ctx, randomDAG(n, 3)); err != nil {
				b.Fatal(err)
			}
		}},
		{"jobs=10000/chain", func(h *harness) {
			if _, _, err := h.s.RunPipeline(h.ctx, chain(n)); err != nil {
				b.Fatal(err)
			}
		}},
		{"jobs=10000/independent", func(h *harness) {
			if _, _, err := h.s.RunPipeline(h.ctx, randomDAG(n, 0)); err != nil {
				b.Fatal(err)
			}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var run time.Duration
			passes := 0
			for b.Loop() {
				b.StopTimer()
				h := newHarness(b, func(cfg *Config) { cfg.Heartbeat, cfg.Lease = time.Hour, 1000*time.Hour })
				h.worker("w", job.MaxWorkerSlots, nil)
				c.submit(h)
				b.StartTimer()
				start := time.Now()
				passes = runToCompletion(b, h, n)
				run += time.Since(start)
			}
			b.ReportMetric(float64(run.Nanoseconds())/float64(b.N)/n, "ns/job")
			b.ReportMetric(float64(passes), "passes")
		})
	}
}

// BenchmarkDependencyReleaseOverhead runs both in the same loop and reports
// the extra time per job of the DAG over the independent steps.
func BenchmarkDependencyReleaseOverhead(b *testing.B) {
	const n = 10_000
	var dag, flat time.Duration
	for b.Loop() {
		for _, maxNeeds := range []int{3, 0} {
			b.StopTimer()
			h := newHarness(b, func(cfg *Config) { cfg.Heartbeat, cfg.Lease = time.Hour, 1000*time.Hour })
			h.worker("w", job.MaxWorkerSlots, nil)
			if _, _, err := h.s.RunPipeline(h.ctx, randomDAG(n, maxNeeds)); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			runToCompletion(b, h, n)
			if maxNeeds > 0 {
				dag += time.Since(start)
			} else {
				flat += time.Since(start)
			}
		}
	}
	b.ReportMetric(float64((dag-flat).Nanoseconds())/float64(b.N)/n, "overhead-ns/job")
	b.ReportMetric(float64(dag)/float64(flat), "dag/independent")
}
