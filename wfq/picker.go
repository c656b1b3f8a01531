package wfq

import "container/heap"

// Picker chooses the next tenant to serve among the tenants of one pass, by
// their tags, charging each choice as it goes; a Ledger carries the tags
// from pass to pass. The zero value is ready to use.
type Picker struct {
	h     tagHeap
	index map[string]*flow
}

type flow struct {
	tenant string
	weight float64
	tag    float64
	pos    int
}

// Add makes tenant eligible with the given weight (values <= 0 count as 1)
// and starting tag (Ledger.Tag). Adding a tenant twice replaces its weight
// and tag.
func (p *Picker) Add(tenant string, weight, tag float64) {
	weight = weightOr1(weight)
	if p.index == nil {
		p.index = make(map[string]*flow)
	}
	if f, ok := p.index[tenant]; ok {
		f.weight, f.tag = weight, tag
		heap.Fix(&p.h, f.pos)
		return
	}
	f := &flow{tenant: tenant, weight: weight, tag: tag}
	p.index[tenant] = f
	heap.Push(&p.h, f)
}

// Next returns the tenant with the smallest tag (ties broken by name, so
// the order is deterministic), or false when no tenant is eligible.
func (p *Picker) Next() (string, bool) {
	if len(p.h) == 0 {
		return "", false
	}
	return p.h[0].tenant, true
}

// Tag returns tenant's current tag, or 0 when it is not eligible.
func (p *Picker) Tag(tenant string) float64 {
	if f, ok := p.index[tenant]; ok {
		return f.tag
	}
	return 0
}

// Charge advances tenant's tag by cost/weight.
func (p *Picker) Charge(tenant string, cost float64) {
	if f, ok := p.index[tenant]; ok {
		f.tag += cost / f.weight
		heap.Fix(&p.h, f.pos)
	}
}

// Remove makes tenant ineligible (it has nothing left to serve).
func (p *Picker) Remove(tenant string) {
	if f, ok := p.index[tenant]; ok {
		heap.Remove(&p.h, f.pos)
		delete(p.index, tenant)
	}
}

// Len is the number of eligible tenants.
func (p *Picker) Len() int { return len(p.h) }

type tagHeap []*flow

func (h tagHeap) Len() int { return len(h) }
func (h tagHeap) Less(i, j int) bool {
	if h[i].tag != h[j].tag {
		return h[i].tag < h[j].tag
	}
	return h[i].tenant < h[j].tenant
}
func (h tagHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *tagHeap) Push(x any) {
	f := x.(*flow)
	f.pos = len(*h)
	*h = append(*h, f)
}
func (h *tagHeap) Pop() any {
	old := *h
	f := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return f
}
