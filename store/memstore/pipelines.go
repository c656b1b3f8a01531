package memstore

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/record"
)

// InsertPipeline stores a new pipeline record and its jobs, all or
// nothing, under one lock; see scheduler.Store. The checks and errors are
// the bbolt store's, in its order: the record (a *job.FieldError on
// "pipeline", then job.ErrConflict for an id already stored), then
// Insert's checks and admission of the jobs.
func (s *Store) InsertPipeline(ctx context.Context, p *job.Pipeline, jobs []*job.Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := job.CheckPipeline(p); err != nil {
		return err
	}
	encs, err := encodeNew(jobs)
	if err != nil {
		return err
	}
	enc, err := record.MarshalPipeline(p)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	if _, ok := s.pipelines[p.ID]; ok {
		return fmt.Errorf("pipeline %s: already exists: %w", p.ID, job.ErrConflict)
	}
	adding, err := s.checkInsert(jobs)
	if err != nil {
		return err
	}
	s.putJobs(jobs, encs, adding)
	s.pipelines[p.ID] = enc
	return nil
}

// PutPipeline replaces a stored pipeline record: an error wrapping
// job.ErrNotFound when there is none, a *job.FieldError on "pipeline" for
// a nil record or an empty id.
func (s *Store) PutPipeline(ctx context.Context, p *job.Pipeline) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := job.CheckPipeline(p); err != nil {
		return err
	}
	enc, err := record.MarshalPipeline(p)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	if _, ok := s.pipelines[p.ID]; !ok {
		return fmt.Errorf("pipeline %s: %w", p.ID, job.ErrNotFound)
	}
	s.pipelines[p.ID] = enc
	return nil
}

// Pipelines returns every stored pipeline record in id order.
func (s *Store) Pipelines(ctx context.Context) ([]*job.Pipeline, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*job.Pipeline
	for _, id := range slices.Sorted(maps.Keys(s.pipelines)) {
		p, err := record.UnmarshalPipeline(id, s.pipelines[id])
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// DeletePipeline deletes a pipeline record, not its jobs; one that does
// not exist is not an error.
func (s *Store) DeletePipeline(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	delete(s.pipelines, id)
	return nil
}
