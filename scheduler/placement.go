package scheduler

import (
	"cmp"
	"slices"

	"github.com/hodei-jobs/hodei/job"
)

// placer finds the best feasible worker for each job of a pass. Workers
// are bucketed by free slots, each bucket in id order, so that a job looks
// first at the workers placement prefers — fewest free slots for bin-pack,
// most for spread — and usually takes the first one whose cpu, memory and
// labels fit, instead of scanning every worker. The result is the same as
// a full scan ranking by free slots, then id. Only the free-slot values
// that occur have a bucket, so a worker offering millions of slots costs
// no more than one offering eight.
type placer struct {
	workers []WorkerView
	slots   []int64         // the free-slot values that have a bucket, ascending
	buckets map[int64][]int // free slots → indices into workers, sorted by worker id
	spread  bool
}

func newPlacer(ws []WorkerView, p Placement) *placer {
	pl := &placer{workers: slices.Clone(ws), buckets: make(map[int64][]int), spread: p == Spread}
	order := make([]int, len(pl.workers))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(pl.workers[a].ID, pl.workers[b].ID) })
	for _, i := range order {
		if s := pl.workers[i].Free.Slots; s > 0 {
			if _, ok := pl.buckets[s]; !ok {
				pl.slots = append(pl.slots, s)
			}
			pl.buckets[s] = append(pl.buckets[s], i)
		}
	}
	slices.Sort(pl.slots)
	return pl
}

// place returns the index of the best feasible worker for j, or -1.
func (pl *placer) place(j *Waiting) int {
	need := max(j.Resources.Slots, 1)
	first, _ := slices.BinarySearch(pl.slots, need) // the first bucket with room
	try := func(s int64) int {
		for _, i := range pl.buckets[s] {
			w := &pl.workers[i]
			if w.Free.Covers(j.Resources) && job.LabelsMatch(w.Labels, j.Selector) {
				return i
			}
		}
		return -1
	}
	if pl.spread {
		for k := len(pl.slots) - 1; k >= first; k-- {
			if i := try(pl.slots[k]); i >= 0 {
				return i
			}
		}
		return -1
	}
	for k := first; k < len(pl.slots); k++ {
		if i := try(pl.slots[k]); i >= 0 {
			return i
		}
	}
	return -1
}

// take books req on worker i and moves it to the bucket of its new free
// slots.
func (pl *placer) take(i int, req job.Resources) {
	w := &pl.workers[i]
	pl.move(w.Free.Slots, i, false)
	w.Free = w.Free.Sub(req)
	if w.Free.Slots > 0 {
		pl.move(w.Free.Slots, i, true)
	}
}

// move adds worker i to, or removes it from, the bucket of slots.
func (pl *placer) move(slots int64, i int, add bool) {
	b := pl.buckets[slots]
	at, found := slices.BinarySearchFunc(b, pl.workers[i].ID, func(k int, id string) int { return cmp.Compare(pl.workers[k].ID, id) })
	switch {
	case add && !found:
		if len(b) == 0 {
			k, _ := slices.BinarySearch(pl.slots, slots)
			pl.slots = slices.Insert(pl.slots, k, slots)
		}
		pl.buckets[slots] = slices.Insert(b, at, i)
	case !add && found:
		b = slices.Delete(b, at, at+1)
		pl.buckets[slots] = b
		if len(b) == 0 { // the empty slice stays, to be reused
			k, _ := slices.BinarySearch(pl.slots, slots)
			pl.slots = slices.Delete(pl.slots, k, k+1)
		}
	}
}

// id returns the id of worker i.
func (pl *placer) id(i int) string { return pl.workers[i].ID }

// reserve holds back, for the rest of the pass, the worker that comes
// closest to fitting j (most free slots among those whose capacity and
// labels could take it), so that small jobs do not keep fragmenting it
// while j's tenant waits for room. It returns the worker's index, or -1
// when no worker could ever take j.
func (pl *placer) reserve(j *Waiting) int {
	best := -1
	for i, w := range pl.workers {
		if !w.Capacity.Covers(j.Resources) || !job.LabelsMatch(w.Labels, j.Selector) {
			continue
		}
		if best < 0 || w.Free.Slots > pl.workers[best].Free.Slots ||
			(w.Free.Slots == pl.workers[best].Free.Slots && w.ID < pl.workers[best].ID) {
			best = i
		}
	}
	if best >= 0 && pl.workers[best].Free.Slots > 0 {
		pl.move(pl.workers[best].Free.Slots, best, false)
	}
	return best
}

// index returns the index of the worker with the given id, or -1.
func (pl *placer) index(id string) int {
	for i := range pl.workers {
		if pl.workers[i].ID == id {
			return i
		}
	}
	return -1
}
