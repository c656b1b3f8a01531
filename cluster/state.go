package cluster

import (
	"container/heap"
	"strings"
	"time"

	"github.com/google/btree"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// The job state the Cluster keeps in memory is what is not finished:
//
//   - waiting: every Pending job as a compact scheduler.Waiting (the full
//     record stays in the store until the job is dispatched), filed in
//     exactly one place: its tenant's ready queue, the delayed heap (its
//     backoff has not ended), or the blocked set (a dependency has not
//     completed).
//   - active: every Scheduled and Running job, in full.
//   - arrays: each array with tasks not yet materialized, and its one entry
//     in its tenant's queue that stands for all of them.
//   - counts: per tenant, what its waiting and active jobs add up to, kept
//     on every change, so that /metrics and `tenants ls` read figures
//     instead of walking jobs.
//
// Finished jobs are read from the store (with a small cache of the most
// recent ones). All of it is guarded by Cluster.mu.

// where says in which structure a waiting job is filed.
type where uint8

const (
	ready   where = iota + 1 // in its tenant's queue
	delayed                  // in the delayed heap until its Since
	blocked                  // waiting for dependencies
)

// waitRef is a waiting job's entry in the index.
type waitRef struct {
	w       *scheduler.Waiting
	version uint64
	at      where
}

// tenantQueue is one tenant's ready work in scheduler order, and the
// entries among it whose keys move on their own (deadlines).
type tenantQueue struct {
	tree      *btree.BTreeG[*scheduler.Waiting]
	deadlined map[string]*scheduler.Waiting
}

func newTenantQueue() *tenantQueue {
	return &tenantQueue{
		tree:      btree.NewG(32, func(a, b *scheduler.Waiting) bool { return a.Before(b) }),
		deadlined: make(map[string]*scheduler.Waiting),
	}
}

// seq yields the queue best first; the caller holds Cluster.mu.
func (q *tenantQueue) seq(yield func(*scheduler.Waiting) bool) {
	q.tree.Ascend(func(w *scheduler.Waiting) bool { return yield(w) })
}

// delayHeap orders delayed entries by the end of their backoff. Entries
// are removed lazily: one no longer in the index is dropped when it
// reaches the top.
type delayHeap []*scheduler.Waiting

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].Since < h[j].Since }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(*scheduler.Waiting)) }
func (h *delayHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return x
}

// tenantCount is what one tenant's unfinished jobs add up to.
type tenantCount struct {
	// name is the tenant's name, a copy of its own: the waiting entries of
	// the tenant share it (see intern).
	name      string
	Pending   int           // waiting jobs, unmaterialized array tasks included
	Scheduled int           // dispatched, not yet started
	Running   int           // started
	Asked     job.Resources // asked for by its waiting jobs
	Held      job.Resources // held by its Scheduled and Running jobs
}

// arrayState is one array whose tasks are not all materialized.
type arrayState struct {
	rec *job.Array
	// tasks is what Decide draws from (immutable; replaced on change);
	// entry is its one entry in the tenant's queue, nil once none is left
	// or the array is cancelled.
	tasks *scheduler.Tasks
	entry *scheduler.Waiting
}

// file puts a waiting entry where it belongs at now: ready, delayed or
// blocked. The caller holds mu.
func (s *Cluster) file(w *scheduler.Waiting, version uint64, isBlocked bool, now time.Time) {
	at := ready
	switch {
	case isBlocked:
		at = blocked
	case w.Since > now.UnixNano():
		at = delayed
		heap.Push(&s.delayed, w)
	default:
		s.enqueue(w)
	}
	s.waiting[w.ID] = waitRef{w: w, version: version, at: at}
}

// enqueue adds w to its tenant's ready queue.
func (s *Cluster) enqueue(w *scheduler.Waiting) {
	q := s.queues[w.Tenant]
	if q == nil {
		q = newTenantQueue()
		s.queues[w.Tenant] = q
	}
	q.tree.ReplaceOrInsert(w)
	if w.Deadline != 0 {
		q.deadlined[w.ID] = w
	}
}

