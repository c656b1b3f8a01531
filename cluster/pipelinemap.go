package cluster

import (
	"slices"
	"strings"
	"sync"

	"github.com/google/btree"
	"github.com/puzpuzpuz/xsync/v3"

	"github.com/hodei-jobs/hodei/job"
)

// pipelineMap holds the pipelines by id (immutable values) and their ids
// in order, all of them and per tenant, so that a page of the newest
// pipelines (Pipelines) is found in O(page) however many are kept.
//
// Change it only through Store and Delete: they change the map and the
// order in one xsync Compute, so that the two never disagree about which
// ids there are.
type pipelineMap struct {
	*xsync.MapOf[string, *job.Pipeline]

	mu       sync.RWMutex                     // guards all and byTenant; taken inside the map's Compute, never the other way round
	all      *btree.BTreeG[string]            // every id
	byTenant map[string]*btree.BTreeG[string] // the ids of each tenant that has a pipeline
}

func newPipelineMap() *pipelineMap {
	return &pipelineMap{
		MapOf:    xsync.NewMapOf[string, *job.Pipeline](),
		all:      btree.NewOrderedG[string](32),
		byTenant: make(map[string]*btree.BTreeG[string]),
	}
}

// Store sets a pipeline's record.
func (m *pipelineMap) Store(id string, p *job.Pipeline) {
	m.MapOf.Compute(id, func(old *job.Pipeline, loaded bool) (*job.Pipeline, bool) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if loaded && old.Tenant != p.Tenant {
			m.unindex(id, old.Tenant)
		}
		m.all.ReplaceOrInsert(id)
		t := m.byTenant[p.Tenant]
		if t == nil {
			t = btree.NewOrderedG[string](32)
			m.byTenant[p.Tenant] = t
		}
		t.ReplaceOrInsert(id)
		return p, false
	})
}

// Delete forgets a pipeline.
func (m *pipelineMap) Delete(id string) {
	m.MapOf.Compute(id, func(old *job.Pipeline, loaded bool) (*job.Pipeline, bool) {
		if loaded {
			m.mu.Lock()
			m.all.Delete(id)
			m.unindex(id, old.Tenant)
			m.mu.Unlock()
		}
		return old, true
	})
}

// unindex takes id out of its tenant's order. The caller holds mu.
func (m *pipelineMap) unindex(id, tenant string) {
	if t := m.byTenant[tenant]; t != nil {
		t.Delete(id)
		if t.Len() == 0 {
			delete(m.byTenant, tenant)
		}
	}
}

// newest returns up to limit pipeline ids in descending order that come
// before the id after (from the newest when after is ""), of the given
// tenants (every tenant when tenants is nil), and whether more follow.
// It costs O(limit × len(tenants) × log n).
func (m *pipelineMap) newest(tenants []string, after string, limit int) (ids []string, more bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	take := func(t *btree.BTreeG[string]) {
		n := 0
		visit := func(id string) bool {
			if id == after {
				return true
			}
			ids = append(ids, id)
			n++
			return n <= limit // one more than the page: whether more follow
		}
		if after == "" {
			t.Descend(visit)
		} else {
			t.DescendLessOrEqual(after, visit)
		}
	}
	if tenants == nil {
		take(m.all)
	} else {
		for _, tn := range slices.Compact(slices.Sorted(slices.Values(tenants))) {
			if t := m.byTenant[tn]; t != nil {
				take(t)
			}
		}
		slices.SortFunc(ids, func(a, b string) int { return strings.Compare(b, a) })
	}
	if len(ids) > limit {
		return ids[:limit], true
	}
	return ids, false
}
