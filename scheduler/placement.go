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
// a full scan ranking by free slots, then id.
type placer struct {
	workers []WorkerView
	buckets [][]int // free slots → indices into workers, sorted by worker id
	spread  bool
}

func newPlacer(ws []WorkerView, p Placement) *placer {
	pl := &placer{workers: slices.Clone(ws), spread: p == Spread}
	var most int64
	for _, w := range pl.workers {
		most = max(most, w.Free.Slots)
	}
	pl.buckets = make([][]int, most+1)
	order := make([]int, len(pl.workers))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(pl.workers[a].ID, pl.workers[b].ID) })
	for _, i := range order {
		if s := pl.workers[i].Free.Slots; s > 0 {
			pl.buckets[s] = append(pl.buckets[s], i)
		}
	}
	return pl
}

// place returns the index of the best feasible worker for j, or -1.
func (pl *placer) place(j *job.Job) int {
	need := max(j.Spec.Resources.Slots, 1)
	if need >= int64(len(pl.buckets)) {
		return -1
	}
	try := func(s int64) int {
		for _, i := range pl.buckets[s] {
			w := &pl.workers[i]
			if w.Free.Covers(j.Spec.Resources) && job.LabelsMatch(w.Labels, j.Spec.Selector) {
				return i
			}
		}
		return -1
	}
	if pl.spread {
		for s := int64(len(pl.buckets)) - 1; s >= need; s-- {
			if i := try(s); i >= 0 {
				return i
			}
		}
		return -1
	}
	for s := need; s < int64(len(pl.buckets)); s++ {
		if i := try(s); i >= 0 {
			return i
		}
	}
	return -1
}

// take books req on worker i and moves it to the bucket of its new free
// slots.
func (pl *placer) take(i int, req job.Resources) {
	w := &pl.workers[i]
	pl.remove(w.Free.Slots, i)
	w.Free = w.Free.Sub(req)
	if s := w.Free.Slots; s > 0 {
		b := pl.buckets[s]
		at, _ := slices.BinarySearchFunc(b, w.ID, func(k int, id string) int { return cmp.Compare(pl.workers[k].ID, id) })
		pl.buckets[s] = slices.Insert(b, at, i)
	}
}

func (pl *placer) remove(slots int64, i int) {
	b := pl.buckets[slots]
	at, found := slices.BinarySearchFunc(b, pl.workers[i].ID, func(k int, id string) int { return cmp.Compare(pl.workers[k].ID, id) })
	if found {
		pl.buckets[slots] = slices.Delete(b, at, at+1)
	}
}

// id returns the id of worker i.
func (pl *placer) id(i int) string { return pl.workers[i].ID }
