package cluster

import (
	"math"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

var fairWeights = map[string]float64{"t1": 1, "t2": 2, "t3": 7}

func weightShare(weights map[string]float64, tenant string) float64 {
	var sum float64
	for _, w := range weights {
		sum += w
	}
	return weights[tenant] / sum
}

func TestFairShareOfDispatchesTracksWeights(t *testing.T) {
	s := newSim(t, 10, 4) // 40 slots
	specs := map[string]job.Spec{}
	for name, w := range fairWeights {
		s.tenant(name, w)
		specs[name] = job.Spec{}
	}
	dispatched := map[string]float64{}
	s.onDispatch = func(j *job.Job) { dispatched[j.Spec.Tenant] += float64(j.Spec.Resources.Slots) }
	const total = 10_000
	for s.dispatches < total {
		s.topUp(60, specs)
		s.step(time.Minute)
	}
	var sum float64
	for _, n := range dispatched {
		sum += n
	}
	for name := range fairWeights {
		got, want := dispatched[name]/sum, weightShare(fairWeights, name)
		t.Logf("%s: %.0f slots dispatched, share %.4f, weight share %.4f", name, dispatched[name], got, want)
		if math.Abs(got-want) > 0.01*want {
			t.Errorf("%s dispatched share %.4f, want %.4f ±1%%", name, got, want)
		}
	}
}

func TestFairShareOfRunningSlotsWithLongJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("long simulation")
	}
	s := newSim(t, 25, 4) // 100 slots
	s.duration = func(j *job.Job) time.Duration {
		if j.Spec.Tenant == "t1" {
			return 100 * time.Second // ten times longer
		}
		return 10 * time.Second
	}
	specs := map[string]job.Spec{}
	for name, w := range fairWeights {
		s.tenant(name, w)
		specs[name] = job.Spec{}
	}
	warmup := s.h.now.Add(10 * time.Minute)
	end := warmup.Add(4 * time.Hour)
	for s.h.now.Before(end) {
		if !s.h.now.Before(warmup) && !s.slotSince.After(s.h.now) && s.slotSince.Before(warmup) {
			s.resetAccounts()
		}
		s.topUp(150, specs)
		s.step(time.Minute)
	}
	var sum float64
	for _, v := range s.slotTime {
		sum += v
	}
	for name := range fairWeights {
		got, want := s.slotTime[name]/sum, weightShare(fairWeights, name)
		t.Logf("%s: time-averaged running share %.4f, weight share %.4f", name, got, want)
		if math.Abs(got-want) > 0.05*want {
			t.Errorf("%s time-averaged running share %.4f, want %.4f ±5%%", name, got, want)
		}
	}
}

func TestIdleTenantReentersWithoutBankedCredit(t *testing.T) {
	for _, stuck := range []bool{false, true} {
		name := "Plain"
		if stuck {
			// A tenant whose job no worker can take waits all along; it
			// must not hold the virtual time back.
			name = "WithAnUnservableTenant"
		}
		t.Run(name, func(t *testing.T) { idleTenantReenters(t, stuck) })
	}
}

func idleTenantReenters(t *testing.T, stuck bool) {
	const slots = 40
	s := newSim(t, 10, 4)
	weights := map[string]float64{"a": 1, "b": 1, "late": 2}
	for name, w := range weights {
		s.tenant(name, w)
	}
	if stuck {
		s.tenant("x", 1)
		s.submit("x", 1, job.Spec{Selector: map[string]string{"gpu": "yes"}})
	}
	busy := map[string]job.Spec{"a": {}, "b": {}}
	idleUntil := s.h.now.Add(time.Hour)
	for s.h.now.Before(idleUntil) {
		s.topUp(60, busy)
		s.step(time.Minute)
	}

	// The late tenant floods the cluster after an hour of idleness.
	all := map[string]job.Spec{"a": {}, "b": {}, "late": {}}
	share := weightShare(weights, "late")
	var window []string // tenants of the dispatches since it arrived
	s.onDispatch = func(j *job.Job) { window = append(window, j.Spec.Tenant) }
	reached := -1
	s.onStep = func() { // after the pass's starts, before the next exits
		held, _ := s.running()
		if reached < 0 && float64(held["late"].Slots) >= math.Floor(share*slots) {
			reached = len(window)
		}
	}
	for len(window) < 4*slots {
		s.topUp(60, all)
		s.step(time.Minute)
	}
	late := 0
	for i, tenant := range window {
		if tenant == "late" {
			late++
		}
		if limit := share*float64(i+1) + 1; float64(late) > limit {
			t.Fatalf("after %d dispatches the late tenant had %d, more than its share plus one job (%.1f)", i+1, late, limit)
		}
	}
	t.Logf("late tenant reached its share of %.0f slots after %d dispatches", share*slots, reached)
	if reached < 0 || reached > 2*slots {
		t.Fatalf("late tenant reached its share after %d dispatches, want within %d", reached, 2*slots)
	}
}

