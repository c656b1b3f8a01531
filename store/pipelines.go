package store

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
)

// Pipeline records live in bucketPipelines, keyed by pipeline id, each the
// record.PipelineRecord. A record only names its steps' jobs: the jobs
// are stored as any others, and deleting the record leaves them.

// InsertPipeline stores a new pipeline record and its jobs in one commit,
// all or nothing, and sets the jobs' Version to 1 once it is durable. The
// jobs go through Insert's checks and tenant admission, in the same
// transaction; the jobs may depend on each other. A nil record, or one
// without an id, fails with a *job.FieldError on "pipeline"; an id already
// stored fails with an error wrapping job.ErrConflict. Like Insert's, these
// failures write nothing and leave the other requests of the commit alone.
func (db *DB) InsertPipeline(ctx context.Context, p *job.Pipeline, jobs []*job.Job) error {
	if err := job.CheckPipeline(p); err != nil {
		return err
	}
	in, err := prepareInsert(jobs)
	if err != nil {
		return err
	}
	enc, err := encodePipeline(p)
	if err != nil {
		return err
	}
	id := p.ID
	err = db.write(ctx, in.size+len(enc), func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPipelines)
		if b.Get([]byte(id)) != nil {
			return fmt.Errorf("pipeline %s: already exists: %w", id, job.ErrConflict)
		}
		adding, err := in.check(tx)
		if err != nil {
			return err
		}
		// Checks done: from here every error is an abort.
		if err := in.put(tx, db.idx, adding); err != nil {
			return err
		}
		if err := b.Put([]byte(id), enc); err != nil {
			return abort(fmt.Errorf("put pipeline %s: %w", id, err))
		}
		return nil
	})
	if err != nil {
		return err
	}
	in.committed()
	return nil
}

// PutPipeline replaces a stored pipeline record, checking in the commit's
// transaction that it exists: an error wrapping job.ErrNotFound when it
// does not, and a *job.FieldError on "pipeline" for a nil record or an
// empty id. It does not touch the pipeline's jobs.
func (db *DB) PutPipeline(ctx context.Context, p *job.Pipeline) error {
	if err := job.CheckPipeline(p); err != nil {
		return err
	}
	enc, err := encodePipeline(p)
	if err != nil {
		return err
	}
	id := p.ID
	return db.write(ctx, len(enc), func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPipelines)
		if b.Get([]byte(id)) == nil {
			return fmt.Errorf("pipeline %s: %w", id, job.ErrNotFound)
		}
		if err := b.Put([]byte(id), enc); err != nil {
			return abort(fmt.Errorf("put pipeline %s: %w", id, err))
		}
		return nil
	})
}

// Pipelines returns every stored pipeline record in id order, read in one
// transaction.
func (db *DB) Pipelines(ctx context.Context) ([]*job.Pipeline, error) {
	if err := db.usable(ctx); err != nil {
		return nil, err
	}
	var out []*job.Pipeline
	err := db.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPipelines).ForEach(func(k, v []byte) error {
			p, err := decodePipeline(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, p)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list pipelines: %w", err)
	}
	return out, nil
}

// DeletePipeline deletes a pipeline record, not its jobs. A record that
// does not exist (an empty id included) is not an error.
func (db *DB) DeletePipeline(ctx context.Context, id string) error {
	if id == "" {
		return db.usable(ctx)
	}
	return db.write(ctx, 0, func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketPipelines).Delete([]byte(id)); err != nil {
			return abort(fmt.Errorf("delete pipeline %s: %w", id, err))
		}
		return nil
	})
}
