package cluster

import (
	"github.com/google/btree"

	"github.com/hodei-jobs/hodei/scheduler"
)

// A tenant's ready queue is kept per shape (resources and selector): one
// ordered index of each shape's entries, and one of the first entry of
// each shape (heads). A pass reads the queue as the merge of the shapes
// in queue order (queueWalk), and once it finds a shape fits no worker's
// free room it leaves the rest of that shape out at once
// (scheduler.Walk.SkipShape): a backlog of one shape waiting for a busy
// worker costs a pass one step, not one per job, and hides nothing
// behind it. A pass stops reading a tenant after a bounded number of
// distinct shapes that found no room (see scheduler.Decide); its walk is
// then cut, and the next walk of the queue starts after the last shape
// it tried and comes round to the others last, so that a job that fits
// free room is reached within a few passes however many shapes waiting
// for busy workers are ahead of it. A cut walk that has not come round
// yet asks for the next pass at once (parking.cut).

// insert adds it, an entry of shape k, to the queue.
func (q *tenantQueue) insert(it qitem, k shapeKey) {
	t := q.shapes[k]
	if t == nil {
		t = btree.NewWithFreeListG(32, q.less, q.free)
		q.shapes[k] = t
	}
	head, had := t.Min()
	if _, replaced := t.ReplaceOrInsert(it); !replaced {
		q.n++
	}
	if !had || q.less(it, head) {
		if had {
			q.heads.Delete(head)
		}
		q.heads.ReplaceOrInsert(it)
	}
}

// remove takes it, an entry of shape k, out of the queue.
func (q *tenantQueue) remove(it qitem, k shapeKey) {
	t := q.shapes[k]
	if t == nil {
		return
	}
	head, _ := t.Min()
	if _, ok := t.Delete(it); !ok {
		return
	}
	q.n--
	if head != it {
		return
	}
	q.heads.Delete(it)
	if next, ok := t.Min(); ok {
		q.heads.ReplaceOrInsert(next)
	} else {
		delete(q.shapes, k)
	}
}

// walkItem is an entry a walk has yet to return, and the index of its
// shape.
type walkItem struct {
	it   qitem
	tree *btree.BTreeG[qitem]
}

// queueWalk is a pass's walk of one tenant's queue (a scheduler.Walk):
// the shapes' heads in order, merged with the next entry of each shape
// already started (pending). The caller holds Cluster.mu throughout.
type queueWalk struct {
	s       *Cluster
	q       *tenantQueue
	pending []walkItem // a min-heap by queue order
	// The heads already taken are those up to pivot (all of them when
	// hasPivot is false and the walk has begun). A rotated walk (after a
	// cut) takes the heads after from first, then wraps round to those up
	// to from.
	pivot    qitem
	hasPivot bool
	head     qitem // the next head, when headOK
	headOK   bool
	from     qitem
	rotated  bool
	wrapped  bool
	tried    qitem // the last head taken
	triedOK  bool
	cur      walkItem // returned last
	curOK    bool
	skip     bool // the rest of cur's shape is left out
	finished bool
}

// walk opens a walk of q for a pass. The caller holds mu.
func (s *Cluster) walk(q *tenantQueue) scheduler.Walk {
	w := &queueWalk{s: s, q: q}
	if q.rotate {
		w.from, w.rotated = q.resume, true
		w.pivot, w.hasPivot = q.resume, true
	}
	return w
}

// peekHead returns the next head to take.
func (w *queueWalk) peekHead() (qitem, bool) {
	if w.headOK {
		return w.head, true
	}
	for {
		var out qitem
		found := false
		fn := func(it qitem) bool {
			if w.hasPivot && !w.q.less(w.pivot, it) {
				return true
			}
			out, found = it, true
			return false
		}
		if w.hasPivot {
			w.q.heads.AscendGreaterOrEqual(w.pivot, fn)
		} else {
			w.q.heads.Ascend(fn)
		}
		if found && w.wrapped && w.q.less(w.from, out) {
			found = false // came round to where it began
		}
		if found {
			w.head, w.headOK = out, true
			return out, true
		}
		if w.rotated && !w.wrapped {
			w.wrapped, w.hasPivot = true, false
			continue
		}
		return qitem{}, false
	}
}

// Next returns the next entry in queue order, leaving out the shapes
// skipped and parking those no ready worker could take (see park.go).
func (w *queueWalk) Next() (*scheduler.Waiting, bool) {
	if w.finished {
		return nil, false
	}
	if w.curOK && !w.skip {
		w.follow(w.cur)
	}
	w.curOK, w.skip = false, false
	s := w.s
	for {
		h, hok := w.peekHead()
		var wi walkItem
		switch {
		case len(w.pending) > 0 && (!hok || w.q.less(w.pending[0].it, h)):
			wi = w.pop()
		case hok:
			w.headOK = false
			w.pivot, w.hasPivot = h, true
			w.tried, w.triedOK = h, true
			e := s.wait.at(h.slot)
			wi = walkItem{h, w.q.shapes[s.shapeOf(e)]}
			if !s.placeable(e) {
				if !w.parkAll(wi.tree) {
					w.finished = true
					return nil, false
				}
				continue
			}
		default:
			w.finished = true
			return nil, false
		}
		w.cur, w.curOK = wi, true
		return s.waitingOf(wi.it.slot), true
	}
}

// parkAll notes every entry of a shape no ready worker could take to be
// parked after the pass, and reports whether the walk may go on (see
// parkLater).
func (w *queueWalk) parkAll(t *btree.BTreeG[qitem]) bool {
	ok := true
	t.Ascend(func(it qitem) bool {
		ok = w.s.parkLater(it.slot)
		return ok
	})
	return ok
}

// follow adds the entry after wi in its shape to pending.
func (w *queueWalk) follow(wi walkItem) {
	var next qitem
	found := false
	wi.tree.AscendGreaterOrEqual(wi.it, func(it qitem) bool {
		if it == wi.it {
			return true
		}
		next, found = it, true
		return false
	})
	if found {
		w.push(walkItem{next, wi.tree})
	}
}

// SkipShape leaves out the rest of the shape of the entry returned last.
func (w *queueWalk) SkipShape() { w.skip = true }

// Stop ends the walk; a cut walk makes the next one start after the last
// shape it tried, and asks for it at once unless it came round already.
func (w *queueWalk) Stop(cut bool) {
	q := w.q
	switch {
	case cut && w.triedOK:
		q.resume, q.rotate = w.tried, true
		if !w.wrapped {
			w.s.park.cut = true
		}
	case !cut:
		q.rotate = false
	}
}

func (w *queueWalk) push(wi walkItem) {
	h := append(w.pending, wi)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !w.q.less(h[i].it, h[p].it) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	w.pending = h
}

func (w *queueWalk) pop() walkItem {
	h := w.pending
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(h) && w.q.less(h[l].it, h[m].it) {
			m = l
		}
		if r := l + 1; r < len(h) && w.q.less(h[r].it, h[m].it) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	w.pending = h
	return top
}

// each calls fn for every entry of the queue, shape by shape, until fn
// returns false.
func (q *tenantQueue) each(fn func(qitem) bool) {
	for _, t := range q.shapes {
		ok := true
		t.Ascend(func(it qitem) bool {
			ok = fn(it)
			return ok
		})
		if !ok {
			return
		}
	}
}
