package cluster

import (
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// why returns what Cluster.Why says of job id now, as text.
func (h *harness) why(id string) scheduler.Why {
	h.t.Helper()
	return h.s.Why(h.get(id))
}

func (h *harness) wantWhy(id string, kind scheduler.WhyKind, text string) {
	h.t.Helper()
	if got := h.why(id); got.Kind != kind || got.String() != text {
		h.t.Fatalf("job %s waits for %s %q, want %s %q", id, got.Kind, got, kind, text)
	}
}

// TestWhy is one unplaceable (or waiting) job per reason, each after a
// pass that left it pending: the reason names the constraint and the
// counts.
func TestWhy(t *testing.T) {
	zone := func(z string) map[string]string { return map[string]string{"zone": z} }
	threeWorkers := func(h *harness) {
		h.worker("w1", 2, zone("a"))
		h.worker("w2", 2, zone("b"))
		h.worker("w3", 1, zone("a"))
	}
	for _, tt := range []struct {
		name  string
		setup func(h *harness) string // returns the job to ask about
		kind  scheduler.WhyKind
		text  string
	}{
		{"NoWorkers", func(h *harness) string {
			return h.submit(job.Spec{}).ID
		}, scheduler.WhyNoWorkers, "no worker has registered; start one with 'hodei agent'"},
		{"Label", func(h *harness) string {
			threeWorkers(h)
			return h.submit(job.Spec{Selector: zone("c")}).ID
		}, scheduler.WhyLabels, "no ready worker has label zone=c (0 of 3)"},
		{"Slots", func(h *harness) string {
			threeWorkers(h)
			return h.submit(job.Spec{Resources: job.Resources{Slots: 5}}).ID
		}, scheduler.WhySlots, "needs 5 slots; the largest worker has 2"},
		{"Memory", func(h *harness) string {
			threeWorkers(h)
			return h.submit(job.Spec{Resources: job.Resources{MemoryMiB: 999999}}).ID
		}, scheduler.WhyMemory, "needs 999,999 MiB; the largest worker has 2,048 MiB"},
		{"CPU", func(h *harness) string {
			threeWorkers(h)
			return h.submit(job.Spec{Resources: job.Resources{CPUMillis: 64000}}).ID
		}, scheduler.WhyCPU, "needs 64,000 CPU millis; the largest worker has 2,000 CPU millis"},
		{"Draining", func(h *harness) string {
			threeWorkers(h)
			if _, err := h.s.Drain(h.ctx, "w2"); err != nil {
				h.t.Fatal(err)
			}
			return h.submit(job.Spec{Selector: zone("b")}).ID
		}, scheduler.WhyDraining, "all matching workers draining (1 of 3 workers match)"},
		{"Down", func(h *harness) string {
			threeWorkers(h)
			h.s.WorkerGone("w2")
			return h.submit(job.Spec{Selector: zone("b")}).ID
		}, scheduler.WhyDown, "all matching workers down or disconnected (1 of 3 workers match)"},
		{"TenantLimit", func(h *harness) string {
			if _, err := h.s.SetTenant(h.ctx, "prod", func(tn *job.Tenant) { tn.MaxRunning = job.Resources{Slots: 8} }); err != nil {
				h.t.Fatal(err)
			}
			h.worker("big", 16, nil)
			for range 8 {
				h.submit(job.Spec{Tenant: "prod"})
			}
			h.pass()
			return h.submit(job.Spec{Tenant: "prod"}).ID
		}, scheduler.WhyTenantLimit, "tenant prod at its max-running limit (8 of 8)"},
		{"Dependency", func(h *harness) string {
			h.worker("w1", 1, nil)
			dep := h.submit(job.Spec{})
			h.pass()
			h.start(dep)
			id := h.submit(job.Spec{DependsOn: []string{dep.ID}}).ID
			h.pass()
			h.wantWhy(id, scheduler.WhyDependency, "waiting for "+dep.ID+" (RUNNING)")
			return id
		}, scheduler.WhyDependency, ""},
		{"Backoff", func(h *harness) string {
			h.worker("w1", 1, nil)
			j := h.submit(job.Spec{Retries: 1, Backoff: 3 * time.Second})
			h.pass()
			h.start(j)
			if _, err := h.finish(j, scheduler.Exited, 1); err != nil {
				h.t.Fatal(err)
			}
			h.advance(time.Second)
			return j.ID
		}, scheduler.WhyBackoff, "attempt 2 waits out its retry backoff (2s left)"},
		{"ArrayLimit", func(h *harness) string {
			h.worker("w1", 4, nil)
			a, err := h.s.SubmitArray(h.ctx, job.Spec{Command: []string{"true"}}, job.ArraySpec{First: 0, Last: 4, Limit: 2})
			if err != nil {
				h.t.Fatal(err)
			}
			h.pass()
			h.wantWhy(job.TaskID(a.ID, 4), scheduler.WhyArrayLimit, "array "+a.ID+" at its limit (2 of 2 running)")
			return job.TaskID(a.ID, 2)
		}, scheduler.WhyArrayLimit, ""},
		{"Queued", func(h *harness) string {
			h.worker("w1", 1, nil)
			var last string
			for range 5 {
				last = h.submit(job.Spec{}).ID
			}
			h.pass()
			return last
		}, scheduler.WhyQueued, "3 ahead in tenant default"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.AutoTenants = true })
			id := tt.setup(h)
			h.pass()
			if st := h.get(id).State; st != job.Pending {
				t.Fatalf("job %s is %s", id, st)
			}
			if tt.text == "" { // checked by setup, where the id is known
				if got := h.why(id); got.Kind != tt.kind {
					t.Fatalf("job %s waits for %s %q, want %s", id, got.Kind, got, tt.kind)
				}
				return
			}
			h.wantWhy(id, tt.kind, tt.text)
		})
	}
}

