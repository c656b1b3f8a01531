package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// DefaultWorkerGC is how long a worker stays DOWN before it is deleted
// (Settings.WorkerGC, `hodei serve --worker-gc`).
const DefaultWorkerGC = 24 * time.Hour

// workerGC serialises the writes of worker records and keeps track of DOWN
// workers: their DownSince must be stored, and past Config.WorkerGC they
// are deleted.
type workerGC struct {
	// mu serialises each write of a worker record with its publication
	// in memory (WorkerHello, Drain, the sweep, RemoveWorker), so that a
	// returning agent's record and a DOWN one never overwrite each other.
	mu sync.Mutex
	// dirty is set when a worker went DOWN since the last sweep.
	dirty atomic.Bool
	// next is when the next stored DOWN worker is due for deletion (zero:
	// none), and swept whether a sweep has run (the first one, after
	// Recover, learns next); only the dispatch loop reads and writes them.
	next  time.Time
	swept bool
}

// recoveredWorker is the live view of a stored worker after a restart:
// UNKNOWN until its agent says Hello, with one lease from now to do so, or
// DOWN when it was DOWN before.
func recoveredWorker(w *job.Worker, now time.Time) *workerState {
	if !w.DownSince.IsZero() {
		return &workerState{rec: w, state: job.WorkerDown}
	}
	return &workerState{rec: w, state: job.WorkerUnknown, lastSeen: now}
}

// downState returns w declared DOWN at now. Its record gets DownSince,
// which the next sweep stores; the caller sets gc.dirty once the new state
// is published.
func downState(w *workerState, now time.Time) *workerState {
	n := *w
	n.state = job.WorkerDown
	if n.rec.DownSince.IsZero() {
		rec := n.rec.Clone()
		rec.DownSince = now
		n.rec, n.unsaved = rec, true
	}
	return &n
}

// sweepDown stores when workers went DOWN and deletes the workers DOWN for
// longer than Config.WorkerGC, from the store and from memory. It walks the
// workers only when one went DOWN since the last sweep or a deletion is
// due, so that a pass does not pay for the size of the cluster.
func (s *Cluster) sweepDown(ctx context.Context, now time.Time, next *wakeAt) {
	if !s.gc.dirty.Swap(false) && s.gc.swept && (s.gc.next.IsZero() || now.Before(s.gc.next)) {
		if !s.gc.next.IsZero() {
			next.at(s.gc.next)
		}
		return
	}
	s.gc.swept = true
	s.gc.mu.Lock()
	defer s.gc.mu.Unlock()
	var (
		save    []*job.Worker
		expired []*job.Worker
		due     wakeAt
	)
	s.workers.Range(func(id string, w *workerState) bool {
		switch {
		case w.state != job.WorkerDown:
		case w.unsaved:
			save = append(save, w.rec)
		case s.cfg.WorkerGC < 0 || s.activeCount(id) > 0:
			// Never deleted, or its jobs are still being ended.
		case now.Before(w.rec.DownSince.Add(s.cfg.WorkerGC)):
			due.at(w.rec.DownSince.Add(s.cfg.WorkerGC))
		default:
			expired = append(expired, w.rec)
		}
		return true
	})
	s.gc.next = time.Time{}
	if len(save) > 0 {
		if err := s.cfg.Store.PutWorker(ctx, save...); err != nil {
			s.gc.dirty.Store(true) // the next pass tries again
			s.log.Log(ctx, job.StoreErrLevel(err), "store DOWN workers", "workers", len(save), "err", err)
		} else {
			for _, rec := range save {
				s.workers.Compute(rec.ID, func(old *workerState, loaded bool) (*workerState, bool) {
					if !loaded || old.rec != rec {
						return old, !loaded
					}
					n := *old
					n.unsaved = false
					return &n, false
				})
				if s.cfg.WorkerGC >= 0 {
					due.at(rec.DownSince.Add(s.cfg.WorkerGC))
				}
			}
		}
	}
	if len(expired) > 0 {
		ids := make([]string, len(expired))
		for i, rec := range expired {
			ids[i] = rec.ID
		}
		if err := s.cfg.Store.DeleteWorker(ctx, ids...); err != nil {
			s.log.Log(ctx, job.StoreErrLevel(err), "delete DOWN workers", "workers", len(ids), "err", err)
			due.at(now.Add(s.cfg.Lease)) // try again later
		} else {
			for _, rec := range expired {
				s.workers.Delete(rec.ID) // still DOWN: a Hello would have taken gc.mu
				s.workerChanged(rec.ID)
				s.log.Info("worker deleted", "worker", rec.ID, "down_since", rec.DownSince, "worker_gc", s.cfg.WorkerGC)
			}
		}
	}
	s.gc.next = due.t
	if !due.t.IsZero() {
		next.at(due.t)
	}
}

// RemoveWorker deletes a worker from the store and from memory, for
// `hodei workers rm`. It refuses, with an error wrapping job.ErrConflict, a
// worker whose agent is connected or that holds Scheduled or Running jobs:
// drain it and stop its agent first. also, when not nil, runs after those
// checks and before the deletion, with no worker record written meanwhile
// (the server deletes the agent's binding there); its error stops the
// removal. Errors: job.ErrNotFound for an unknown worker.
func (s *Cluster) RemoveWorker(ctx context.Context, workerID string, also func(context.Context) error) error {
	s.gc.mu.Lock()
	defer s.gc.mu.Unlock()
	w, ok := s.workers.Load(workerID)
	switch {
	case !ok:
		return fmt.Errorf("worker %s: %w", workerID, job.ErrNotFound)
	case w.connected:
		return fmt.Errorf("worker %s is %s and its agent is connected, and a connected worker cannot be removed "+
			"(its agent would register it again): drain it (hodei workers drain %s), stop its agent, then remove it: %w",
			workerID, w.state, workerID, job.ErrConflict)
	}
	if n := s.activeCount(workerID); n > 0 {
		jobs := "jobs"
		if n == 1 {
			jobs = "job"
		}
		return fmt.Errorf("worker %s still holds %d active %s: wait until it is DOWN and they are retried elsewhere "+
			"(one lease after its agent went away), or start its agent again to let them finish: %w",
			workerID, n, jobs, job.ErrConflict)
	}
	if also != nil {
		if err := also(ctx); err != nil {
			return err
		}
	}
	if err := s.cfg.Store.DeleteWorker(ctx, workerID); err != nil {
		return fmt.Errorf("delete worker %s: %w", workerID, err)
	}
	s.workers.Delete(workerID)
	s.workerChanged(workerID)
	s.log.Info("worker removed", "worker", workerID, "state", w.state)
	return nil
}
