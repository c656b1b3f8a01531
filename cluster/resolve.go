package cluster

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/hodei-jobs/hodei/job"
)

// maxResolved is how many matches of a prefix a resolution collects, to
// count them in its error; past it the error says "more than".
const maxResolved = 1000

// Resolve returns the id of the one object of kind whose id starts with
// prefix, ignoring case, among the objects of tenants (empty: every
// tenant, as auth.Identity's; workers have none). A whole id resolves to its object even when it
// also starts others (worker ids are free text). The objects of other
// tenants change nothing in the answer: they are left out before the
// matches are counted and capped.
//
// It costs O(log n) plus the matches it collects (at most maxResolved):
// a seek in the store's jobs for stored jobs (in each tenant's index, for
// a caller limited to tenants); for tasks of arrays not yet
// materialized, whose ids follow their array's, a search of the sorted
// array ids and the range of positions the prefix covers; a search of the
// array ids for arrays; and a walk of the pipelines and workers in memory.
//
// Errors: a *job.FieldError on field for what no id can start with; a
// *job.PrefixError when nothing matches (it wraps job.ErrNotFound) or
// several objects do (job.ErrInvalid; it lists them).
func (s *Cluster) Resolve(ctx context.Context, kind job.IDKind, field, prefix string, tenants []string) (string, error) {
	p, err := job.NormalizePrefix(kind, field, prefix)
	if err != nil {
		return "", err
	}
	if len(tenants) == 0 {
		tenants = nil
	} else {
		tenants = slices.Compact(slices.Sorted(slices.Values(tenants)))
	}
	sees := func(t string) bool { return tenants == nil || slices.Contains(tenants, t) }
	var refs []job.IDRef
	switch kind {
	case job.KindJob:
		if refs, err = s.jobsByPrefix(ctx, p, tenants, sees); err != nil {
			return "", err
		}
	case job.KindArray:
		refs = s.arraysByPrefix(p, sees)
	case job.KindPipeline:
		refs = s.pipelinesByPrefix(p, sees)
	case job.KindWorker:
		refs = s.workersByPrefix(p)
	default:
		return "", job.Invalid("kind", "%d is not a kind of id", kind)
	}
	if len(refs) == 1 {
		return refs[0].ID, nil
	}
	for _, r := range refs {
		if strings.EqualFold(r.ID, prefix) {
			return r.ID, nil
		}
	}
	e := &job.PrefixError{Kind: kind, Prefix: prefix}
	if len(refs) == 0 {
		return "", e
	}
	if len(refs) > maxResolved {
		refs, e.MoreAtLeast = refs[:maxResolved], true
	}
	shown := refs[:min(len(refs), job.MaxShownMatches)]
	e.More = len(refs) - len(shown)
	e.Matches = s.describe(ctx, kind, shown)
	return "", e
}

// jobsByPrefix returns, in id order, up to maxResolved+1 jobs of tenants
// (nil: every tenant; sees says the same) whose ids start with p: stored
// ones and tasks not yet materialized. The store leaves the other
// tenants' jobs out before it stops at the cap.
func (s *Cluster) jobsByPrefix(ctx context.Context, p string, tenants []string, sees func(string) bool) ([]job.IDRef, error) {
	out, err := s.cfg.Store.JobsByPrefix(ctx, p, tenants, maxResolved+1)
	if err != nil {
		return nil, err
	}
	out = append(out, s.lazyByPrefix(p, maxResolved+1, sees)...)
	slices.SortFunc(out, func(a, b job.IDRef) int { return cmp.Compare(a.ID, b.ID) })
	return out[:min(len(out), maxResolved+1)], nil
}