// TestWhyChangesWhenAWorkerJoins: a job that needs a label no worker has
// says so; once a worker with the label joins, it is only queued, and the
// next pass dispatches it. The explanation is cached per shape, and the
// join alone invalidates it.
func TestWhyChangesWhenAWorkerJoins(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 1, map[string]string{"zone": "a"})
	j := h.submit(job.Spec{Selector: map[string]string{"zone": "c"}})
	h.pass()
	h.wantWhy(j.ID, scheduler.WhyLabels, "no ready worker has label zone=c (0 of 1)")
	h.wantWhy(j.ID, scheduler.WhyLabels, "no ready worker has label zone=c (0 of 1)") // from the cache
	h.worker("w2", 1, map[string]string{"zone": "c"})
	h.wantWhy(j.ID, scheduler.WhyQueued, "next in tenant default")
	h.pass()
	h.wantState(j.ID, job.Scheduled)
	if got := h.why(j.ID); got.Kind != scheduler.WhyNone {
		t.Fatalf("a scheduled job waits for %q", got)
	}

	// Drained, the worker with the label no longer counts, and a new job
	// of that shape says so; heartbeats change nothing.
	if _, err := h.s.Drain(h.ctx, "w2"); err != nil {
		t.Fatal(err)
	}
	k := h.submit(job.Spec{Selector: map[string]string{"zone": "c"}})
	gen := h.s.workers.generation()
	h.s.Heartbeat("w1", &Stats{CPUPercent: 50})
	if h.s.workers.generation() != gen {
		t.Fatal("a heartbeat moved the workers' generation")
	}
	h.wantWhy(k.ID, scheduler.WhyDraining, "all matching workers draining (1 of 2 workers match)")
}

// TestWhyPerShape checks that jobs of one shape are explained once per
// generation of the workers, however many there are.
func TestWhyPerShape(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 2, nil)
	var ids []string
	for i := range 100 {
		ids = append(ids, h.submit(job.Spec{Resources: job.Resources{Slots: int64(3 + i%2)}}).ID)
	}
	h.pass()
	for _, id := range ids {
		if got := h.why(id); got.Kind != scheduler.WhySlots {
			t.Fatalf("job %s: %q", id, got)
		}
	}
	h.s.reasons.mu.Lock()
	shapes := len(h.s.reasons.shapes)
	h.s.reasons.mu.Unlock()
	if shapes != 2 {
		t.Fatalf("%d shapes explained for 100 jobs of 2 shapes", shapes)
	}
}

