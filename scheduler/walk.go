package scheduler

import (
	"iter"

	"github.com/hodei-jobs/hodei/job"
)

// Walk reads one tenant's waiting work for one pass, best first, and can
// leave out the rest of a shape at once: once a pass knows a shape
// (resources and selector) fits no worker's free room, its later entries
// cost it nothing. The live cluster keeps each shape of a tenant's queue
// in an index of its own, so that passing over a backlog of one shape is
// one step, not one per entry.
type Walk interface {
	// Next returns the next entry, or false when the walk is done.
	Next() (*Waiting, bool)
	// SkipShape leaves out, for the rest of the walk, the entries of the
	// shape of the entry Next returned last.
	SkipShape()
	// Stop ends the walk; cut reports that the pass stopped reading it
	// because its budget of entries that found no room ran out (see
	// maxSkips), not because it was done or the cluster was full.
	Stop(cut bool)
}

// Walks opens a Walk of each tenant's queue for a pass.
type Walks map[string]func() Walk

// seqWalk is a Walk over a Queue: it leaves out a skipped shape by
// looking at each entry (the path of tests and tools; the cluster's walk
// has an index).
type seqWalk struct {
	next    func() (*Waiting, bool)
	stop    func()
	last    *Waiting
	skipped map[shapeOf]bool
}

// shapeOf is what a job asks of a worker.
type shapeOf struct {
	res      job.Resources
	selector string
}

func keyOf(w *Waiting) shapeOf { return shapeOf{w.Resources, SelectorKey(w.Selector)} }

// WalkOf returns a Walk over q.
func WalkOf(q Queue) Walk {
	next, stop := iter.Pull(q)
	return &seqWalk{next: next, stop: stop}
}

func (s *seqWalk) Next() (*Waiting, bool) {
	for {
		w, ok := s.next()
		if !ok {
			return nil, false
		}
		if s.skipped != nil && s.skipped[keyOf(w)] {
			continue
		}
		s.last = w
		return w, true
	}
}

func (s *seqWalk) SkipShape() {
	if s.last == nil {
		return
	}
	if s.skipped == nil {
		s.skipped = make(map[shapeOf]bool)
	}
	s.skipped[keyOf(s.last)] = true
}

func (s *seqWalk) Stop(bool) { s.stop() }
