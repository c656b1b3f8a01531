package scheduler

import (
	"slices"

	"github.com/puzpuzpuz/xsync/v3"
)

// workerJobs indexes the active (Scheduled and Running) jobs by worker, so
// that what concerns one worker — its agent's Hello, whether it may be
// removed, whether its going DOWN loses anything — costs what that worker
// runs, not what the whole cluster runs. It is kept by track, inside the
// jobs map's Compute of each job, so updates of one job are serialised;
// updates of different jobs of one worker meet in the worker's Compute.
// Safe for concurrent use.
type workerJobs struct {
	worker *xsync.MapOf[string, string]   // active job id → its worker id
	jobs   *xsync.MapOf[string, []string] // worker id → its active job ids; copy on write
}

func newWorkerJobs() *workerJobs {
	return &workerJobs{worker: xsync.NewMapOf[string, string](), jobs: xsync.NewMapOf[string, []string]()}
}

// set files active job id under worker, moving it from the worker it was
// filed under before, if another.
func (x *workerJobs) set(id, worker string) {
	old, loaded := x.worker.LoadAndStore(id, worker)
	if loaded && old == worker {
		return
	}
	if loaded {
		x.remove(old, id)
	}
	x.jobs.Compute(worker, func(ids []string, _ bool) ([]string, bool) {
		return append(slices.Clip(ids), id), false
	})
}

// drop forgets job id, which is no longer active.
func (x *workerJobs) drop(id string) {
	if old, loaded := x.worker.LoadAndDelete(id); loaded {
		x.remove(old, id)
	}
}

func (x *workerJobs) remove(worker, id string) {
	x.jobs.Compute(worker, func(ids []string, loaded bool) ([]string, bool) {
		i := slices.Index(ids, id)
		if i < 0 {
			return ids, !loaded
		}
		if len(ids) == 1 {
			return nil, true
		}
		return slices.Delete(slices.Clone(ids), i, i+1), false
	})
}

// of returns the ids of worker's active jobs. The slice is shared: do not
// change it.
func (x *workerJobs) of(worker string) []string {
	ids, _ := x.jobs.Load(worker)
	return ids
}
