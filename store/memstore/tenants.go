package memstore

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/record"
)

// PutTenant stores (creates or replaces) a tenant record, keyed by its name,
// as given. A record that fails Tenant.Validate is refused with its
// *job.FieldError.
func (s *Store) PutTenant(ctx context.Context, t *job.Tenant) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t == nil {
		return job.Invalid("tenant", "must not be nil")
	}
	if err := t.Validate(); err != nil {
		return err
	}
	enc, err := record.MarshalTenant(t)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	s.tenants[t.Name] = enc
	return nil
}

// DeleteTenant deletes a tenant record; see scheduler.Store. The error
// messages are the bbolt store's.
func (s *Store) DeleteTenant(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if name == job.DefaultTenant {
		return job.ErrDefaultTenant
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	if _, ok := s.tenants[name]; !ok {
		return fmt.Errorf("tenant %q: %w", name, job.ErrNotFound)
	}
	if n := s.queued[name]; n > 0 {
		return job.TenantBusy(name, n)
	}
	delete(s.tenants, name)
	return nil
}

// Tenants returns every stored tenant in name order.
func (s *Store) Tenants(ctx context.Context) ([]*job.Tenant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*job.Tenant
	for _, name := range slices.Sorted(maps.Keys(s.tenants)) {
		t, err := record.UnmarshalTenant(name, s.tenants[name])
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// admit checks the new jobs against their tenants (job.Admit) and returns
// the number of new jobs by tenant. s.mu must be held.
func (s *Store) admit(jobs []*job.Job) (map[string]int, error) {
	return job.Admit(jobs, s.lookupTenant)
}

// lookupTenant returns a tenant's record (nil when it does not exist) and
// its count of non-terminal jobs, for admission. s.mu must be held.
func (s *Store) lookupTenant(name string) (*job.Tenant, int, error) {
	enc, ok := s.tenants[name]
	if !ok {
		return nil, 0, nil
	}
	t, err := record.UnmarshalTenant(name, enc)
	if err != nil {
		return nil, 0, err
	}
	return t, s.queued[name], nil
}

// addQueued adds delta to the tenant's count of non-terminal jobs. s.mu
// must be held.
func (s *Store) addQueued(name string, delta int) {
	if n := s.queued[name] + delta; n > 0 {
		s.queued[name] = n
	} else {
		delete(s.queued, name)
	}
}

// moveQueued updates the counts for the stored job cur replaced by next:
// a job that enters a terminal state leaves its tenant's count. s.mu must
// be held.
func (s *Store) moveQueued(cur record.Header, next *job.Job) {
	if !cur.State.Terminal() {
		s.addQueued(string(cur.Tenant), -1)
	}
	if !next.State.Terminal() {
		s.addQueued(next.Spec.Tenant, 1)
	}
}

// SyncJobCounts replaces the counts of non-terminal jobs by tenant; see
// store.DB.SyncJobCounts.
func (s *Store) SyncJobCounts(ctx context.Context, counts map[string]int) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	want := make(map[string]int, len(counts))
	for name, n := range counts {
		if n > 0 {
			want[name] = n
		}
	}
	if maps.Equal(s.queued, want) {
		return false, nil
	}
	s.queued = want
	return true, nil
}
