package cluster

import "github.com/google/btree"

// readyAges counts one tenant's ready entries (in its queue or parked:
// dependencies met, backoff over) by the second they became eligible, so
// that the age of its longest-waiting one costs O(log s) to read, for s
// distinct seconds, whatever the number of jobs: /metrics reads it on
// every scrape. An entry costs two tree operations on a tree of seconds,
// not of jobs. Its zero value is ready to use; the caller holds
// Cluster.mu.
type readyAges struct {
	secs *btree.BTreeG[ageBucket] // nil until the first entry
}

// ageBucket is how many ready entries became eligible in one second.
type ageBucket struct {
	sec int64 // Unix seconds
	n   int
}

// add counts d (1 or -1) entries eligible since ns (Unix nanoseconds).
func (a *readyAges) add(ns int64, d int) {
	sec := ns / 1e9
	if ns < 0 && ns%1e9 != 0 {
		sec-- // floor, as time.Unix does
	}
	if a.secs == nil {
		a.secs = btree.NewG(16, func(x, y ageBucket) bool { return x.sec < y.sec })
	}
	b, _ := a.secs.Get(ageBucket{sec: sec})
	b.sec, b.n = sec, b.n+d
	if b.n <= 0 {
		a.secs.Delete(b)
		return
	}
	a.secs.ReplaceOrInsert(b)
}

// oldest returns the second the longest-waiting entry became eligible;
// ok is false when there is none.
func (a *readyAges) oldest() (sec int64, ok bool) {
	if a.secs == nil {
		return 0, false
	}
	b, ok := a.secs.Min()
	return b.sec, ok
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
