package cluster

import (
	"maps"
	"sync/atomic"

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
// Change the map only through those three methods; the other writers of
// the embedded map do not move the generation.
type workerMap struct {
	*xsync.MapOf[string, *workerState]
	gen atomic.Uint64
}

func newWorkerMap() *workerMap {
	return &workerMap{MapOf: xsync.NewMapOf[string, *workerState]()}
}

// Store sets a worker's state.
func (m *workerMap) Store(id string, w *workerState) {
	m.MapOf.Store(id, w)
	m.gen.Add(1)
}

// Delete forgets a worker.
func (m *workerMap) Delete(id string) {
	m.MapOf.Delete(id)
	m.gen.Add(1)
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
		case !loaded:
			changed = true
		default:
			changed = !samePlacement(old, n)
		}
		return n, del
	})
	if changed {
		m.gen.Add(1)
	}
	return v, ok
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
