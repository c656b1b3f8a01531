package cluster

import (
	"slices"
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/job"
)

// pageAll walks Pipelines page by page with f, calling between pages
// between(page number), and returns the ids listed in order.
func pageAll(t *testing.T, h *harness, f PipelineFilter, between func(int)) []string {
	t.Helper()
	var ids []string
	for n := 0; ; n++ {
		page, next, err := h.s.Pipelines(h.ctx, f)
		if err != nil {
			t.Fatalf("page %d: %v", n, err)
		}
		if len(page) > f.Limit {
			t.Fatalf("page %d has %d pipelines, limit %d", n, len(page), f.Limit)
		}
		for _, st := range page {
			ids = append(ids, st.Pipeline.ID)
		}
		if next == "" {
			return ids
		}
		if len(page) < f.Limit {
			t.Fatalf("page %d has %d pipelines and a next page: a page is full but the last", n, len(page))
		}
		if next != page[len(page)-1].Pipeline.ID {
			t.Fatalf("page %d: next token %q, want its last id", n, next)
		}
		f.After = next
		if between != nil {
			between(n)
		}
	}
}

func TestPipelinesPages(t *testing.T) {
	h := newHarness(t)
	tenants := []string{"a", "b", job.DefaultTenant}
	for _, tn := range tenants[:2] {
		if _, err := h.s.SetTenant(h.ctx, tn, nil); err != nil {
			t.Fatal(err)
		}
	}
	byTenant := map[string][]string{}
	var all []string
	create := func(i int) string {
		tn := tenants[i%len(tenants)]
		p, _, err := h.s.RunPipeline(h.ctx, job.PipelineSpec{Name: "p", Tenant: tn, Steps: []job.Step{pstep("s")}})
		if err != nil {
			t.Fatal(err)
		}
		byTenant[tn] = append(byTenant[tn], p.ID)
		all = append(all, p.ID)
		return p.ID
	}
	for i := range 23 {
		create(i)
	}
	newestFirst := func(ids []string) []string {
		out := slices.Clone(ids)
		slices.SortFunc(out, func(a, b string) int { return strings.Compare(b, a) })
		return out
	}

	t.Run("EveryTenant", func(t *testing.T) {
		for _, limit := range []int{1, 5, 23, 50} {
			got := pageAll(t, h, PipelineFilter{Limit: limit}, nil)
			if want := newestFirst(all); !slices.Equal(got, want) {
				t.Errorf("limit %d: got %v\nwant %v", limit, got, want)
			}
		}
	})
	t.Run("OneTenant", func(t *testing.T) {
		got := pageAll(t, h, PipelineFilter{Tenants: []string{"b"}, Limit: 3}, nil)
		if want := newestFirst(byTenant["b"]); !slices.Equal(got, want) {
			t.Errorf("got %v\nwant %v", got, want)
		}
	})
	t.Run("SeveralTenants", func(t *testing.T) {
		got := pageAll(t, h, PipelineFilter{Tenants: []string{"a", job.DefaultTenant, "a"}, Limit: 4}, nil)
		if want := newestFirst(append(slices.Clone(byTenant["a"]), byTenant[job.DefaultTenant]...)); !slices.Equal(got, want) {
			t.Errorf("got %v\nwant %v", got, want)
		}
	})
	t.Run("NoTenant", func(t *testing.T) {
		if got := pageAll(t, h, PipelineFilter{Tenants: []string{}, Limit: 4}, nil); len(got) != 0 {
			t.Errorf("no tenant listed %v", got)
		}
		if got := pageAll(t, h, PipelineFilter{Tenants: []string{"nobody"}, Limit: 4}, nil); len(got) != 0 {
			t.Errorf("a tenant without pipelines listed %v", got)
		}
	})
	t.Run("CreatedWhilePaging", func(t *testing.T) {
		before := newestFirst(all)
		var added []string
		got := pageAll(t, h, PipelineFilter{Limit: 4}, func(int) { added = append(added, create(len(all))) })
		if !slices.Equal(got, before) {
			t.Errorf("pages while %d were created: got %v\nwant %v", len(added), got, before)
		}
		// The new ones head a new listing.
		first, _, err := h.s.Pipelines(h.ctx, PipelineFilter{Limit: len(added)})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, st := range first {
			ids = append(ids, st.Pipeline.ID)
		}
		if want := newestFirst(added); !slices.Equal(ids, want) {
			t.Errorf("newest page %v, want %v", ids, want)
		}
	})
	t.Run("Recovered", func(t *testing.T) {
		want := pageAll(t, h, PipelineFilter{Limit: 7}, nil)
		h.restart()
		if got := pageAll(t, h, PipelineFilter{Limit: 7}, nil); !slices.Equal(got, want) {
			t.Errorf("after a restart: got %v\nwant %v", got, want)
		}
	})
	t.Run("DeletedLeaveTheIndex", func(t *testing.T) {
		gone := byTenant["b"][0]
		h.s.pipelines.Delete(gone)
		if got := pageAll(t, h, PipelineFilter{Tenants: []string{"b"}, Limit: 2}, nil); slices.Contains(got, gone) {
			t.Errorf("deleted pipeline %s still listed", gone)
		}
		h.s.pipelines.mu.RLock()
		has := h.s.pipelines.all.Has(gone)
		h.s.pipelines.mu.RUnlock()
		if has {
			t.Errorf("deleted pipeline %s still in the index", gone)
		}
	})
}
