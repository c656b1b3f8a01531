package cluster

import (
	"container/heap"
	"time"

	"github.com/google/btree"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// The job state the Cluster keeps in memory is what is not finished:
//
//   - wait: every Pending job as a compact entry of a waitTable (see
//     there; the full record stays in the store until the job is
//     dispatched), filed in exactly one place: its tenant's ready queue,
//     the parked entries of its shape (no ready worker could take it; see
//     park.go), the delayed heap (its backoff has not ended), or the
//     blocked set (a dependency has not completed).
//   - active: every Scheduled and Running job, in full.
//   - arrays: each array with tasks not yet materialized, and its one entry
//     in its tenant's queue that stands for all of them.
//   - counts: per tenant, what its waiting and active jobs add up to, kept
//     on every change, so that /metrics and `tenants ls` read figures
//     instead of walking jobs; with its ready entries by the second they
//     became eligible (ages.go), for the age of the oldest.
//
// Finished jobs are read from the store (with a small cache of the most
// recent ones). All of it is guarded by Cluster.mu.

// where says in which structure a waiting entry is filed.
type where uint8

const (
	ready   where = iota + 1 // in its tenant's queue
	delayed                  // in the delayed heap until its Since
	blocked                  // waiting for dependencies
	parked                   // ready, but no ready worker could take it (park.go)
)

// isReady reports whether an entry filed at w may start once a worker
// has room for it: in its queue, or parked.
func isReady(w where) bool { return w == ready || w == parked }

// qitem is an entry's place in its tenant's queue: its key and its slot,
// no pointer.
type qitem struct {
	key  int64
	slot slot
}

// tenantQueue is one tenant's ready work in scheduler order, kept per
// shape (see walk.go), and the entries among it whose keys move on their
// own (deadlines).
type tenantQueue struct {
	shapes    map[shapeKey]*btree.BTreeG[qitem] // each shape's entries in order
	heads     *btree.BTreeG[qitem]              // the first entry of each shape
	n         int                               // entries
	free      *btree.FreeListG[qitem]           // shared by its trees
	less      func(a, b qitem) bool
	deadlined map[slot]struct{}
	// resume is the last shape head a cut walk tried; with rotate, the
	// next walk starts after it (see walk.go).
	resume qitem
	rotate bool
}

func (s *Cluster) newTenantQueue() *tenantQueue {
	t := &s.wait
	less := func(a, b qitem) bool {
		if a.key != b.key {
			return a.key < b.key
		}
		return t.cmpID(a.slot, b.slot) < 0
	}
	free := btree.NewFreeListG[qitem](32)
	return &tenantQueue{
		shapes: make(map[shapeKey]*btree.BTreeG[qitem]),
		heads:  btree.NewWithFreeListG(32, less, free),
		free:   free, less: less,
		deadlined: make(map[slot]struct{}),
	}
}

// waitingOf is the decision's view of the entry in slot sl, made afresh:
// Decide may keep it in its plan. The caller holds mu.
func (s *Cluster) waitingOf(sl slot) *scheduler.Waiting {
	e := s.wait.at(sl)
	w := &scheduler.Waiting{
		ID: s.wait.id(sl), Tenant: s.tenantList[e.tenant].name, Resources: e.res,
		Selector: s.wait.selectors.get(e.selector), Key: e.key,
		Priority: e.priority, Attempt: e.attempt,
		Array: s.wait.arrays.get(e.array), ArrayLimit: e.arrayLimit,
		Created: e.created, Since: e.since, Deadline: e.deadline,
	}
	if e.tasks {
		if st := s.arrays[w.Array]; st != nil {
			w.Tasks = st.tasks
		} else {
			w.Tasks = &scheduler.Tasks{Array: w.Array}
		}
	}
	return w
}

// delayHeap orders the delayed entries by the end of their backoff. Each
// entry knows its index in it (entry.pos), so that it is taken out at
// once when it leaves.
type delayHeap struct {
	t     *waitTable
	slots []slot
}

func (h *delayHeap) Len() int { return len(h.slots) }
func (h *delayHeap) Less(i, j int) bool {
	return h.t.at(h.slots[i]).since < h.t.at(h.slots[j]).since
}
func (h *delayHeap) Swap(i, j int) {
	h.slots[i], h.slots[j] = h.slots[j], h.slots[i]
	h.t.at(h.slots[i]).pos = int32(i)
	h.t.at(h.slots[j]).pos = int32(j)
}
func (h *delayHeap) Push(x any) {
	sl := x.(slot)
	h.t.at(sl).pos = int32(len(h.slots))
	h.slots = append(h.slots, sl)
}
func (h *delayHeap) Pop() any {
	n := len(h.slots)
	sl := h.slots[n-1]
	h.slots = h.slots[:n-1]
	h.t.at(sl).pos = -1
	return sl
}

// tenantCount is what one tenant's unfinished jobs add up to.
type tenantCount struct {
	name      string        // the tenant's name, shared by its waiting jobs (see intern)
	idx       uint32        // its index in Cluster.tenantList, which entries hold
	Pending   int           // waiting jobs, unmaterialized array tasks included
	Scheduled int           // dispatched, not yet started
	Running   int           // started
	Asked     job.Resources // asked for by its waiting jobs
	Held      job.Resources // held by its Scheduled and Running jobs
	ready     readyAges     // its ready entries by when they became eligible
}

// arrayState is one array whose tasks are not all materialized.
type arrayState struct {
	rec *job.Array
	// tasks is what Decide draws from (immutable; replaced on change);
	// entry is its one entry in the tenant's queue, noSlot once none is
	// left or the array is cancelled.
	tasks *scheduler.Tasks
	entry slot
}

// file puts a waiting entry where it belongs at now: ready, delayed or
// blocked. The caller holds mu.
func (s *Cluster) file(sl slot, isBlocked bool, now time.Time) {
	e := s.wait.at(sl)
	switch {
	case isBlocked:
		e.at = blocked
	case e.since > now.UnixNano():
		e.at = delayed
		heap.Push(&s.delayed, sl)
	default:
		e.at = ready
		s.enqueue(sl)
	}
}

// enqueue adds the entry in slot sl, which was in no queue, to its
// tenant's ready queue, or to the parked entries of its shape when that
// shape is parked, and counts it in its tenant's ready ages.
func (s *Cluster) enqueue(sl slot) {
	e := s.wait.at(sl)
	s.tenantList[e.tenant].ready.add(s.eligibleAt(sl))
	if ps := s.parkedShapeOf(e); ps != nil {
		s.parkIn(ps, sl)
		return
	}
	s.insertReady(sl)
}

// insertReady adds the entry in slot sl to its tenant's ready queue.
func (s *Cluster) insertReady(sl slot) {
	e := s.wait.at(sl)
	tenant := s.tenantList[e.tenant].name
	q := s.queues[tenant]
	if q == nil {
		q = s.newTenantQueue()
		s.queues[tenant] = q
	}
	q.insert(qitem{e.key, sl}, s.shapeOf(e))
	if e.deadline != 0 && !e.tasks {
		// An array's entry is re-keyed when it is made again, as each of
		// its tasks is materialized; the tick re-keys waiting jobs.
		q.deadlined[sl] = struct{}{}
	}
}

// unfile takes the entry in slot sl out of wherever it is filed and frees
// its slot.
func (s *Cluster) unfile(sl slot) {
	switch e := s.wait.at(sl); e.at {
	case ready:
		s.tenantList[e.tenant].ready.remove(s.eligibleAt(sl))
		s.dequeue(sl)
	case parked:
		s.tenantList[e.tenant].ready.remove(s.eligibleAt(sl))
		s.unpark(sl)
	case delayed:
		heap.Remove(&s.delayed, int(e.pos))
	case blocked:
		delete(s.needs, s.wait.id(sl))
	}
	delete(s.unblocked, sl)
	s.wait.remove(sl)
}

// dequeue takes the entry in slot sl out of its tenant's queue.
func (s *Cluster) dequeue(sl slot) {
	e := s.wait.at(sl)
	tenant := s.tenantList[e.tenant].name
	q := s.queues[tenant]
	if q == nil {
		return
	}
	q.remove(qitem{e.key, sl}, s.shapeOf(e))
	delete(q.deadlined, sl)
	if q.n == 0 {
		delete(s.queues, tenant)
	}
}

// undelay moves the delayed entries whose backoff has ended to their
// queues and returns when the next one ends (zero: none).
func (s *Cluster) undelay(now time.Time) time.Time {
	n := now.UnixNano()
	for s.delayed.Len() > 0 {
		sl := s.delayed.slots[0]
		e := s.wait.at(sl)
		if e.since > n {
			return time.Unix(0, e.since)
		}
		heap.Pop(&s.delayed)
		e.at = ready
		s.enqueue(sl)
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
		for sl := range q.deadlined {
			e := s.wait.at(sl)
			w := scheduler.Waiting{Key: e.key, Priority: e.priority, Created: e.created, Since: e.since, Deadline: e.deadline}
			key := w.Rekey(now, s.cfg.Aging).Key
			if key == e.key {
				continue
			}
			k := s.shapeOf(e)
			q.remove(qitem{e.key, sl}, k)
			e.key = key
			q.insert(qitem{key, sl}, k)
		}
	}
}

// count returns a tenant's counts, creating them.
func (s *Cluster) count(tenant string) *tenantCount {
	c := s.counts[tenant]
	if c == nil {
		s.intern(tenant)
		c = s.counts[tenant]
	}
	return c
}

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
