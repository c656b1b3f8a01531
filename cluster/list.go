package cluster

import (
	"context"
	"iter"
	"sort"
	"strconv"
	"strings"

	"github.com/hodei-jobs/hodei/job"
)

// CountBudget is the work Count may spend in the store (see
// store.DB.Count): about a hundred thousand index entries, a few
// milliseconds, after which it says "more than" rather than scan on.
const CountBudget = 100_000

// List returns up to f.Limit jobs matching f that come after f.After in
// id order (descending with f.Desc), and the page token of the next page
// ("" when there is none): the stored jobs (Store.List) merged with the
// tasks of arrays that are not materialized yet, which are listed as they
// would be (Pending, or Cancelled with their array). It costs the page,
// not the array's length.
func (s *Cluster) List(ctx context.Context, f job.Filter) ([]*job.Job, string, error) {
	limit := f.PageSize()
	f.Limit = limit
	stored, next, err := s.cfg.Store.List(ctx, f)
	if err != nil {
		return nil, "", err
	}
	lazy, more := s.lazyTasks(f, limit)
	if len(lazy) == 0 {
		return stored, next, nil
	}
	first := func(a, b string) bool { return a < b != f.Desc }
	out := make([]*job.Job, 0, min(limit, len(stored)+len(lazy)))
	i, k := 0, 0
	for len(out) < limit && (i < len(stored) || k < len(lazy)) {
		if k == len(lazy) || i < len(stored) && first(stored[i].ID, lazy[k].ID) {
			out = append(out, stored[i])
			i++
		} else {
			out = append(out, lazy[k])
			k++
		}
	}
	if i < len(stored) || k < len(lazy) || next != "" || more {
		// Whatever was not taken comes after the last one taken.
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// Count returns how many jobs List lists for f over all its pages: exactly
// when that costs little, or else a lower bound (exact false). The
// unfinished jobs of a state or of a tenant are read from the counters
// kept for /metrics; jobs that finished come from the store's indexes,
// within CountBudget; tasks not yet materialized from their arrays.
func (s *Cluster) Count(ctx context.Context, f job.Filter) (n int, exact bool, err error) {
	f.After = ""
	countersOnly := len(f.Labels) == 0 && f.Name == "" && f.Array == "" && f.Pipeline == "" && f.Since.IsZero()
	switch {
	case countersOnly && f.State != 0 && !f.State.Terminal() && !f.Finished:
		return s.unfinished(f.Tenant, f.State), true, nil
	case countersOnly && f.State == 0 && !f.Finished && !f.NotFinishedBefore.IsZero():
		// The window: what has not finished, by the counters, and what
		// finished since its start.
		g := f
		g.Finished = true
		m, exact, err := s.cfg.Store.Count(ctx, g, CountBudget)
		if err != nil {
			return 0, false, err
		}
		return s.unfinished(f.Tenant, 0) + m + s.lazyCount(g), exact, nil
	}
	m, exact, err := s.cfg.Store.Count(ctx, f, CountBudget)
	if err != nil {
		return 0, false, err
	}
	return m + s.lazyCount(f), exact, nil
}

// unfinished is the number of unfinished jobs of tenant ("": every
// tenant) in state (0: Pending, Scheduled and Running), array tasks not
// yet materialized included.
func (s *Cluster) unfinished(tenant string, state job.State) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for name, c := range s.counts {
		if tenant != "" && name != tenant {
			continue
		}
		switch state {
		case job.Pending:
			n += c.Pending
		case job.Scheduled:
			n += c.Scheduled
		case job.Running:
			n += c.Running
		default:
			n += c.Pending + c.Scheduled + c.Running
		}
	}
	return n
}

// lazyTasks returns, in f's order, up to limit tasks not yet materialized
// that come after f.After and match f, and whether there are more.
func (s *Cluster) lazyTasks(f job.Filter, limit int) ([]*job.Job, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*job.Job
	for st := range s.lazyArrays(f) {
		for p := range s.lazyPositions(st, f) {
			if len(out) == limit {
				return out, true
			}
			out = append(out, st.rec.Task(p))
		}
	}
	return out, false
}

// lazyCount is how many tasks not yet materialized match f.
func (s *Cluster) lazyCount(f job.Filter) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for st := range s.lazyArrays(f) {
		if f.Name == "" {
			n += st.tasks.Left()
			continue
		}
		for range s.lazyPositions(st, f) {
			n++
		}
	}
	return n
}

