package cluster

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/quota"
	"github.com/hodei-jobs/hodei/scheduler"
)

// sim is a cluster of fake agents around a harness: every assignment starts
// at once and exits after the time the test's duration function gives it;
// every stop order ends its attempt at once. No real process runs and the
// clock only moves when the sim says so, so a run is deterministic.
type sim struct {
	h        *harness
	duration func(*job.Job) time.Duration
	ends     map[string]time.Time // running job id → when it exits
	// onDispatch sees every started attempt; onStep runs after every pass.
	onDispatch func(*job.Job)
	onStep     func()

	dispatches int
	stops      []CancelOrder      // the stop orders of the last step
	slotTime   map[string]float64 // tenant → slot-seconds held
	slotSince  time.Time          // when slotTime started counting
}

func newSim(t *testing.T, workers int, slots int64, configure ...func(*Config)) *sim {
	t.Helper()
	configure = append([]func(*Config){func(c *Config) {
		c.Heartbeat, c.Lease = time.Hour, 1000*time.Hour // the fake agents never go silent
	}}, configure...)
	s := &sim{
		h:        newHarness(t, configure...),
		ends:     make(map[string]time.Time),
		slotTime: make(map[string]float64),
		duration: func(*job.Job) time.Duration { return 10 * time.Second },
	}
	for i := range workers {
		s.h.worker(fmt.Sprintf("w%03d", i), slots, nil)
	}
	s.slotSince = s.h.now
	return s
}

// tenant creates a tenant with the given settings.
func (s *sim) tenant(name string, weight float64, change ...func(*job.Tenant)) {
	s.h.t.Helper()
	_, err := s.h.s.SetTenant(s.h.ctx, name, func(t *job.Tenant) {
		t.Weight = weight
		for _, c := range change {
			c(t)
		}
	})
	if err != nil {
		s.h.t.Fatal(err)
	}
}

// submit queues n jobs of tenant.
func (s *sim) submit(tenant string, n int, spec job.Spec) []*job.Job {
	s.h.t.Helper()
	spec.Tenant = tenant
	out := make([]*job.Job, n)
	for i := range out {
		out[i] = s.h.submit(spec)
	}
	return out
}

// step runs one pass, starts what it assigned, ends what it stopped, then
// moves the clock to the next exit (at most max ahead) and ends the jobs
// that exit then.
func (s *sim) step(max time.Duration) {
	s.h.t.Helper()
	s.h.pass()
	for _, a := range s.h.disp.takeAssigns() {
		s.h.start(a.job)
		s.ends[a.job.ID] = s.h.now.Add(s.duration(a.job))
		s.dispatches++
		if s.onDispatch != nil {
			s.onDispatch(s.h.get(a.job.ID))
		}
	}
	s.stops = s.h.disp.takeCancels()
	for _, c := range s.stops {
		if _, ok := s.ends[c.JobID]; !ok {
			continue
		}
		delete(s.ends, c.JobID)
		if _, err := s.h.s.JobFinished(s.h.ctx, s.h.get(c.JobID).Worker,
			scheduler.Finish{JobID: c.JobID, Attempt: c.Attempt, Outcome: scheduler.Killed, ExitCode: -1}); err != nil {
			s.h.t.Fatalf("stop %s: %v", c.JobID, err)
		}
	}
	if s.onStep != nil {
		s.onStep()
	}
	next := s.h.now.Add(max)
	for _, end := range s.ends {
		if end.Before(next) {
			next = end
		}
	}
	s.account(next.Sub(s.h.now))
	s.h.now = next
	var done []string
	for id, end := range s.ends {
		if !end.After(s.h.now) {
			done = append(done, id)
		}
	}
	slices.Sort(done)
	for _, id := range done {
		delete(s.ends, id)
		j := s.h.get(id)
		if _, err := s.h.s.JobFinished(s.h.ctx, j.Worker, scheduler.Finish{JobID: id, Attempt: j.Attempt, Outcome: scheduler.Exited}); err != nil {
			s.h.t.Fatalf("finish %s: %v", id, err)
		}
	}
}

// account adds d of the current running slots to each tenant's slot time.
func (s *sim) account(d time.Duration) {
	for id := range s.ends {
		j := s.h.get(id)
		s.slotTime[j.Spec.Tenant] += float64(j.Spec.Resources.Slots) * d.Seconds()
	}
}

// resetAccounts starts the slot-time measurement again from now.
func (s *sim) resetAccounts() {
	clear(s.slotTime)
	s.slotSince = s.h.now
}

// running returns the slots each tenant holds, and the slots of its jobs
// that are not being stopped.
func (s *sim) running() (held, kept map[string]job.Resources) {
	held, kept = map[string]job.Resources{}, map[string]job.Resources{}
	s.h.s.forActive(func(j *job.Job) {
		held[j.Spec.Tenant] = held[j.Spec.Tenant].Add(j.Spec.Resources)
		if j.CancelRequested == "" {
			kept[j.Spec.Tenant] = kept[j.Spec.Tenant].Add(j.Spec.Resources)
		}
	})
	return held, kept
}

// topUp keeps at least n pending jobs queued for each tenant.
func (s *sim) topUp(n int, specs map[string]job.Spec) {
	s.h.t.Helper()
	pending := map[string]int{}
	for _, t := range s.h.s.Tenants() {
		pending[t.Tenant.Name] = t.PendingJobs
	}
	for tenant, spec := range specs {
		if k := n - pending[tenant]; k > 0 {
			s.submit(tenant, k, spec)
		}
	}
}

// burstCheck returns an onStep check of the running-limit invariant of
// tenant: outside an active burst its kept jobs stay within its limit; held
// jobs never pass Burst × the limit.
func burstCheck(s *sim, tenant string) func() {
	return func() {
		s.h.t.Helper()
		t, _ := s.h.s.tenants.Load(tenant)
		l := quota.LimitsOf(t)
		held, kept := s.running()
		b := s.h.s.fair.burst(tenant)
		burstCap := l.Cap(quota.Burst{Phase: quota.Bursting})
		if l.Over(quota.Burst{Phase: quota.Bursting}, held[tenant]) {
			s.h.t.Fatalf("at %s %s holds %+v, past burst × limit %+v", s.h.now, tenant, held[tenant], burstCap)
		}
		if b.Phase != quota.Bursting && l.Over(quota.Burst{}, kept[tenant]) {
			s.h.t.Fatalf("at %s %s runs %+v outside a burst (%s), past its limit %+v", s.h.now, tenant, kept[tenant], b.Phase, l.MaxRunning)
		}
	}
}