// TestFitError checks submit's require-fit check: capacity and labels of
// every registered worker, drained or down ones included, whatever they
// run.
func TestFitError(t *testing.T) {
	h := newHarness(t)
	if err := h.s.FitError(job.Spec{}); err == nil || err.Error() != "require_fit: no worker has registered; start one with 'hodei agent' (--require-fit)" {
		t.Fatalf("no workers: %v", err)
	}
	h.worker("w1", 2, map[string]string{"zone": "a"})
	h.worker("w2", 4, nil)
	if _, err := h.s.Drain(h.ctx, "w2"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		spec job.Spec
		want string // "" for none
	}{
		{job.Spec{Resources: job.Resources{Slots: 4}}, ""},
		{job.Spec{Selector: map[string]string{"zone": "a"}, Resources: job.Resources{Slots: 2}}, ""},
		{job.Spec{Selector: map[string]string{"zone": "c"}}, "selector: no registered worker has label zone=c (0 of 2) (--require-fit)"},
		{job.Spec{Resources: job.Resources{Slots: 5}}, "resources.slots: needs 5 slots; the largest registered worker has 4 (--require-fit)"},
		{job.Spec{Resources: job.Resources{MemoryMiB: 999999}}, "resources.memory_mib: needs 999,999 MiB; the largest registered worker has 4,096 MiB (--require-fit)"},
		{job.Spec{Resources: job.Resources{CPUMillis: 64000}}, "resources.cpu_millis: needs 64,000 CPU millis; the largest registered worker has 4,000 CPU millis (--require-fit)"},
	} {
		err := h.s.FitError(tt.spec)
		if (err == nil) != (tt.want == "") || err != nil && err.Error() != tt.want {
			t.Errorf("FitError(%+v) = %v, want %q", tt.spec.Resources, err, tt.want)
		}
	}
}

// TestWhyAhead is finding 14 of attack 11 and part of finding 2 of trial
// 11: the count of jobs ahead leaves out those no ready worker could take
// (they hold nothing back), and stops at 1,000 ("1,000+"), arrays' tasks
// included.
func TestWhyAhead(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 1, nil)
	busy := h.submit(job.Spec{})
	h.pass()
	h.wantState(busy.ID, job.Scheduled)

	h.submitMany(pinned(6, true))
	first := h.submit(job.Spec{})
	second := h.submit(job.Spec{})
	// Before any pass has parked them, as after one.
	h.wantWhy(first.ID, scheduler.WhyQueued, "next in tenant default")
	h.wantWhy(second.ID, scheduler.WhyQueued, "1 ahead in tenant default")
	h.pass()
	h.wantWhy(second.ID, scheduler.WhyQueued, "1 ahead in tenant default")

	// 998 jobs more, then an array of a million tasks, all of which could
	// run on w1: at most 1,000 are counted.
	specs := make([]job.Spec, 998)
	for i := range specs {
		specs[i] = job.Spec{Command: []string{"true"}, Priority: job.DefaultPriority}
	}
	h.submitMany(specs)
	a, err := h.s.SubmitArray(h.ctx, job.Spec{Command: []string{"true"}, Priority: job.DefaultPriority}, job.ArraySpec{First: 0, Last: 999_999})
	if err != nil {
		t.Fatal(err)
	}
	last := h.submit(job.Spec{})
	h.wantWhy(last.ID, scheduler.WhyQueued, "1,000+ ahead in tenant default")
	h.wantWhy(job.TaskID(a.ID, 0), scheduler.WhyQueued, "1,000 ahead in tenant default")
	h.wantWhy(job.TaskID(a.ID, 5000), scheduler.WhyQueued, "1,000+ ahead in tenant default")
}

// TestWhyReserved is finding 2 of trial 11: behind a job that waits for
// two slots on a worker with one free, which the pass keeps for it, later
// jobs that would fit that free slot say what holds them back, and the
// job itself says what it waits for; nothing says merely queued.
func TestWhyReserved(t *testing.T) {
	h := newHarness(t)
	h.worker("dev", 2, nil)
	busy := h.submit(job.Spec{Resources: job.Resources{MemoryMiB: 1024}})
	h.pass()
	h.wantState(busy.ID, job.Scheduled)
	two := h.submit(job.Spec{Resources: job.Resources{Slots: 2}})
	one := h.submit(job.Spec{})
	big := h.submit(job.Spec{Resources: job.Resources{MemoryMiB: 1536}}) // more than dev has free
	h.pass()
	for _, j := range []*job.Job{two, one, big} {
		h.wantState(j.ID, job.Pending)
	}
	h.wantWhy(two.ID, scheduler.WhyReserved, "waits for 2 slots on dev; 1 free")
	h.wantWhy(one.ID, scheduler.WhyHeldBack, "behind "+two.ID+" (needs 2 slots on dev)")
	h.wantWhy(big.ID, scheduler.WhyQueued, "2 ahead in tenant default")

	// Once the running job ends, the reserved job starts, and the others
	// wait their turn.
	h.start(busy)
	if _, err := h.finish(busy, scheduler.Exited, 0); err != nil {
		t.Fatal(err)
	}
	h.pass()
	h.wantState(two.ID, job.Scheduled)
	h.wantWhy(one.ID, scheduler.WhyQueued, "next in tenant default")
}
