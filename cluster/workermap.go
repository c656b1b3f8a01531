package cluster

import (
	"maps"
	"sync"
	"sync/atomic"

	"github.com/google/btree"
	"github.com/puzpuzpuz/xsync/v3"
)

// workerMap holds the live workers by id (immutable values), and a
// generation that moves whenever what an explanation of a waiting job
// reads of a worker changes: one joins or leaves, its labels or capacity
// change, it is drained or undrained, connects or disconnects, goes DOWN.
// Heartbeats move nothing. The reasons of waiting jobs (see reasons.go)
// are cached for one generation, so that reading them costs a lookup, and
// any change made through Store, Compute or Delete shows in them at once.
//
// It also remembers which workers changed since the dispatch loop last
// asked (takeChanged): the loop puts back in their queues the parked jobs
// (see park.go) that one of them could take now.
//
// It keeps the ids in order too, so that a page of workers (WorkerPage)
// is found in O(page) among ten thousand.
//
// Change the map only through those three methods; the other writers of
// the embedded map neither move the generation nor keep the order.
type workerMap struct {
	*xsync.MapOf[string, *workerState]
	gen atomic.Uint64

	idsMu sync.RWMutex          // guards ids; taken inside the map's Compute, never the other way round
	ids   *btree.BTreeG[string] // the ids the map holds, in order

	changedMu sync.Mutex
	changed   map[string]struct{} // guarded by changedMu: ids changed since takeChanged
}

func newWorkerMap() *workerMap {
	return &workerMap{MapOf: xsync.NewMapOf[string, *workerState](), ids: btree.NewOrderedG[string](32)}
}

// Store sets a worker's state.
func (m *workerMap) Store(id string, w *workerState) {
	m.MapOf.Compute(id, func(_ *workerState, loaded bool) (*workerState, bool) {
		if !loaded {
			m.order(id, true)
		}
		return w, false
	})
	m.moved(id)
}

// Delete forgets a worker.
func (m *workerMap) Delete(id string) {
	m.MapOf.Compute(id, func(old *workerState, loaded bool) (*workerState, bool) {
		if loaded {
			m.order(id, false)
		}
		return old, true
	})
	m.moved(id)
}

// order adds id to the ordered ids, or takes it out. It is called inside
// the map's Compute for id, so that the order changes with the map.
func (m *workerMap) order(id string, add bool) {
	m.idsMu.Lock()
	if add {
		m.ids.ReplaceOrInsert(id)
	} else {
		m.ids.Delete(id)
	}
	m.idsMu.Unlock()
}

// after returns up to limit ids in order after the id after (from the
// first when after is ""), and whether more follow. It costs
// O(limit + log n).
func (m *workerMap) after(after string, limit int) (ids []string, more bool) {
	m.idsMu.RLock()
	defer m.idsMu.RUnlock()
	visit := func(id string) bool {
		if id == after {
			return true
		}
		ids = append(ids, id)
		return len(ids) <= limit // one more than the page: whether more follow
	}
	if after == "" {
		m.ids.Ascend(visit)
	} else {
		m.ids.AscendGreaterOrEqual(after, visit)
	}
	if len(ids) > limit {
		return ids[:limit], true
	}
	return ids, false
}

// Compute is xsync.MapOf.Compute, moving the generation when fn changed
// what explanations read of the worker.
func (m *workerMap) Compute(id string, fn func(old *workerState, loaded bool) (*workerState, bool)) (*workerState, bool) {
	changed := false
	v, ok := m.MapOf.Compute(id, func(old *workerState, loaded bool) (*workerState, bool) {
		n, del := fn(old, loaded)
		switch {
		case del:
			changed = loaded
			if loaded {
				m.order(id, false)
			}
		case !loaded:
			changed = true
			m.order(id, true)
		default:
			changed = !samePlacement(old, n)
		}
		return n, del
	})
	if changed {
		m.moved(id)
	}
	return v, ok
}

// moved records that worker id changed after the map holds the change:
// the generation moves and the id is remembered until takeChanged.
func (m *workerMap) moved(id string) {
	m.gen.Add(1)
	m.changedMu.Lock()
	if m.changed == nil {
		m.changed = make(map[string]struct{})
	}
	m.changed[id] = struct{}{}
	m.changedMu.Unlock()
}

// takeChanged returns the ids of the workers changed since the last call
// (in no order) and forgets them. A change that lands during the call is
// either in its answer or in the next one's, and the map holds it before
// it is in either.
func (m *workerMap) takeChanged() []string {
	m.changedMu.Lock()
	defer m.changedMu.Unlock()
	if len(m.changed) == 0 {
		return nil
	}
	ids := make([]string, 0, len(m.changed))
	for id := range m.changed {
		ids = append(ids, id)
	}
	clear(m.changed)
	return ids
}

// generation returns the current generation.
func (m *workerMap) generation() uint64 { return m.gen.Load() }

// samePlacement reports whether a and b look the same to placement: state,
// connection, labels and capacity.
func samePlacement(a, b *workerState) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil {
		return false
	}
	return a.state == b.state && a.connected == b.connected &&
		(a.rec == b.rec || a.rec.Capacity == b.rec.Capacity && maps.Equal(a.rec.Labels, b.rec.Labels))
}
