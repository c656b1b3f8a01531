package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/quota"
	"github.com/hodei-jobs/hodei/scheduler"
)

// TenantStatus is a tenant with its live figures.
type TenantStatus struct {
	Tenant      *job.Tenant
	Queued      int           // non-terminal jobs: what MaxQueued caps
	PendingJobs int           // of which Pending (unmaterialized array tasks included)
	Scheduled   int           // of which Scheduled
	RunningJobs int           // of which Running
	Pending     job.Resources // asked for by its Pending jobs
	Running     job.Resources // held by its Scheduled and Running jobs
	// Share is its fraction of the slots in use; FairShare its weight over
	// the weights of the tenants with work (pending or running).
	Share     float64
	FairShare float64
	Burst     quota.Burst // as of the call
	// OldestReady is when its longest-waiting ready job (dependencies
	// met, backoff over; an array's tasks not yet run count as one)
	// became eligible, to the second below: its submit, the end of its
	// backoff, or when its dependencies let it run. Zero when none waits.
	OldestReady time.Time
}

// SetTenant creates tenant name or changes it: change (nil: none) edits a
// copy of the stored record, or of a new one with the defaults, which is
// then validated and stored. Errors: a *job.FieldError naming the bad
// field; store errors.
func (s *Cluster) SetTenant(ctx context.Context, name string, change func(*job.Tenant)) (*job.Tenant, error) {
	s.tenantMu.Lock()
	defer s.tenantMu.Unlock()
	now := s.cfg.Now()
	var t job.Tenant
	if cur, ok := s.tenants.Load(name); ok {
		t = *cur
	} else {
		t = job.Tenant{Name: name, CreatedAt: now}
	}
	if change != nil {
		change(&t)
	}
	t.Name, t.UpdatedAt = name, now
	t.Normalize()
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if err := s.cfg.Store.PutTenant(ctx, &t); err != nil {
		return nil, err
	}
	s.tenants.Store(name, &t)
	s.poke() // a new weight or limit may let work start
	return &t, nil
}

// DeleteTenant deletes a tenant. Errors: job.ErrNotFound; job.ErrConflict
// for the default tenant or while the tenant has jobs that are not finished.
func (s *Cluster) DeleteTenant(ctx context.Context, name string) error {
	s.tenantMu.Lock()
	defer s.tenantMu.Unlock()
	if err := s.cfg.Store.DeleteTenant(ctx, name); err != nil {
		return err
	}
	s.tenants.Delete(name)
	s.fair.forget(name)
	return nil
}

// ensureTenant checks that a submit's tenant exists, creating it with the
// defaults when the server runs with AutoTenants.
func (s *Cluster) ensureTenant(ctx context.Context, name string) error {
	if _, ok := s.tenants.Load(name); ok {
		return nil
	}
	if !s.cfg.AutoTenants {
		return job.UnknownTenant(name)
	}
	_, err := s.SetTenant(ctx, name, nil)
	return err
}

// HasTenant reports whether the tenant exists. It reads memory only, and
// costs the same however many jobs there are.
func (s *Cluster) HasTenant(name string) bool {
	_, ok := s.tenants.Load(name)
	return ok
}

// RunAs returns the user the tenant's jobs run as (job.Tenant.RunAs): ""
// when it names none or the tenant does not exist. It reads memory only,
// so that building every assignment may call it. Safe for concurrent use.
func (s *Cluster) RunAs(tenant string) string {
	if t, ok := s.tenants.Load(tenant); ok {
		return t.RunAs
	}
	return ""
}

// Tenant returns one tenant with its live figures, or job.ErrNotFound.
func (s *Cluster) Tenant(name string) (TenantStatus, error) {
	for _, st := range s.Tenants() {
		if st.Tenant.Name == name {
			return st, nil
		}
	}
	return TenantStatus{}, fmt.Errorf("tenant %q: %w", name, job.ErrNotFound)
}

// Tenants returns every tenant with its live figures, in name order. The
// figures are counters kept on every change, so the call costs
// O(tenants), however many jobs there are.
func (s *Cluster) Tenants() []TenantStatus {
	now := s.cfg.Now()
	// Sorted as records, which is cheaper than sorting the statuses.
	ts := make([]*job.Tenant, 0, s.tenants.Size())
	s.tenants.Range(func(_ string, t *job.Tenant) bool {
		ts = append(ts, t)
		return true
	})
	slices.SortFunc(ts, func(a, b *job.Tenant) int { return strings.Compare(a.Name, b.Name) })
	out := make([]TenantStatus, len(ts))
	for i, t := range ts {
		// Passes move burst states on; bring this one to now meanwhile.
		b, _ := quota.LimitsOf(t).At(s.fair.burst(t.Name), now)
		out[i] = TenantStatus{Tenant: t, Burst: b}
	}
	s.mu.RLock()
	for i := range out {
		st := &out[i]
		c := s.counts[st.Tenant.Name]
		if c == nil {
			continue
		}
		st.PendingJobs = c.Pending
		st.Queued = c.Pending + c.Scheduled + c.Running
		st.Pending = c.Asked
		st.Running = c.Held
		st.Scheduled, st.RunningJobs = c.Scheduled, c.Running
		if sec, ok := c.ready.oldest(); ok {
			st.OldestReady = time.Unix(sec, 0)
		}
	}
	s.mu.RUnlock()

	var used int64
	var weights float64
	for i := range out {
		used += out[i].Running.Slots
		if out[i].Queued > 0 {
			weights += out[i].Tenant.Weight
		}
	}
	for i := range out {
		st := &out[i]
		if used > 0 {
			st.Share = float64(st.Running.Slots) / float64(used)
		}
		if st.Queued > 0 {
			st.FairShare = st.Tenant.Weight / weights
		}
	}
	return out
}

// tenantView is the decision's view of a tenant, without its running
// resources (the pass adds them up).
func (s *Cluster) tenantView(name string) scheduler.TenantView {
	tv := scheduler.TenantView{Weight: 1}
	if t, ok := s.tenants.Load(name); ok {
		tv.Weight, tv.Limits, tv.Preemptible = t.Weight, quota.LimitsOf(t), t.Preemptible
	}
	s.fair.view(name, &tv)
	return tv
}

func (s *Cluster) weight(name string) float64 {
	if t, ok := s.tenants.Load(name); ok {
		return t.Weight
	}
	return 1
}

func (s *Cluster) limits(name string) quota.Limits {
	if t, ok := s.tenants.Load(name); ok {
		return quota.LimitsOf(t)
	}
	return quota.Limits{}
}

// refused reports a submit the store refused for a quota.
func (s *Cluster) refused(tenant string, err error) {
	if s.cfg.Observer != nil && errors.Is(err, job.ErrExhausted) {
		s.cfg.Observer.Refused(tenant)
	}
}