// lazyByPrefix returns, in id order, up to max tasks not yet materialized
// whose ids start with p. Arrays' ranges of task ids do not overlap (the
// server reserves each), so only the array before the lowest such id and
// those after it, up to the highest, can hold one.
func (s *Cluster) lazyByPrefix(p string, limit int, sees func(string) bool) []job.IDRef {
	lo, hi := p+strings.Repeat("0", 26-len(p)), p+strings.Repeat("Z", 26-len(p))
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []job.IDRef
	i := sort.SearchStrings(s.arrayIDs, lo)
	for _, id := range s.arrayIDs[max(i-1, 0):] {
		if id > hi {
			break
		}
		st := s.arrays[id]
		if !sees(st.rec.Spec.Tenant) {
			continue
		}
		from, to, ok := st.rec.TaskRange(lo, hi)
		if !ok {
			continue
		}
		for pos := range st.tasks.PositionsFrom(from) {
			if pos > to || len(out) == limit {
				break
			}
			out = append(out, job.IDRef{ID: job.TaskID(id, pos), Tenant: st.rec.Spec.Tenant})
		}
		if len(out) == limit {
			break
		}
	}
	return out
}

// arraysByPrefix returns the arrays whose ids start with p, in id order,
// at most maxResolved+1.
func (s *Cluster) arraysByPrefix(p string, sees func(string) bool) []job.IDRef {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []job.IDRef
	for _, id := range s.arrayIDs[sort.SearchStrings(s.arrayIDs, p):] {
		if !strings.HasPrefix(id, p) || len(out) > maxResolved {
			break
		}
		if t := s.arrays[id].rec.Spec.Tenant; sees(t) {
			out = append(out, job.IDRef{ID: id, Tenant: t})
		}
	}
	return out
}

// pipelinesByPrefix returns the pipelines whose ids start with p, in id
// order.
func (s *Cluster) pipelinesByPrefix(p string, sees func(string) bool) []job.IDRef {
	var out []job.IDRef
	s.pipelines.Range(func(id string, pl *job.Pipeline) bool {
		if strings.HasPrefix(id, p) && sees(pl.Tenant) {
			out = append(out, job.IDRef{ID: id, Tenant: pl.Tenant})
		}
		return true
	})
	slices.SortFunc(out, func(a, b job.IDRef) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// workersByPrefix returns the workers whose ids start with p, ignoring
// case, in id order.
func (s *Cluster) workersByPrefix(p string) []job.IDRef {
	var out []job.IDRef
	s.workers.Range(func(id string, _ *workerState) bool {
		if len(id) >= len(p) && strings.EqualFold(id[:len(p)], p) {
			out = append(out, job.IDRef{ID: id})
		}
		return true
	})
	slices.SortFunc(out, func(a, b job.IDRef) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// describe returns the matches of an ambiguous prefix with what tells
// them apart: a job's name and state, an array's or a pipeline's name, a
// worker's host.
func (s *Cluster) describe(ctx context.Context, kind job.IDKind, refs []job.IDRef) []job.PrefixMatch {
	out := make([]job.PrefixMatch, len(refs))
	for i, r := range refs {
		out[i].ID = r.ID
	}
	switch kind {
	case job.KindJob:
		ids := make([]string, len(refs))
		for i, r := range refs {
			ids[i] = r.ID
		}
		jobs, err := s.GetMany(ctx, ids)
		if err != nil {
			return out
		}
		for i, j := range jobs {
			if j != nil {
				out[i].Detail = fmt.Sprintf("%s  %s", cmp.Or(j.Spec.Name, "-"), j.State)
			}
		}
	case job.KindArray:
		for i, r := range refs {
			if a, ok := s.Array(r.ID); ok {
				out[i].Detail = fmt.Sprintf("%s  %d tasks", a.Spec.Name, a.Len())
			}
		}
	case job.KindPipeline:
		for i, r := range refs {
			if p, ok := s.pipelines.Load(r.ID); ok {
				out[i].Detail = p.Name
			}
		}
	case job.KindWorker:
		for i, r := range refs {
			if w, ok := s.workers.Load(r.ID); ok {
				out[i].Detail = w.rec.Hostname
			}
		}
	}
	return out
}
