package store

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/record"
)

// Arrays are one record each in the arrays bucket, keyed by id, until
// their tasks are materialized as jobs (see job.Array). The tenant's count
// of queued jobs includes the tasks that are not jobs yet: InsertArray adds
// them all, a materialized task counts as a job, and CancelArray takes off
// those left.

// InsertArray stores an array record and admits its tasks; see
// cluster.Store.
func (db *DB) InsertArray(ctx context.Context, a *job.Array) error {
	enc, err := encodeArray(a)
	if err != nil {
		return err
	}
	return db.write(ctx, len(enc), func(tx *bolt.Tx) error {
		key := []byte(a.ID)
		if tx.Bucket(bucketArrays).Get(key) != nil || tx.Bucket(bucketJobs).Get(key) != nil {
			return job.Conflict(a.ID, "already exists")
		}
		if err := job.AdmitArray(a, tenantLookup(tx)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketArrays).Put(key, enc); err != nil {
			return abort(fmt.Errorf("put array %s: %w", a.ID, err))
		}
		return abortOn(addJobCount(tx, a.Spec.Tenant, int64(a.Len())))
	})
}

// Arrays returns every array record in id order.
func (db *DB) Arrays(ctx context.Context) ([]*job.Array, error) {
	if err := db.usable(ctx); err != nil {
		return nil, err
	}
	var out []*job.Array
	err := db.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketArrays).ForEach(func(k, v []byte) error {
			a, err := decodeArray(k, v)
			if err != nil {
				return fmt.Errorf("array %s: %w", k, err)
			}
			out = append(out, a)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read arrays: %w", err)
	}
	return out, nil
}

// CancelArray stores a, cancelled, and applies updates in one commit; see
// cluster.Store.
func (db *DB) CancelArray(ctx context.Context, a *job.Array, updates []job.Update) ([]error, error) {
	enc, err := encodeArray(a)
	if err != nil {
		return nil, err
	}
	p, err := db.prepareApply(updates)
	if err != nil {
		return nil, err
	}
	err = db.write(ctx, p.size+len(enc), func(tx *bolt.Tx) error {
		key := []byte(a.ID)
		v := tx.Bucket(bucketArrays).Get(key)
		if v == nil {
			return fmt.Errorf("array %s: %w", a.ID, job.ErrNotFound)
		}
		cur, err := decodeArray(key, v)
		if err != nil {
			return fmt.Errorf("array %s: %w", a.ID, err)
		}
		if cur.Cancelled {
			return job.Conflict(a.ID, "already cancelled")
		}
		if err := p.apply(tx); err != nil {
			return err
		}
		left := cur.Len() - materializedTasks(tx, cur)
		if err := tx.Bucket(bucketArrays).Put(key, enc); err != nil {
			return abort(fmt.Errorf("put array %s: %w", a.ID, err))
		}
		return abortOn(addJobCount(tx, a.Spec.Tenant, -int64(left)))
	})
	if err != nil {
		return nil, err
	}
	p.committed()
	return p.errs, nil
}

// materializedTasks counts the jobs stored for a's tasks: their ids are the
// range after a's, so it costs what is stored, not the array's length.
func materializedTasks(tx *bolt.Tx, a *job.Array) int {
	c := tx.Bucket(bucketJobs).Cursor()
	last := []byte(job.TaskID(a.ID, a.Len()-1))
	n := 0
	for k, _ := c.Seek([]byte(job.TaskID(a.ID, 0))); k != nil && bytes.Compare(k, last) <= 0; k, _ = c.Next() {
		n++
	}
	return n
}

// DeleteArray deletes an array record.
func (db *DB) DeleteArray(ctx context.Context, id string) error {
	return db.write(ctx, 0, func(tx *bolt.Tx) error {
		return abortOn(tx.Bucket(bucketArrays).Delete([]byte(id)))
	})
}

// GetMany returns the stored jobs with the given ids, in one read
// transaction; a missing one is nil.
func (db *DB) GetMany(ctx context.Context, ids []string) ([]*job.Job, error) {
	if err := db.usable(ctx); err != nil {
		return nil, err
	}
	encs := make([][]byte, len(ids))
	err := db.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		for i, id := range ids {
			encs[i] = bytes.Clone(b.Get([]byte(id)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get jobs: %w", err)
	}
	out := make([]*job.Job, len(ids))
	for i, enc := range encs {
		if enc == nil {
			continue
		}
		if out[i], err = decodeJob(ids[i], enc); err != nil {
			return nil, fmt.Errorf("job %s: %w", ids[i], err)
		}
	}
	return out, nil
}

// createTask stores a task of an array as a job (Apply with Create) and
// returns its version, 1. A task that starts terminal (cancelled on its
// own) leaves its tenant's count. Its index entries go to iw.
func createTask(tx *bolt.Tx, u job.Update, enc []byte, entries []indexEntry, iw *indexWriter, arrays arrayCache) (uint64, error) {
	id := u.Next.ID
	key := []byte(id)
	if tx.Bucket(bucketJobs).Get(key) != nil {
		return 0, job.Conflict(id, "already exists")
	}
	akey := []byte(u.Next.Spec.Array)
	v := tx.Bucket(bucketArrays).Get(akey)
	if v == nil {
		return 0, fmt.Errorf("array %s of job %s: %w", u.Next.Spec.Array, id, job.ErrNotFound)
	}
	a, err := arrays.decode(akey, v)
	if err != nil {
		return 0, fmt.Errorf("array %s: %w", u.Next.Spec.Array, err)
	}
	if _, ok := a.Position(id); !ok {
		return 0, job.Invalid("id", "%s is not a task of array %s", id, a.ID)
	}
	if a.Cancelled && !u.Next.State.Terminal() {
		return 0, job.Conflict(id, "its array is cancelled")
	}
	if err := u.Check(); err != nil {
		return 0, err
	}
	if err := tx.Bucket(bucketJobs).Put(key, withVersion(enc, 1)); err != nil {
		return 0, abort(fmt.Errorf("put job %s: %w", id, err))
	}
	iw.put(entries)
	if u.Next.State.Terminal() && !a.Cancelled {
		if err := addJobCount(tx, u.Next.Spec.Tenant, -1); err != nil {
			return 0, abort(err)
		}
	}
	return 1, nil
}

// arrayCache keeps the arrays one request decoded, by id, with the value
// each was decoded from: a pass that makes 64 tasks of one array jobs
// decodes its record once.
type arrayCache map[string]decodedArray

type decodedArray struct {
	raw []byte // valid for the transaction
	a   *job.Array
}

// decode returns the array stored under key as v, decoding it unless v is
// the value it was decoded from before.
func (c arrayCache) decode(key, v []byte) (*job.Array, error) {
	if d, ok := c[string(key)]; ok && bytes.Equal(d.raw, v) {
		return d.a, nil
	}
	a, err := decodeArray(key, v)
	if err != nil {
		return nil, err
	}
	c[string(key)] = decodedArray{v, a}
	return a, nil
}

// abortOn wraps a write error as an abort; nil stays nil.
func abortOn(err error) error {
	if err != nil {
		return abort(err)
	}
	return nil
}

func encodeArray(a *job.Array) ([]byte, error) { return record.MarshalArray(a) }

func decodeArray(id []byte, b []byte) (*job.Array, error) {
	return record.UnmarshalArray(string(id), b)
}
