package cluster

import (
	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// Parking, as Nomad's blocked evaluations: a ready entry whose shape
// (resources and selector) no ready worker could ever take, by capacity
// and labels whatever the workers run, is taken out of its tenant's queue
// and kept aside with the other entries of its shape. A pass reads a
// bounded stretch of each tenant's queue (see scheduler.Decide), so
// without it a few hundred jobs pinned to a host that is down, or
// thousands of one such shape, would use up that stretch on every pass
// and hide the jobs behind them for good.
//
//   - A pass's walk of a queue (tenantQueue.seq) asks, per shape and once
//     per generation of the workers, whether a ready worker could take it
//     (scheduler.Placeable). An entry none could take is not shown to
//     Decide; it is parked after Decide returns, at most maxParkPerPass a
//     pass: a pass that parked that many asks for the next one at once, so
//     a million such entries cost a few passes of bounded cost, once, and
//     nothing after.
//   - A new entry of a shape that is parked goes straight to the others.
//   - A parked shape goes back to the queues, all its entries in their
//     places, when a worker that changed since the last pass (it joined,
//     connected, was undrained, or its labels or capacity changed; see
//     workerMap.takeChanged) is ready and could take it. A change that
//     takes workers away parks nothing by itself: the walks find out.
//
// Parking is memory only and derived: after a restart every Pending job
// is back in its queue and the first passes park again what no worker
// can take. A parked job still answers Why (it is unplaceable, and says
// why), is counted, listed and cancelled as any waiting job.
//
// All of it is guarded by Cluster.mu; only the pass reads fit.

// maxParkPerPass bounds the entries one pass parks (and the walk steps
// it spends on them).
const maxParkPerPass = 16384

// maxFitShapes bounds the verdicts fitCache keeps per generation; past it
// they start over.
const maxFitShapes = 65536

// parking is the parked entries by shape, and what the pass needs to park
// more. See above.
type parking struct {
	shapes map[shapeKey]*parkedShape
	n      int // entries parked
	fit    fitCache
	walked []slot // found unplaceable by this pass's walks, parked after Decide
	full   bool   // walked holds maxParkPerPass: the next pass is due at once
	cut    bool   // a walk was cut before it came round (walk.go): the same
}

// parkedShape is the parked entries of one shape, in no order; each
// entry's pos is its index here.
type parkedShape struct {
	res   job.Resources
	sel   map[string]string // never modified
	slots []slot
}

// fitCache says, for one generation of the workers, which shapes a ready
// worker could take.
type fitCache struct {
	valid   bool
	gen     uint64
	workers []scheduler.WorkerStatus // the ready workers at gen
	shapes  map[shapeKey]bool
}

// shapeOf returns the shape of entry e. The caller holds mu.
func (s *Cluster) shapeOf(e *entry) shapeKey {
	return shapeKey{e.res, s.wait.selectors.key(e.selector)}
}

// refreshParking brings parking up to the workers before a pass walks the
// queues: the parked shapes a changed worker could take go back to their
// queues, and the verdicts are taken afresh if the workers changed. The
// changed workers are taken before the workers are read, so that a change
// the read misses is in the next pass's list. The caller holds mu.
func (s *Cluster) refreshParking() {
	changed := s.workers.takeChanged()
	if len(s.park.shapes) > 0 {
		for _, id := range changed {
			w, ok := s.workers.Load(id)
			if !ok || !w.connected || w.state != job.WorkerReady {
				continue
			}
			ws := []scheduler.WorkerStatus{{Labels: w.rec.Labels, Capacity: w.rec.Capacity, State: w.state, Connected: w.connected}}
			for key, ps := range s.park.shapes {
				if scheduler.Placeable(ps.res, ps.sel, ws) {
					s.unparkShape(key, ps)
				}
			}
		}
	}
	f := &s.park.fit
	gen := s.workers.generation() // before the walk: a change during it moves it again
	if f.valid && f.gen == gen {
		return
	}
	f.workers = f.workers[:0]
	s.workers.Range(func(_ string, w *workerState) bool {
		if w.connected && w.state == job.WorkerReady {
			f.workers = append(f.workers, scheduler.WorkerStatus{Labels: w.rec.Labels, Capacity: w.rec.Capacity, State: w.state, Connected: w.connected})
		}
		return true
	})
	f.valid, f.gen = true, gen
	if f.shapes == nil {
		f.shapes = make(map[shapeKey]bool)
	} else {
		clear(f.shapes)
	}
}

// placeable reports whether a ready worker could take the shape of entry
// e, as of the last refreshParking. The caller holds mu (the pass).
func (s *Cluster) placeable(e *entry) bool {
	f := &s.park.fit
	key := s.shapeOf(e)
	if v, ok := f.shapes[key]; ok {
		return v
	}
	v := scheduler.Placeable(e.res, s.wait.selectors.get(e.selector), f.workers)
	if len(f.shapes) >= maxFitShapes {
		clear(f.shapes)
	}
	f.shapes[key] = v
	return v
}

// parkLater notes that a walk found the entry in slot sl unplaceable, and
// reports whether the walk may go on: false once the pass has noted as
// many as it parks. The caller holds mu (the pass).
func (s *Cluster) parkLater(sl slot) bool {
	if len(s.park.walked) >= maxParkPerPass {
		s.park.full = true
		return false
	}
	s.park.walked = append(s.park.walked, sl)
	return true
}

// parkWalked parks what the pass's walks found unplaceable, and reports
// whether there may be more: the next pass is then due at once. The caller
// holds mu.
func (s *Cluster) parkWalked() (more bool) {
	for _, sl := range s.park.walked {
		e := s.wait.at(sl)
		if e.at != ready {
			continue
		}
		s.dequeue(sl)
		key := s.shapeOf(e)
		ps := s.park.shapes[key]
		if ps == nil {
			if s.park.shapes == nil {
				s.park.shapes = make(map[shapeKey]*parkedShape)
			}
			ps = &parkedShape{res: e.res, sel: s.wait.selectors.get(e.selector)}
			s.park.shapes[key] = ps
		}
		s.parkIn(ps, sl)
	}
	s.park.walked = s.park.walked[:0]
	more = s.park.full || s.park.cut
	s.park.full, s.park.cut = false, false
	return more
}

// parkIn adds the entry in slot sl, in no queue, to ps.
func (s *Cluster) parkIn(ps *parkedShape, sl slot) {
	e := s.wait.at(sl)
	e.at, e.pos = parked, int32(len(ps.slots))
	ps.slots = append(ps.slots, sl)
	s.park.n++
}

// parkedShapeOf returns the parked shape of entry e when it has one.
func (s *Cluster) parkedShapeOf(e *entry) *parkedShape {
	if len(s.park.shapes) == 0 {
		return nil
	}
	return s.park.shapes[s.shapeOf(e)]
}

// unpark takes the parked entry in slot sl out of its shape's list; the
// caller then files or frees it.
func (s *Cluster) unpark(sl slot) {
	e := s.wait.at(sl)
	key := s.shapeOf(e)
	ps := s.park.shapes[key]
	i, last := int(e.pos), len(ps.slots)-1
	if i != last {
		moved := ps.slots[last]
		ps.slots[i] = moved
		s.wait.at(moved).pos = int32(i)
	}
	ps.slots = ps.slots[:last]
	e.pos = -1
	s.park.n--
	if len(ps.slots) == 0 {
		delete(s.park.shapes, key)
	}
}

// unparkShape puts every parked entry of a shape back in its queue.
func (s *Cluster) unparkShape(key shapeKey, ps *parkedShape) {
	delete(s.park.shapes, key)
	for _, sl := range ps.slots {
		e := s.wait.at(sl)
		e.at, e.pos = ready, -1
		s.insertReady(sl)
	}
	s.park.n -= len(ps.slots)
}
