package cluster

import (
	"cmp"
	"slices"
)

// readyAges counts one tenant's ready entries (in its queue or parked:
// dependencies met, backoff over) by the second they became eligible, so
// that the age of its longest-waiting one is read in O(1), whatever the
// number of jobs: /metrics reads it on every scrape.
//
// The seconds are a sorted slice. Entries become eligible at about the
// time they are filed (a submit, the end of a backoff, a dependency met;
// a restart files them in id order, which is time order), so an add
// almost always lands on the last second or a new one after it: O(1). A
// removal finds its second by binary search. A second left empty stays in
// place, since an array's entry is taken out and filed again at its old
// second each time one of its tasks is dispatched: empty seconds are
// dropped at once at the end, and all together once they are half the
// slice. A second costs 8 bytes, 16 at most with the slice's room to grow,
// which matters only when nearly every job has a second of its own
// (BenchmarkQueuedHeap spreads a million jobs over an hour). Its zero value
// is ready to use; the caller holds Cluster.mu.
type readyAges struct {
	base  int64       // Unix second the offsets count from
	secs  []ageBucket // by off, ascending; the last one is not empty
	first int         // index of the first bucket that is not empty; len(secs) when none
	empty int         // empty buckets in secs
}

// ageBucket is how many ready entries became eligible in the second
// base+off.
type ageBucket struct {
	off int32 // seconds from readyAges.base: ±68 years
	n   int32
}

// compactAges is how many empty seconds a readyAges keeps at least before
// it drops them all (when they are also half its seconds).
const compactAges = 64

// add counts one entry eligible since ns (Unix nanoseconds).
func (a *readyAges) add(ns int64) {
	if len(a.secs) == 0 {
		a.base = unixSecond(ns)
	}
	off := a.offset(ns)
	last := len(a.secs) - 1
	switch {
	case last < 0 || a.secs[last].off < off:
		a.secs = append(a.secs, ageBucket{off: off, n: 1})
		if last < 0 {
			a.first = 0
		}
		return
	case a.secs[last].off == off:
		a.secs[last].n++
		return
	}
	i, found := a.find(off)
	if !found {
		a.secs = slices.Insert(a.secs, i, ageBucket{off: off})
		if i <= a.first {
			a.first++ // shifted; set to i below
		}
	} else if a.secs[i].n == 0 {
		a.empty--
	}
	a.secs[i].n++
	a.first = min(a.first, i)
}

// remove takes away one entry that add counted with the same ns.
func (a *readyAges) remove(ns int64) {
	i, found := a.find(a.offset(ns))
	if !found || a.secs[i].n == 0 {
		return // never added: nothing to take away
	}
	if a.secs[i].n--; a.secs[i].n > 0 {
		return
	}
	if i == len(a.secs)-1 {
		a.secs = a.secs[:i]
		for len(a.secs) > 0 && a.secs[len(a.secs)-1].n == 0 {
			a.secs = a.secs[:len(a.secs)-1]
			a.empty--
		}
		a.first = min(a.first, len(a.secs))
		if len(a.secs) == 0 && cap(a.secs) > 1024 {
			a.secs = nil // a large backlog drained: let its memory go
		}
		return
	}
	a.empty++
	for a.secs[a.first].n == 0 { // ends: the last bucket is not empty
		a.first++
	}
	if a.empty >= compactAges && 2*a.empty >= len(a.secs) {
		a.secs = slices.DeleteFunc(a.secs, func(b ageBucket) bool { return b.n == 0 })
		a.empty, a.first = 0, 0
	}
}

// oldest returns the second the longest-waiting entry became eligible;
// ok is false when there is none.
func (a *readyAges) oldest() (sec int64, ok bool) {
	if a.first >= len(a.secs) {
		return 0, false
	}
	return a.base + int64(a.secs[a.first].off), true
}

// offset returns the offset of the second of ns from base.
func (a *readyAges) offset(ns int64) int32 { return int32(unixSecond(ns) - a.base) }

// find returns the index of off in secs, or where it would go.
func (a *readyAges) find(off int32) (int, bool) {
	return slices.BinarySearchFunc(a.secs, off, func(b ageBucket, off int32) int { return cmp.Compare(b.off, off) })
}

// unixSecond returns the Unix second of ns, rounded down as time.Unix does.
func unixSecond(ns int64) int64 {
	sec := ns / 1e9
	if ns < 0 && ns%1e9 != 0 {
		sec--
	}
	return sec
}

// eligibleAt is when the waiting entry in slot sl became eligible to run,
// in Unix nanoseconds: its submit or the end of its backoff (its since),
// or, for one that waited for dependencies, when they let it run. The
// caller holds mu.
func (s *Cluster) eligibleAt(sl slot) int64 {
	at := s.wait.at(sl).since
	if u, ok := s.unblocked[sl]; ok && u > at {
		at = u
	}
	return at
}