// lazyArrays yields, in f's order, the arrays whose tasks not yet
// materialized may match f and come after f.After: their tasks differ
// only in index and name, so the first one stands for all but the name.
// The caller holds mu.
func (s *Cluster) lazyArrays(f job.Filter) iter.Seq[*arrayState] {
	return func(yield func(*arrayState) bool) {
		if len(s.arrays) == 0 || f.Pipeline != "" || f.State != 0 && f.State != job.Pending && f.State != job.Cancelled {
			return // such tasks are Pending, or Cancelled with their array
		}
		ids := s.arrayIDs
		if f.Array != "" {
			ids = nil
			if _, ok := s.arrays[f.Array]; ok {
				ids = []string{f.Array}
			}
		}
		if f.After != "" {
			i := sort.SearchStrings(ids, f.After) // ids[:i] are before f.After
			if f.Desc {
				ids = ids[:i]
			} else {
				// The array holding f.After, if any, is the last that
				// starts before it.
				ids = ids[max(i-1, 0):]
			}
		}
		byName := f
		byName.Name = ""
		lit, glob := job.NamePattern(f.Name)
		for n := range ids {
			id := ids[n]
			if f.Desc {
				id = ids[len(ids)-1-n]
			}
			st := s.arrays[id]
			if st.tasks.Left() == 0 {
				continue
			}
			if f.Tenant != "" && st.rec.Spec.Tenant != f.Tenant {
				continue
			}
			if f.Desc && !f.Since.IsZero() && job.IDBefore(id, f.Since) && st.rec.CreatedAt.Before(f.Since) {
				return // older arrays are older still
			}
			if glob {
				// Every task is named base[i]: one that lit does not fit
				// cannot match.
				if base := st.rec.Spec.Name + "["; !strings.HasPrefix(base, lit) && !strings.HasPrefix(lit, base) {
					continue
				}
			}
			if !byName.Match(st.rec.Task(0)) {
				continue
			}
			if !yield(st) {
				return
			}
		}
	}
}

// lazyPositions yields, in f's order, the positions of st's tasks not yet
// materialized that come after f.After and whose names f selects. A name
// pattern is tried on each task. The caller holds mu.
func (s *Cluster) lazyPositions(st *arrayState, f job.Filter) iter.Seq[int] {
	return func(yield func(int) bool) {
		from, to := 0, st.rec.Len()-1
		if p, ok := st.rec.Position(f.After); ok {
			if f.Desc {
				to = p - 1
			} else {
				from = p + 1
			}
		} else if f.After != "" && (f.Desc && f.After < st.rec.ID || !f.Desc && f.After > st.rec.ID) {
			return // f.After is past this array's tasks
		}
		_, glob := job.NamePattern(f.Name)
		if f.Name != "" && !glob {
			p, ok := taskByName(st.rec, f.Name)
			if ok && p >= from && p <= to && st.tasks.Lazy(p) {
				yield(p)
			}
			return
		}
		positions := st.tasks.PositionsFrom(from)
		if f.Desc {
			positions = st.tasks.PositionsDown(to)
		}
		for p := range positions {
			if p < from || p > to {
				return
			}
			if glob && !job.NameMatches(f.Name, st.rec.TaskName(p)) {
				continue
			}
			if !yield(p) {
				return
			}
		}
	}
}

// taskByName returns the position of the task of a named name, if any.
func taskByName(a *job.Array, name string) (int, bool) {
	idx, ok := strings.CutPrefix(name, a.Spec.Name+"[")
	if !ok {
		return 0, false
	}
	idx, ok = strings.CutSuffix(idx, "]")
	i, err := strconv.Atoi(idx)
	if !ok || err != nil || i < a.First || i > a.Last {
		return 0, false
	}
	return i - a.First, true
}