func TestAgingBoundsTheWaitOfALowPriorityJob(t *testing.T) {
	const aging = 10 * time.Minute
	s := newSim(t, 1, 2, func(c *Config) { c.Aging = aging })
	s.duration = func(*job.Job) time.Duration { return 10 * time.Second }
	// A stream of priority-1000 jobs, twice as fast as the cluster can run
	// them, so the queue only grows.
	urgent := job.Spec{Priority: job.MaxPriority}
	s.submit(job.DefaultTenant, 10, urgent)
	low := s.submit(job.DefaultTenant, 1, job.Spec{Priority: 0})[0]
	var started *job.Job
	var before []*job.Job // urgent jobs started before the low one
	s.onDispatch = func(j *job.Job) {
		if j.ID == low.ID {
			started = j
		} else if started == nil {
			before = append(before, j)
		}
	}
	for started == nil && s.h.now.Before(low.CreatedAt.Add(3*aging)) {
		s.submit(job.DefaultTenant, 2, urgent)
		s.step(5 * time.Second)
	}
	if started == nil {
		t.Fatalf("a priority-0 job did not start within %s under a stream of priority-1000 jobs", 3*aging)
	}
	bound := low.CreatedAt.Add(aging) // aging × (1000 − 0)/1000
	for _, j := range before {
		if j.CreatedAt.After(bound) {
			t.Fatalf("job %s submitted %s after the low one started before it; the bound is %s",
				j.ID, j.CreatedAt.Sub(low.CreatedAt), aging)
		}
	}
	t.Logf("priority-0 job waited %s behind %d priority-1000 jobs (bound: those submitted within %s)",
		started.ScheduledAt.Sub(low.CreatedAt), len(before), aging)
}

func TestDeadlineRaisesPriorityAndCountsMisses(t *testing.T) {
	obs := &countingObserver{}
	s := newSim(t, 1, 1, func(c *Config) { c.Observer = obs })
	s.submit(job.DefaultTenant, 1, job.Spec{Priority: 900})
	soon := s.submit(job.DefaultTenant, 1, job.Spec{Priority: 100, Deadline: s.h.now.Add(time.Second)})[0]
	late := s.submit(job.DefaultTenant, 1, job.Spec{Priority: 100, Deadline: s.h.now.Add(2 * time.Second)})[0]
	s.h.advance(time.Second)
	if got := s.h.s.EffectivePriority(s.h.get(soon.ID)); got < 1100 {
		t.Fatalf("effective priority at the deadline = %.1f, want ≥ 100 + 1000", got)
	}
	s.step(time.Second) // soon (at its deadline) outranks the priority-900 job
	if j := s.h.get(soon.ID); j.State != job.Running || j.DeadlineMissed {
		t.Fatalf("job due now: %s, missed %v; want it running first, on time", j.State, j.DeadlineMissed)
	}
	for range 3 {
		s.step(10 * time.Second)
	}
	j := s.h.get(late.ID)
	if !j.DeadlineMissed || j.Reason == "" || obs.slaMissed[job.DefaultTenant] != 1 {
		t.Fatalf("job started after its deadline: missed %v, reason %q, metric %d; want an SLA miss",
			j.DeadlineMissed, j.Reason, obs.slaMissed[job.DefaultTenant])
	}
	t.Logf("reason: %s", j.Reason)
}

