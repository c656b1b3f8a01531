package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
)

// The commit loop. Writers enqueue a request; the loop takes the first one,
// then every request already queued (up to MaxBatch and MaxBatchBytes), runs
// them in order in one bbolt transaction and answers each after the commit
// returned. Requests queued while a commit is syncing wait for the next
// round, so a lone writer costs one fsync and N concurrent writers share one.
//
// Unlike bolt.DB.Batch there is no delay before a commit, a request's
// function runs exactly once, and a request that fails (a lost CAS) fails
// alone: its function checks everything first and writes only when the
// checks pass, so it leaves nothing half-written. A write error is different:
// the function wraps it with abort, and then the whole transaction rolls
// back and every request in it gets the error.

// request is one writer's change.
type request struct {
	// apply checks and writes the change in the loop's transaction. It runs
	// at most once, on the loop's goroutine. An error it returns fails this
	// request only, unless it is an *abortError.
	apply func(tx *bolt.Tx) error
	size  int          // encoded bytes, for MaxBatchBytes
	state atomic.Int32 // queued, taken or abandoned
	reply chan error   // capacity 1; gets exactly one value once taken
}

const (
	queued int32 = iota
	taken
	abandoned
)

// abortError wraps a failure that must roll back the whole transaction:
// the request that hit it may have written part of its change.
type abortError struct{ err error }

func (e *abortError) Error() string { return e.err.Error() }
func (e *abortError) Unwrap() error { return e.err }

// abort marks err as fatal for the transaction. Use it for every error that
// happens after a request started writing.
func abort(err error) error { return &abortError{err} }

// write runs apply in the commit loop and returns its result once the
// transaction holding it is durable. A caller whose ctx ends before the loop
// took its request gets ctx.Err(); once taken it waits for the result.
func (db *DB) write(ctx context.Context, size int, apply func(*bolt.Tx) error) error {
	if err := db.usable(ctx); err != nil {
		return err
	}
	r := &request{apply: apply, size: size, reply: make(chan error, 1)}
	select {
	case db.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-db.closing:
		return fmt.Errorf("store: %w", job.ErrClosed)
	}
	if hook := db.enqueued.Load(); hook != nil {
		(*hook)()
	}
	select {
	case err := <-r.reply:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(queued, abandoned) {
			return ctx.Err()
		}
	case <-db.done:
		// The loop is gone. Whatever it took, it answered before leaving.
		if r.state.CompareAndSwap(queued, abandoned) {
			return fmt.Errorf("store: %w", job.ErrClosed)
		}
	}
	return <-r.reply
}

// run is the commit loop. It returns when Close closes db.closing, after
// failing the requests still queued.
func (db *DB) run() {
	defer close(db.done)
	batch := make([]*request, 0, db.opts.MaxBatch)
	for {
		select {
		case <-db.closing:
			db.failQueued()
			return
		default:
		}
		var first *request
		select {
		case <-db.closing:
			db.failQueued()
			return
		case first = <-db.reqs:
		}
		batch = batch[:0]
		size := 0
		if first.state.CompareAndSwap(queued, taken) {
			batch = append(batch, first)
			size += first.size
		}
	drain:
		for len(batch) < db.opts.MaxBatch && size < db.opts.MaxBatchBytes {
			select {
			case r := <-db.reqs:
				if r.state.CompareAndSwap(queued, taken) {
					batch = append(batch, r)
					size += r.size
				}
			default:
				break drain
			}
		}
		if len(batch) > 0 {
			db.commit(batch)
		}
		clear(batch) // drop references to answered requests
	}
}

// commit runs batch in one transaction and answers every request.
func (db *DB) commit(batch []*request) {
	errs := make([]error, len(batch))
	db.idx = &txIndex{}
	failing := db.health.failing()
	wrote := false // every request ran: an error now is the file's
	start := time.Now()
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		// Job ids are ULIDs, so new records go at the end of their bucket:
		// bbolt splits the pages they fill full rather than half full,
		// which writes about half the pages for a batch of new jobs
		// (BenchmarkSubmitBatch: 45-47% of bbolt's rate became 49-52%).
		tx.Bucket(bucketJobs).FillPercent = 1.0
		for i, r := range batch {
			err := safeApply(r.apply, tx)
			if ae, ok := errors.AsType[*abortError](err); ok {
				return ae.err
			}
			errs[i] = err
		}
		// The index changes of every request, at once (see txIndex).
		if err := db.idx.flush(tx); err != nil {
			return err
		}
		if err := db.health.probe(tx, failing); err != nil {
			return err
		}
		wrote = true
		return nil
	})
	took := time.Since(start)
	db.idx = nil
	err = closedErr(err)
	switch {
	case err == nil:
		db.health.committed(failing)
		db.health.observe(nil, 0)
	case wrote && !errors.Is(err, job.ErrClosed):
		// Writing or syncing the file failed: a full disk, an I/O error.
		err = fmt.Errorf("%w: %w", job.ErrUnwritable, err)
		size := 0
		for _, r := range batch {
			size += r.size
		}
		db.health.observe(err, size)
	}
	db.statsMu.Lock()
	db.stats.observeCommit(took)
	if err != nil {
		db.stats.Failed++
	} else {
		db.stats.Commits++
		db.stats.Requests += uint64(len(batch))
	}
	db.statsMu.Unlock()
	if err != nil {
		err = fmt.Errorf("commit: %w", err)
	}
	for i, r := range batch {
		if err != nil {
			r.reply <- err
		} else {
			r.reply <- errs[i]
		}
	}
}

// safeApply turns a panic in a request into an abort of its transaction, so
// that one bad request cannot take the loop, and the server, down.
func safeApply(apply func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = abort(fmt.Errorf("store: panic in write: %v", p))
		}
	}()
	return apply(tx)
}

// failQueued answers every request still queued with job.ErrClosed.
func (db *DB) failQueued() {
	for {
		select {
		case r := <-db.reqs:
			if r.state.CompareAndSwap(queued, taken) {
				r.reply <- fmt.Errorf("store: %w", job.ErrClosed)
			}
		default:
			return
		}
	}
}
