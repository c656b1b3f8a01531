package memstore

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
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
	enc, err := proto.Marshal(hodeipb.FromTenant(t))
	if err != nil {
		return fmt.Errorf("encode tenant %s: %w: %w", t.Name, job.ErrInvalid, err)
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
		return fmt.Errorf("tenant %q: the default tenant cannot be deleted: %w", job.DefaultTenant, job.ErrConflict)
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
		what := "jobs that are"
		if n == 1 {
			what = "job that is"
		}
		return fmt.Errorf("tenant %q has %d %s not finished; cancel them or wait: %w", name, n, what, job.ErrConflict)
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
		var pb hodeipb.Tenant
		if err := proto.Unmarshal(s.tenants[name], &pb); err != nil {
			return nil, fmt.Errorf("decode tenant %s: %w", name, err)
		}
		out = append(out, pb.ToTenant())
	}
	return out, nil
}

// admit checks that the tenant of every job is stored and has room for its
// new jobs under MaxQueued, and returns the number of new jobs by tenant.
// The first tenant in job order that fails decides the error. s.mu must be
// held.
func (s *Store) admit(jobs []*job.Job) (map[string]int, error) {
	adding := make(map[string]int)
	for _, j := range jobs {
		adding[j.Spec.Tenant]++
	}
	checked := make(map[string]bool, len(adding))
	for _, j := range jobs {
		name := j.Spec.Tenant
		if checked[name] {
			continue
		}
		checked[name] = true
		enc, ok := s.tenants[name]
		if !ok {
			return nil, job.UnknownTenant(name)
		}
		var pb hodeipb.Tenant
		if err := proto.Unmarshal(enc, &pb); err != nil {
			return nil, fmt.Errorf("decode tenant %s: %w", name, err)
		}
		limit := pb.ToTenant().MaxQueued
		if limit > 0 && s.queued[name]+adding[name] > limit {
			return nil, job.OverQueued(name, limit, s.queued[name], adding[name])
		}
	}
	return adding, nil
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
func (s *Store) moveQueued(cur *hodeipb.Job, next *job.Job) {
	if !job.State(cur.GetState()).Terminal() {
		s.addQueued(cur.GetSpec().GetTenant(), -1)
	}
	if !next.State.Terminal() {
		s.addQueued(next.Spec.Tenant, 1)
	}
}
