package cluster

import (
	"sync"

	"github.com/hodei-jobs/hodei/job"
)

// recentJobsSize bounds the finished jobs kept in memory: those a watcher
// or `hodei run` is about to ask for, and the guard that keeps a late,
// older version of a job that just ended from being published.
const recentJobsSize = 4096

// recentJobs keeps the last finished jobs published, first in first out.
// It is safe for concurrent use.
type recentJobs struct {
	mu   sync.Mutex
	byID map[string]*job.Job // guarded by mu
	ring []string            // guarded by mu; ids in the order they came
	next int                 // guarded by mu; the slot the next id takes
}

func newRecentJobs(size int) *recentJobs {
	return &recentJobs{byID: make(map[string]*job.Job, size), ring: make([]string, size)}
}

func (r *recentJobs) get(id string) *job.Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id]
}

// put keeps j, replacing an older version and evicting the oldest job when
// full.
func (r *recentJobs) put(j *job.Job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.byID[j.ID]; ok {
		if old.Version < j.Version {
			r.byID[j.ID] = j
		}
		return
	}
	if evict := r.ring[r.next]; evict != "" {
		delete(r.byID, evict)
	}
	r.ring[r.next] = j.ID
	r.next = (r.next + 1) % len(r.ring)
	r.byID[j.ID] = j
}

// drop forgets id (its ring slot is reused in turn).
func (r *recentJobs) drop(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byID, id)
}
