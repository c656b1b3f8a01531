package cluster

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/quota"
	"github.com/hodei-jobs/hodei/scheduler"
)

func TestBurstRunsOverTheLimitOnlyWhileItLasts(t *testing.T) {
	s := newSim(t, 4, 4) // 16 slots
	s.tenant("b", 1, func(tn *job.Tenant) {
		tn.MaxRunning = job.Resources{Slots: 4}
		tn.Burst, tn.BurstFor, tn.Cooldown = 2, time.Minute, 2*time.Minute
	})
	s.duration = func(*job.Job) time.Duration { return 5 * time.Minute }
	check := burstCheck(s, "b")
	var bursts, cools, maxHeld int64
	s.onStep = func() {
		check()
		held, _ := s.running()
		maxHeld = max(maxHeld, held["b"].Slots)
		switch s.h.s.fair.burst("b").Phase {
		case quota.Bursting:
			bursts++
		case quota.Cooling:
			cools++
		}
	}
	end := s.h.now.Add(30 * time.Minute)
	for s.h.now.Before(end) {
		s.topUp(20, map[string]job.Spec{"b": {}})
		s.step(10 * time.Second)
	}
	if maxHeld != 8 || bursts == 0 || cools == 0 {
		t.Fatalf("max held %d slots, %d steps bursting, %d cooling; want bursts up to 2 × 4 and cooldowns", maxHeld, bursts, cools)
	}
	var requeued int
	s.h.store.Scan(s.h.ctx, func(j *job.Job) error {
		if j.Preemptions > 0 {
			requeued++
			if j.Attempt-j.Preemptions != 1 {
				t.Errorf("job %s: attempt %d after %d preemptions used a retry", j.ID, j.Attempt, j.Preemptions)
			}
		}
		return nil
	})
	if requeued == 0 {
		t.Fatal("no job was stopped when a burst ended")
	}
}

func TestQueuedLimitUnderConcurrentSubmits(t *testing.T) {
	obs := &countingObserver{}
	var obsMu sync.Mutex
	h := newHarness(t, func(c *Config) { c.Observer = lockedObserver{obs, &obsMu} })
	const limit = 50
	if _, err := h.s.SetTenant(h.ctx, "q", func(tn *job.Tenant) { tn.MaxQueued = limit }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*limit)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < 2*limit; i += 32 {
				_, err := h.s.Submit(h.ctx, job.Spec{Tenant: "q", Command: []string{"true"}})
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	var ok, refused int
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, job.ErrExhausted):
			refused++
		default:
			t.Fatalf("submit: %v, want nil or ResourceExhausted", err)
		}
	}
	st, err := h.s.Tenant("q")
	if err != nil {
		t.Fatal(err)
	}
	if ok != limit || refused != limit || st.Queued != limit || obs.refused["q"] != limit {
		t.Fatalf("accepted %d, refused %d, queued %d, refusals counted %d; want %d each",
			ok, refused, st.Queued, obs.refused["q"], limit)
	}
}

func TestUnknownTenant(t *testing.T) {
	h := newHarness(t)
	_, err := h.s.Submit(h.ctx, job.Spec{Tenant: "ghost", Command: []string{"true"}})
	if !errors.Is(err, job.ErrNotFound) {
		t.Fatalf("submit to an unknown tenant: %v, want NotFound", err)
	}
	auto := newHarness(t, func(c *Config) { c.AutoTenants = true })
	j := auto.submit(job.Spec{Tenant: "ghost"})
	if st, err := auto.s.Tenant("ghost"); err != nil || st.Tenant.Weight != 1 || st.Queued != 1 {
		t.Fatalf("auto-created tenant = %+v, %v; want weight 1 holding job %s", st, err, j.ID)
	}
	if err := auto.s.DeleteTenant(auto.ctx, "ghost"); !errors.Is(err, job.ErrConflict) {
		t.Fatalf("delete a tenant with a pending job: %v, want Conflict", err)
	}
}

// lockedObserver serialises a countingObserver for concurrent submits.
type lockedObserver struct {
	o  *countingObserver
	mu *sync.Mutex
}

