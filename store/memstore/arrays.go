package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/record"
)

// InsertArray stores an array record and admits its tasks; see
// cluster.Store.
func (s *Store) InsertArray(ctx context.Context, a *job.Array) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	if _, ok := s.arrays[a.ID]; ok {
		return job.Conflict(a.ID, "already exists")
	}
	if _, ok := s.jobs[a.ID]; ok {
		return job.Conflict(a.ID, "already exists")
	}
	if err := job.AdmitArray(a, s.lookupTenant); err != nil {
		return err
	}
	s.arrays[a.ID] = a.Clone()
	s.addQueued(a.Spec.Tenant, a.Len())
	return nil
}

// Arrays returns every array record in id order.
func (s *Store) Arrays(ctx context.Context) ([]*job.Array, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*job.Array, 0, len(s.arrays))
	for _, a := range s.arrays {
		out = append(out, a.Clone())
	}
	slices.SortFunc(out, func(a, b *job.Array) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// CancelArray marks an array cancelled and applies updates in the same
// step; see cluster.Store.
func (s *Store) CancelArray(ctx context.Context, a *job.Array, updates []job.Update) ([]error, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return nil, s.writeErr
	}
	cur, ok := s.arrays[a.ID]
	switch {
	case !ok:
		return nil, fmt.Errorf("array %s: %w", a.ID, job.ErrNotFound)
	case cur.Cancelled:
		return nil, job.Conflict(a.ID, "already cancelled")
	}
	errs, err := s.apply(updates)
	if err != nil {
		return nil, err
	}
	s.addQueued(a.Spec.Tenant, -s.unmaterialized(cur))
	s.arrays[a.ID] = a.Clone()
	return errs, nil
}

// unmaterialized counts the tasks of a that are not stored as jobs. s.mu
// must be held.
func (s *Store) unmaterialized(a *job.Array) int {
	n := a.Len()
	for p := range a.Len() {
		if _, ok := s.jobs[job.TaskID(a.ID, p)]; ok {
			n--
		}
	}
	return n
}

// DeleteArray deletes an array record.
func (s *Store) DeleteArray(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	delete(s.arrays, id)
	return nil
}

// GetMany returns the stored jobs with the given ids (nil when missing).
func (s *Store) GetMany(ctx context.Context, ids []string) ([]*job.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*job.Job, len(ids))
	for i, id := range ids {
		if enc, ok := s.jobs[id]; ok {
			out[i] = decode(id, enc)
		}
	}
	return out, nil
}

// create stores a task of an array as a job, for Apply. s.mu must be held.
func (s *Store) create(u job.Update, enc []byte) error {
	id := u.Next.ID
	if _, ok := s.jobs[id]; ok {
		return job.Conflict(id, "already exists")
	}
	a, ok := s.arrays[u.Next.Spec.Array]
	if !ok {
		return fmt.Errorf("array %s of job %s: %w", u.Next.Spec.Array, id, job.ErrNotFound)
	}
	if _, ok := a.Position(id); !ok {
		return job.Invalid("id", "%s is not a task of array %s", id, a.ID)
	}
	if a.Cancelled && !u.Next.State.Terminal() {
		return job.Conflict(id, "its array is cancelled")
	}
	if err := u.Check(); err != nil {
		return err
	}
	s.jobs[id] = record.WithVersion(enc, 1)
	i, _ := slices.BinarySearch(s.ids, id)
	s.ids = slices.Insert(s.ids, i, id)
	if u.Next.State.Terminal() && !a.Cancelled {
		s.addQueued(u.Next.Spec.Tenant, -1)
	}
	return nil
}
