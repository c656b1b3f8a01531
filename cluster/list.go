package cluster

import (
	"context"
	"sort"
	"strconv"
	"strings"

	"github.com/hodei-jobs/hodei/job"
)

// List returns up to f.Limit jobs matching f with ids greater than
// f.After, in id order, and the page token of the next page ("" when there
// is none): the stored jobs (Store.List) merged with the tasks of arrays
// that are not materialized yet, which are listed as they would be
// (Pending, or Cancelled with their array). It costs the page, not the
// array's length.
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
	out := make([]*job.Job, 0, min(limit, len(stored)+len(lazy)))
	i, k := 0, 0
	for len(out) < limit && (i < len(stored) || k < len(lazy)) {
		if k == len(lazy) || i < len(stored) && stored[i].ID < lazy[k].ID {
			out = append(out, stored[i])
			i++
		} else {
			out = append(out, lazy[k])
			k++
		}
	}
	if i < len(stored) || k < len(lazy) || next != "" || more {
		// Whatever was not taken sorts after the last one taken.
		next = out[len(out)-1].ID
	}
	return out, next, nil
}

// lazyTasks returns, in id order, up to limit tasks not yet materialized
// whose ids are after f.After and that match f, and whether there are
// more.
func (s *Cluster) lazyTasks(f job.Filter, limit int) ([]*job.Job, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.arrays) == 0 || f.Pipeline != "" || f.State != 0 && f.State != job.Pending && f.State != job.Cancelled {
		return nil, false // such tasks are Pending, or Cancelled with their array
	}
	ids := s.arrayIDs
	if f.After != "" {
		// Arrays whose tasks all come before the page are passed over:
		// the one holding f.After, if any, is the last that starts before
		// it.
		i := sort.SearchStrings(ids, f.After)
		ids = ids[max(i-1, 0):]
	}
	if f.Array != "" {
		ids = nil
		if _, ok := s.arrays[f.Array]; ok {
			ids = []string{f.Array}
		}
	}
	var out []*job.Job
	for _, id := range ids {
		st := s.arrays[id]
		if st.tasks.Left() == 0 && !st.rec.Cancelled {
			continue
		}
		if f.Tenant != "" && st.rec.Spec.Tenant != f.Tenant {
			continue
		}
		probe := st.rec.Task(0)
		byName := f
		byName.Name = ""
		if !byName.Match(probe) {
			continue // its tasks differ in index and name only
		}
		from := 0
		if p, ok := st.rec.Position(f.After); ok {
			from = p + 1
		} else if f.After > id {
			continue // f.After is past this array's tasks
		}
		if f.Name != "" {
			p, ok := taskByName(st.rec, f.Name)
			if !ok || p < from || !st.tasks.Lazy(p) {
				continue
			}
			from = p
		}
		for p := range st.tasks.PositionsFrom(from) {
			if len(out) == limit {
				return out, true
			}
			out = append(out, st.rec.Task(p))
			if f.Name != "" {
				break
			}
		}
	}
	return out, false
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