// countingObserver counts the observer events the tests assert on.
type countingObserver struct {
	slaMissed map[string]int
	refused   map[string]int
	preempted map[string]int
	lost      int
}

func (o *countingObserver) Submitted(string, int)            {}
func (o *countingObserver) Dispatched(string, time.Duration) {}
func (o *countingObserver) Finished(string, job.State, int)  {}
func (o *countingObserver) SLAMissed(tenant string)          { inc(&o.slaMissed, tenant) }
func (o *countingObserver) Refused(tenant string)            { inc(&o.refused, tenant) }
func (o *countingObserver) Preempted(tenant string)          { inc(&o.preempted, tenant) }
func (o *countingObserver) WorkersLost(n int)                { o.lost += n }
func inc(m *map[string]int, k string) {
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[k]++
}

func TestChargesAreCorrectedByTheTimeJobsRan(t *testing.T) {
	f := newFairState()
	weight := func(string) float64 { return 2 }
	f.waiting(map[string]bool{"a": true})
	j := pendingJob(1, "a", 2)
	j.ScheduledAt = t0
	f.book([]scheduler.Assignment{{Job: scheduler.WaitingOf(j, t0, 0), Charge: 20}}, weight) // 2 slots × 10 s expected
	if got := f.ledger.Tag("a"); got != 10 {
		t.Fatalf("tag after booking = %g, want 20/2", got)
	}
	f.accrue([]*job.Job{j}, t0.Add(30*time.Second), weight) // 60 slot-seconds held so far
	if got := f.ledger.Tag("a"); got != 30 {
		t.Fatalf("tag while running past the estimate = %g, want 60/2", got)
	}
	f.released(j, t0.Add(40*time.Second), 2, true) // 80 slot-seconds in all
	if got := f.ledger.Tag("a"); got != 40 {
		t.Fatalf("tag after the job ended = %g, want 80/2", got)
	}
	if got := f.estimate["a"]; got != 40*time.Second {
		t.Fatalf("estimate = %s, want the first run's 40s", got)
	}

	short := pendingJob(2, "a", 1)
	short.ScheduledAt = t0
	f.book([]scheduler.Assignment{{Job: scheduler.WaitingOf(short, t0, 0), Charge: 40}}, weight)
	f.released(short, t0.Add(time.Second), 2, true) // refunded down to 1 slot-second
	if got := f.ledger.Tag("a"); got != 40.5 {
		t.Fatalf("tag after a short job = %g, want 40 + 1/2", got)
	}
	if len(f.charges) != 0 {
		t.Fatalf("charges left: %v", f.charges)
	}
}

func TestFairShareFollowsAChangeInJobLength(t *testing.T) {
	if testing.Short() {
		t.Skip("long simulation")
	}
	// t1's jobs grow ten times longer mid-run: the charges made on the old
	// estimate are corrected as the jobs run, so its slot-time stays at its
	// weight.
	s := newSim(t, 10, 4)
	long := false
	s.duration = func(j *job.Job) time.Duration {
		if long && j.Spec.Tenant == "t1" {
			return 100 * time.Second
		}
		return 10 * time.Second
	}
	weights := map[string]float64{"t1": 1, "t2": 1}
	specs := map[string]job.Spec{"t1": {}, "t2": {}}
	for name, w := range weights {
		s.tenant(name, w)
	}
	for s.h.now.Before(t0.Add(30 * time.Minute)) {
		s.topUp(60, specs)
		s.step(time.Minute)
	}
	long = true
	s.resetAccounts()
	for s.h.now.Before(t0.Add(90 * time.Minute)) {
		s.topUp(60, specs)
		s.step(time.Minute)
	}
	got := s.slotTime["t1"] / (s.slotTime["t1"] + s.slotTime["t2"])
	t.Logf("t1 held %.4f of the slot-time after its jobs grew tenfold", got)
	if math.Abs(got-0.5) > 0.05*0.5 {
		t.Fatalf("t1 held %.4f of the slot-time, want 0.5 ±5%%", got)
	}
}
