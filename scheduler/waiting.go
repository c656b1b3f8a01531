package scheduler

import (
	"cmp"
	"iter"
	"slices"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// Waiting is a job that waits for a worker, as a decision sees it: only
// what ordering, quotas and placement need. The full job stays in the
// store until it is dispatched. (The cluster keeps its backlog in a
// compact form of its own and makes a Waiting for each entry a pass
// looks at.) Values are immutable once shared: change a copy.
//
// One Waiting may also stand for all the tasks of an array that have not
// been materialized as jobs yet (Tasks set): Decide then draws them one by
// one, in index order, from that single entry.
type Waiting struct {
	ID        string
	Tenant    string
	Resources job.Resources
	// Selector is the labels a worker must have; entries that ask the same
	// may share one map, which is never modified.
	Selector map[string]string
	// Key orders the jobs of one tenant: lower first, then lower ID. See
	// KeyOf.
	Key      int64
	Priority int32
	Attempt  int32
	// Array is set for a job of an array; ArrayLimit is its limit on how
	// many of its jobs run at once (0: none).
	Array      string
	ArrayLimit int32
	// Position is, for a task of an array not yet materialized (see
	// IsTask), its position in the array.
	Position int32
	// Created, Since and Deadline are Unix nanoseconds: when the job was
	// submitted, when it started waiting (Created, or the end of its last
	// backoff), and its SLA deadline (0: none).
	Created, Since, Deadline int64
	// Tasks is set on the entry that stands for an array's tasks not yet
	// materialized.
	Tasks *Tasks
}

// Tasks are the tasks of an array that are not jobs yet, drawn in index
// order. Position p is the array's task First+p; its job id is
// job.TaskID(Array, p).
type Tasks struct {
	Array string
	First int // the index of position 0
	Count int // positions 0 … Count-1
	// Next is the first position that may still be unmaterialized; Skip
	// lists, in order, positions at or after Next that are jobs already
	// (cancelled or retried on their own).
	Next int
	Skip []int
}

// Positions returns the unmaterialized positions of t, in order.
func (t *Tasks) Positions() iter.Seq[int] { return t.PositionsFrom(0) }

// Lazy reports whether position p is not materialized.
func (t *Tasks) Lazy(p int) bool {
	if p < t.Next || p >= t.Count {
		return false
	}
	_, found := slices.BinarySearch(t.Skip, p)
	return !found
}

// PositionsFrom returns the unmaterialized positions of t from p on, in
// order.
func (t *Tasks) PositionsFrom(from int) iter.Seq[int] {
	return func(yield func(int) bool) {
		s := 0
		for p := max(t.Next, from); p < t.Count; p++ {
			for s < len(t.Skip) && t.Skip[s] < p {
				s++
			}
			if s < len(t.Skip) && t.Skip[s] == p {
				continue
			}
			if !yield(p) {
				return
			}
		}
	}
}

// PositionsDown returns the unmaterialized positions of t from p down,
// in descending order.
func (t *Tasks) PositionsDown(from int) iter.Seq[int] {
	return func(yield func(int) bool) {
		s := len(t.Skip) - 1
		for p := min(from, t.Count-1); p >= t.Next; p-- {
			for s >= 0 && t.Skip[s] > p {
				s--
			}
			if s >= 0 && t.Skip[s] == p {
				continue
			}
			if !yield(p) {
				return
			}
		}
	}
}

// LazyIn is how many of t's positions from from to to (both included)
// are unmaterialized.
func (t *Tasks) LazyIn(from, to int) int {
	from, to = max(from, t.Next), min(to, t.Count-1)
	if from > to {
		return 0
	}
	n := to - from + 1
	lo, _ := slices.BinarySearch(t.Skip, from)
	hi, _ := slices.BinarySearch(t.Skip, to+1)
	return n - (hi - lo)
}

// Left is how many of t's positions are still unmaterialized.
func (t *Tasks) Left() int {
	n := t.Count - t.Next
	for _, p := range t.Skip {
		if p >= t.Next && p < t.Count {
			n--
		}
	}
	return max(n, 0)
}

// KeyOf is the ordering key of a waiting job with no deadline: a
// time-independent form of EffectivePriority. All jobs of a tenant age at
// the same rate, so ranking by priority + MaxPriority × (now − since) /
// aging is, at every instant, the same as ranking by
// since − priority × aging / MaxPriority, lower first; a pass never needs
// to re-sort. A job with a deadline gains priority at a rate of its own:
// its key is KeyAt(its effective priority now, now), refreshed on a
// coarse tick by the owner of the queue.
func KeyOf(priority int, since time.Time, aging time.Duration) int64 {
	if aging <= 0 {
		aging = DefaultAging
	}
	return since.UnixNano() - int64(priority)*int64(aging)/job.MaxPriority
}

// KeyAt is the key that ranks like an effective priority eff at now (see
// KeyOf).
func KeyAt(eff float64, now time.Time, aging time.Duration) int64 {
	if aging <= 0 {
		aging = DefaultAging
	}
	return now.UnixNano() - int64(eff*float64(aging)/job.MaxPriority)
}

// Before reports whether a goes before b in their tenant's queue.
func (a *Waiting) Before(b *Waiting) bool {
	if a.Key != b.Key {
		return a.Key < b.Key
	}
	return a.ID < b.ID
}

// WaitingOf is the decision's view of a pending job, keyed as at now.
func WaitingOf(j *job.Job, now time.Time, aging time.Duration) *Waiting {
	b := j.Brief()
	w := WaitingFrom(&b, now, aging)
	return &w
}

// WaitingFrom is WaitingOf for the brief of a stored job (see job.Brief),
// as a value, so that a caller that copies it allocates nothing. It shares
// the brief's strings and selector.
func WaitingFrom(b *job.Brief, now time.Time, aging time.Duration) Waiting {
	since := b.CreatedAt
	if b.NotBefore.After(since) {
		since = b.NotBefore // a retry waits from the end of its backoff
	}
	w := Waiting{
		ID: b.ID, Tenant: b.Tenant, Resources: b.Resources, Selector: b.Selector,
		Priority: int32(b.Priority), Attempt: int32(b.Attempt),
		Array: b.Array, ArrayLimit: int32(b.ArrayLimit),
		Created: b.CreatedAt.UnixNano(), Since: since.UnixNano(),
	}
	if !b.Deadline.IsZero() {
		w.Deadline = b.Deadline.UnixNano()
		w.Key = KeyOf(b.Priority, since, aging) // then at now:
		w = *w.Rekey(now, aging)
	} else {
		w.Key = KeyOf(b.Priority, since, aging)
	}
	return w
}

// Rekey returns w keyed as at now, for a job with a deadline (see KeyOf);
// a job without one keeps its key.
func (a *Waiting) Rekey(now time.Time, aging time.Duration) *Waiting {
	if a.Deadline == 0 {
		return a
	}
	eff := float64(a.Priority) + agingGain(time.Unix(0, a.Since), now, aging) +
		job.MaxPriority*deadlineUrgency(time.Unix(0, a.Created), time.Unix(0, a.Deadline), now)
	n := *a
	n.Key = KeyAt(eff, now, aging)
	return &n
}

// Queue yields one tenant's waiting work, best first. Decide only reads
// it, and stops early: a pass pays for the entries it looks at.
type Queue = iter.Seq[*Waiting]

// QueueOf returns a Queue over ws, which it sorts.
func QueueOf(ws []*Waiting) Queue {
	slices.SortFunc(ws, func(a, b *Waiting) int {
		if c := cmp.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return slices.Values(ws)
}

// queuesFrom ranks pending jobs into per-tenant queues as at now: the
// path for callers that hold jobs rather than kept queues.
func queuesFrom(pending []*job.Job, now time.Time, aging time.Duration) map[string]Queue {
	by := make(map[string][]*Waiting)
	for _, j := range pending {
		by[j.Spec.Tenant] = append(by[j.Spec.Tenant], WaitingOf(j, now, aging))
	}
	out := make(map[string]Queue, len(by))
	for t, ws := range by {
		out[t] = QueueOf(ws)
	}
	return out
}

func sinceOf(j *job.Job) time.Time {
	if j.NotBefore.After(j.CreatedAt) {
		return j.NotBefore // a retry waits from the end of its backoff
	}
	return j.CreatedAt
}
