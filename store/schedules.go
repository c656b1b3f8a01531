package store

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/record"
)

// Schedule records live in bucketSchedules under job.ScheduleKey
// ("tenant/name"), each a record.ScheduleRecord carrying its version.
// Every write compares the stored version with the one its caller read, so
// the write that fires a tick (FireSchedule: the tick's jobs and the
// schedule's next run in one transaction) happens once however often it is
// replayed: a second one, after a crash or a race, finds the version moved.

// PutSchedule creates (expect 0) or replaces (the stored Version must be
// expect) a schedule, and sets s.Version to expect+1 once durable.
// Errors: a *job.FieldError on "schedule" for a nil record or one without
// a name or tenant; job.ErrConflict for a create whose key exists or a
// replace whose version moved; job.ErrNotFound for a replace of none.
func (db *DB) PutSchedule(ctx context.Context, s *job.Schedule, expect uint64) error {
	return db.FireSchedule(ctx, s, expect, nil, nil)
}

// FireSchedule is PutSchedule of a stored schedule (expect > 0) with, in
// the same transaction, the insert of the jobs of its tick as Insert does
// them (its checks and tenant admission), and of p with them as
// InsertPipeline does when p is not nil: all of it or nothing.
func (db *DB) FireSchedule(ctx context.Context, s *job.Schedule, expect uint64, p *job.Pipeline, jobs []*job.Job) error {
	if err := job.CheckSchedule(s); err != nil {
		return err
	}
	next := *s
	next.Version = expect + 1
	enc, err := record.MarshalSchedule(&next)
	if err != nil {
		return err
	}
	var (
		in   *insertion
		penc []byte
		size = len(enc)
	)
	if len(jobs) > 0 {
		if in, err = prepareInsert(jobs); err != nil {
			return err
		}
		size += in.size
	}
	if p != nil {
		if err := job.CheckPipeline(p); err != nil {
			return err
		}
		if penc, err = encodePipeline(p); err != nil {
			return err
		}
	}
	key := []byte(s.Key())
	err = db.write(ctx, size, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSchedules)
		if err := record.CheckScheduleVersion(s.Key(), b.Get(key), expect); err != nil {
			return err
		}
		if p != nil && tx.Bucket(bucketPipelines).Get([]byte(p.ID)) != nil {
			return fmt.Errorf("pipeline %s: already exists: %w", p.ID, job.ErrConflict)
		}
		var adding map[string]int
		if in != nil {
			a, err := in.check(tx)
			if err != nil {
				return err
			}
			adding = a
		}
		// Checks done: from here every error is an abort.
		if in != nil {
			if err := in.put(tx, db.idx, adding); err != nil {
				return err
			}
		}
		if p != nil {
			if err := tx.Bucket(bucketPipelines).Put([]byte(p.ID), penc); err != nil {
				return abort(fmt.Errorf("put pipeline %s: %w", p.ID, err))
			}
		}
		if err := b.Put(key, enc); err != nil {
			return abort(fmt.Errorf("put schedule %s: %w", s.Key(), err))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if in != nil {
		in.committed()
	}
	s.Version = expect + 1
	return nil
}

// DeleteSchedule deletes a schedule (not the jobs it submitted): an error
// wrapping job.ErrNotFound when there is none.
func (db *DB) DeleteSchedule(ctx context.Context, key string) error {
	return db.write(ctx, 0, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSchedules)
		if b.Get([]byte(key)) == nil {
			return fmt.Errorf("schedule %s: %w", key, job.ErrNotFound)
		}
		if err := b.Delete([]byte(key)); err != nil {
			return abort(fmt.Errorf("delete schedule %s: %w", key, err))
		}
		return nil
	})
}

// Schedules returns every stored schedule in key order, read in one
// transaction.
func (db *DB) Schedules(ctx context.Context) ([]*job.Schedule, error) {
	if err := db.usable(ctx); err != nil {
		return nil, err
	}
	var out []*job.Schedule
	err := db.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSchedules).ForEach(func(k, v []byte) error {
			s, err := record.UnmarshalSchedule(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, s)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	return out, nil
}