// unfile removes a waiting entry from wherever it is filed.
func (s *Cluster) unfile(id string) (waitRef, bool) {
	ref, ok := s.waiting[id]
	if !ok {
		return ref, false
	}
	delete(s.waiting, id)
	delete(s.needs, id)
	if ref.at == ready {
		s.dequeue(ref.w)
	}
	// A delayed entry stays in the heap until it reaches the top.
	return ref, true
}

func (s *Cluster) dequeue(w *scheduler.Waiting) {
	q := s.queues[w.Tenant]
	if q == nil {
		return
	}
	q.tree.Delete(w)
	delete(q.deadlined, w.ID)
	if q.tree.Len() == 0 {
		delete(s.queues, w.Tenant)
	}
}

// undelay moves the delayed entries whose backoff has ended to their
// queues and returns when the next one ends (zero: none).
func (s *Cluster) undelay(now time.Time) time.Time {
	n := now.UnixNano()
	for len(s.delayed) > 0 {
		w := s.delayed[0]
		ref, ok := s.waiting[w.ID]
		if !ok || ref.w != w || ref.at != delayed {
			heap.Pop(&s.delayed) // removed or moved meanwhile
			continue
		}
		if w.Since > n {
			return time.Unix(0, w.Since)
		}
		heap.Pop(&s.delayed)
		ref.at = ready
		s.waiting[w.ID] = ref
		s.enqueue(w)
	}
	return time.Time{}
}

// rekeyTick is how often the keys of waiting jobs with deadlines are
// brought up to date (see scheduler.KeyOf): between two ticks such a job
// ranks as it did at the last one.
const rekeyTick = time.Second

// rekey re-keys the ready jobs with deadlines, at most once per rekeyTick.
// It costs O(d log n) for d such jobs, once a tick, not once a pass.
func (s *Cluster) rekey(now time.Time) {
	if now.Sub(s.rekeyed) < rekeyTick {
		return
	}
	s.rekeyed = now
	for _, q := range s.queues {
		for id, w := range q.deadlined {
			n := w.Rekey(now, s.cfg.Aging)
			if n.Key == w.Key {
				continue
			}
			q.tree.Delete(w)
			q.tree.ReplaceOrInsert(n)
			q.deadlined[id] = n
			ref := s.waiting[id]
			ref.w = n
			s.waiting[id] = ref
		}
	}
}

// count returns a tenant's counts, creating them.
func (s *Cluster) count(tenant string) *tenantCount {
	c := s.counts[tenant]
	if c == nil {
		c = &tenantCount{name: strings.Clone(tenant)}
		s.counts[c.name] = c
	}
	return c
}

// intern returns the copy of a tenant's name that the Cluster keeps, for
// a waiting entry to hold instead of the job's own: a million entries then
// share one string, and an entry recovered from the store does not keep
// the whole record it was decoded from alive (the store's decoder makes
// every string of a job a substring of one copy of its record). The
// caller holds mu.
func (s *Cluster) intern(tenant string) string { return s.count(tenant).name }

// addWaiting and addActive move a tenant's counts by n jobs of res.
func (s *Cluster) addWaiting(tenant string, n int, res job.Resources) {
	c := s.count(tenant)
	c.Pending += n
	c.Asked = c.Asked.Add(res.Scale(float64(n)))
}

func (s *Cluster) addActive(j *job.Job, n int) {
	c := s.count(j.Spec.Tenant)
	if j.State == job.Running {
		c.Running += n
	} else {
		c.Scheduled += n
	}
	c.Held = c.Held.Add(j.Spec.Resources.Scale(float64(n)))
	if j.Spec.ArrayLimit > 0 {
		s.arrayRunning[j.Spec.Array] += n
		if s.arrayRunning[j.Spec.Array] <= 0 {
			delete(s.arrayRunning, j.Spec.Array)
		}
	}
}
