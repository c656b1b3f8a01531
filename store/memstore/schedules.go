package memstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/record"
)

// PutSchedule creates (expect 0) or replaces (stored version expect) a
// schedule; see store.DB.PutSchedule.
func (s *Store) PutSchedule(ctx context.Context, sc *job.Schedule, expect uint64) error {
	return s.FireSchedule(ctx, sc, expect, nil, nil)
}

// FireSchedule stores a schedule and inserts its tick's jobs (and
// pipeline) under one lock, all or nothing, with the bbolt store's checks
// in its order; see store.DB.FireSchedule.
func (s *Store) FireSchedule(ctx context.Context, sc *job.Schedule, expect uint64, p *job.Pipeline, jobs []*job.Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := job.CheckSchedule(sc); err != nil {
		return err
	}
	next := *sc
	next.Version = expect + 1
	enc, err := record.MarshalSchedule(&next)
	if err != nil {
		return err
	}
	var encs [][]byte
	if len(jobs) > 0 {
		if encs, err = encodeNew(jobs); err != nil {
			return err
		}
	}
	var penc []byte
	if p != nil {
		if err := job.CheckPipeline(p); err != nil {
			return err
		}
		if penc, err = record.MarshalPipeline(p); err != nil {
			return err
		}
	}
	key := sc.Key()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	if err := record.CheckScheduleVersion(key, s.schedules[key], expect); err != nil {
		return err
	}
	if p != nil {
		if _, ok := s.pipelines[p.ID]; ok {
			return fmt.Errorf("pipeline %s: already exists: %w", p.ID, job.ErrConflict)
		}
	}
	var adding map[string]int
	if len(jobs) > 0 {
		if adding, err = s.checkInsert(jobs); err != nil {
			return err
		}
		s.putJobs(jobs, encs, adding)
	}
	if p != nil {
		s.pipelines[p.ID] = penc
	}
	s.schedules[key] = enc
	sc.Version = expect + 1
	return nil
}

// DeleteSchedule deletes a schedule: job.ErrNotFound when there is none.
func (s *Store) DeleteSchedule(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	if _, ok := s.schedules[key]; !ok {
		return fmt.Errorf("schedule %s: %w", key, job.ErrNotFound)
	}
	delete(s.schedules, key)
	return nil
}

// Schedules returns every stored schedule in key order.
func (s *Store) Schedules(ctx context.Context) ([]*job.Schedule, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	keys := make([]string, 0, len(s.schedules))
	for k := range s.schedules {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]*job.Schedule, 0, len(keys))
	for _, k := range keys {
		sc, err := record.UnmarshalSchedule(k, s.schedules[k])
		if err != nil {
			panic(fmt.Sprintf("memstore: decode schedule: %v", err)) // we encoded it
		}
		out = append(out, sc)
	}
	return out, nil
}
