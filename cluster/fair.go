package cluster

import (
	"sync"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/quota"
	"github.com/hodei-jobs/hodei/scheduler"
	"github.com/hodei-jobs/hodei/wfq"
)

// fairState is what the scheduler remembers between passes for fair
// queuing and bursts. It lives in memory only: after a restart every
// tenant starts level with the others and out of any burst.
type fairState struct {
	mu       sync.Mutex
	ledger   wfq.Ledger               // guarded by mu
	estimate map[string]time.Duration // guarded by mu; tenant → how long its jobs hold their slots
	overall  time.Duration            // guarded by mu; the same over every tenant; 0: none yet
	charges  map[string]charge        // guarded by mu; active job id → its dispatch charge
	bursts   map[string]quota.Burst   // guarded by mu; tenants not Steady
	backlog  map[string]bool          // guarded by mu; tenants with work waiting at the last pass
}

type charge struct {
	tenant string
	cost   float64
}

func newFairState() *fairState {
	return &fairState{
		estimate: make(map[string]time.Duration),
		charges:  make(map[string]charge),
		bursts:   make(map[string]quota.Burst),
		backlog:  make(map[string]bool),
	}
}

// waiting records the tenants that have work waiting now; those that had
// none at the last pass enter at the virtual time.
func (f *fairState) waiting(tenants map[string]bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for t := range tenants {
		if !f.backlog[t] {
			f.ledger.Enter(t)
		}
	}
	f.backlog = tenants
}

// view fills the fair-queuing fields of a tenant's view.
func (f *fairState) view(tenant string, tv *scheduler.TenantView) {
	f.mu.Lock()
	defer f.mu.Unlock()
	tv.Tag = f.ledger.Tag(tenant)
	tv.Estimate = f.estimate[tenant]
	if tv.Estimate == 0 {
		tv.Estimate = f.overall // a newcomer is expected to be like the others
	}
	tv.Burst = f.bursts[tenant]
}

// book charges the assignments of a pass before they are committed, so
// that a job which ends right after its commit finds its charge to
// correct; revoke takes back the charge of one that did not commit.
func (f *fairState) book(as []scheduler.Assignment, weight func(string) float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range as {
		t := a.Job.Tenant
		f.ledger.Charge(t, a.Charge, weight(t))
		f.charges[a.Job.ID] = charge{t, a.Charge}
	}
}

func (f *fairState) revoke(id string, weight func(string) float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.charges[id]; ok {
		delete(f.charges, id)
		f.ledger.Correct(c.tenant, -c.cost, weight(c.tenant))
	}
}

// advance moves the virtual time up to the start tag of a dispatch.
func (f *fairState) advance(start float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ledger.Advance(start)
}

// started books a job that already held its slots when the scheduler
// recovered, as charged for the time it held them so far.
func (f *fairState) started(j *job.Job, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.charges[j.ID] = charge{j.Spec.Tenant, float64(j.Spec.Resources.Slots) * now.Sub(j.ScheduledAt).Seconds()}
}

// accrue charges running jobs that have held their slots longer than they
// were charged for the excess at once, so that a tenant with long jobs pays
// while they run, not only when they end.
func (f *fairState) accrue(active []*job.Job, now time.Time, weight func(string) float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, j := range active {
		c, ok := f.charges[j.ID]
		if !ok {
			continue
		}
		used := float64(j.Spec.Resources.Slots) * now.Sub(j.ScheduledAt).Seconds()
		if used > c.cost {
			f.ledger.Correct(c.tenant, used-c.cost, weight(c.tenant))
			f.charges[j.ID] = charge{c.tenant, used}
		}
	}
}

// released corrects the charge of an attempt that gave its slots back at
// end: its tenant pays for the slot-time it actually held, and the
// tenant's estimate moves a quarter of the way towards this attempt. A
// tenant deleted meanwhile (known false) keeps no account.
func (f *fairState) released(old *job.Job, end time.Time, weight float64, known bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.charges[old.ID]
	if !ok {
		return
	}
	delete(f.charges, old.ID)
	if !known {
		return
	}
	held := max(end.Sub(old.ScheduledAt), 0)
	f.ledger.Correct(c.tenant, float64(old.Spec.Resources.Slots)*held.Seconds()-c.cost, weight)
	f.estimate[c.tenant] = moveAverage(f.estimate[c.tenant], held)
	f.overall = moveAverage(f.overall, held)
}

// moveAverage moves est a quarter of the way towards sample; a zero est
// (none yet) becomes the sample.
func moveAverage(est, sample time.Duration) time.Duration {
	if est == 0 {
		return max(sample, time.Millisecond)
	}
	return est + (sample-est)/4
}

// setBursts records burst states; Steady ones are dropped.
func (f *fairState) setBursts(bs map[string]quota.Burst) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for t, b := range bs {
		if b.Phase == quota.Steady {
			delete(f.bursts, t)
		} else {
			f.bursts[t] = b
		}
	}
}

// burstsNow brings every burst state to now with limits and returns the
// tenants held at their limit: those whose burst just ended and those in a
// cooldown.
func (f *fairState) burstsNow(now time.Time, limits func(string) quota.Limits, next *wakeAt) (held []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for t, b := range f.bursts {
		nb, ended := limits(t).At(b, now)
		if ended || nb.Phase == quota.Cooling {
			held = append(held, t)
		}
		if nb.Phase == quota.Steady {
			delete(f.bursts, t)
			continue
		}
		f.bursts[t] = nb
		next.at(nb.Until)
	}
	return held
}

func (f *fairState) burst(tenant string) quota.Burst {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bursts[tenant]
}

func (f *fairState) forget(tenant string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ledger.Forget(tenant)
	delete(f.backlog, tenant)
	delete(f.estimate, tenant)
	delete(f.bursts, tenant)
}