func (l lockedObserver) Submitted(string, int)            {}
func (l lockedObserver) Dispatched(string, time.Duration) {}
func (l lockedObserver) Finished(string, job.State, int)  {}
func (l lockedObserver) SLAMissed(t string)               { l.mu.Lock(); l.o.SLAMissed(t); l.mu.Unlock() }
func (l lockedObserver) Refused(t string)                 { l.mu.Lock(); l.o.Refused(t); l.mu.Unlock() }
func (l lockedObserver) Preempted(t string)               { l.mu.Lock(); l.o.Preempted(t); l.mu.Unlock() }
func (l lockedObserver) WorkersLost(n int)                { l.mu.Lock(); l.o.WorkersLost(n); l.mu.Unlock() }

func TestBurstEndStopsTheNewestFirst(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Heartbeat, c.Lease = time.Hour, 1000*time.Hour })
	h.worker("w", 8, nil)
	if _, err := h.s.SetTenant(h.ctx, "b", func(tn *job.Tenant) {
		tn.MaxRunning = job.Resources{Slots: 2}
		tn.Burst, tn.BurstFor, tn.Cooldown = 2, time.Minute, time.Minute
	}); err != nil {
		t.Fatal(err)
	}
	var jobs []*job.Job
	for i := range 4 {
		jobs = append(jobs, h.submit(job.Spec{Tenant: "b"}))
		h.pass()
		h.disp.takeAssigns()
		if i < 3 {
			h.start(jobs[i]) // the newest stays SCHEDULED
		}
		h.advance(time.Second)
	}
	if b := h.s.fair.burst("b"); b.Phase != quota.Bursting {
		t.Fatalf("burst state %v after running 4 with a limit of 2", b.Phase)
	}
	h.advance(time.Minute)
	h.pass()
	h.wantState(jobs[0].ID, job.Running)
	h.wantState(jobs[1].ID, job.Running)
	if j := h.get(jobs[2].ID); j.Stop != job.StopRequeue || j.CancelRequested == "" {
		t.Fatalf("second newest job: stop %s %q; want a stop order that requeues it", j.Stop, j.CancelRequested)
	}
	if j := h.wantState(jobs[3].ID, job.Pending); j.Attempt != 2 || j.Preemptions != 1 {
		t.Fatalf("newest job, not yet started: attempt %d, preemptions %d; want back in the queue on attempt 2", j.Attempt, j.Preemptions)
	}
	if c := h.disp.takeCancels(); len(c) != 2 {
		t.Fatalf("%d stop orders, want 2 (one for the running job, one for the start under way)", len(c))
	}
}

func TestSLAMissIsAFirstStartAfterTheDeadline(t *testing.T) {
	obs := &countingObserver{}
	s := newSim(t, 1, 1, func(c *Config) { c.Observer = obs })
	j := s.submit(job.DefaultTenant, 1, job.Spec{Deadline: s.h.now.Add(time.Minute), Retries: 1, Backoff: time.Minute})[0]
	s.h.pass()
	a := s.h.disp.takeAssigns()
	s.h.start(a[0].job)
	s.h.advance(2 * time.Minute)
	if _, err := s.h.finish(j, scheduler.Exited, 1); err != nil { // fails after its deadline
		t.Fatal(err)
	}
	s.h.advance(2 * time.Minute)
	s.h.pass()
	if got := s.h.get(j.ID); got.State != job.Scheduled || got.DeadlineMissed || obs.slaMissed[job.DefaultTenant] != 0 {
		t.Fatalf("retry after the deadline: %s, missed %v, metric %d; want scheduled and no SLA miss (it started in time)",
			got.State, got.DeadlineMissed, obs.slaMissed[job.DefaultTenant])
	}
	if _, err := s.h.s.Submit(s.h.ctx, job.Spec{Command: []string{"true"}, Deadline: s.h.now.Add(-time.Second)}); !errors.Is(err, job.ErrInvalid) {
		t.Fatalf("submit with a deadline in the past: %v, want InvalidArgument", err)
	}
}
