package cluster

import (
	"errors"
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/job"
)

// TestResolveScopedIgnoresOtherTenants: a caller limited to a tenant gets
// the same answer whatever other tenants hold in the prefix's range, even
// more ids than a resolution collects.
func TestResolveScopedIgnoresOtherTenants(t *testing.T) {
	h := newHarness(t)
	for _, name := range []string{"teamx", "teamy"} {
		if _, err := h.s.SetTenant(h.ctx, name, func(*job.Tenant) {}); err != nil {
			t.Fatal(err)
		}
	}
	x1 := h.submit(job.Spec{Name: "x1", Tenant: "teamx"})
	others := make([]job.Spec, maxResolved+100)
	for i := range others {
		others[i] = job.Spec{Command: []string{"true"}, Priority: job.DefaultPriority}
	}
	if _, err := h.s.SubmitBatch(h.ctx, others); err != nil {
		t.Fatal(err)
	}
	x2 := h.submit(job.Spec{Name: "x2", Tenant: "teamx"})
	y := h.submit(job.Spec{Name: "y", Tenant: "teamy"})
	common := x1.ID[:10] // the same millisecond: it starts all of them
	if !strings.HasPrefix(x2.ID, common) || !strings.HasPrefix(y.ID, common) {
		t.Fatalf("%s, %s and %s do not share %s", x1.ID, x2.ID, y.ID, common)
	}
	teamx := []string{"teamx"}

	_, err := h.s.Resolve(h.ctx, job.KindJob, "id", common, teamx)
	var pe *job.PrefixError
	if !errors.As(err, &pe) || !errors.Is(err, job.ErrInvalid) || len(pe.Matches) != 2 || pe.MoreAtLeast {
		t.Fatalf("ambiguous for teamx: %v; want the start of 2 job ids", err)
	}
	if !strings.Contains(err.Error(), "is the start of 2 job ids") {
		t.Errorf("message: %s", err)
	}
	// The one job of teamy in the range, after more than a thousand
	// others'.
	if got, err := h.s.Resolve(h.ctx, job.KindJob, "id", common, []string{"teamy"}); err != nil || got != y.ID {
		t.Errorf("Resolve(%s) for teamy = %q, %v; want %s", common, got, err, y.ID)
	}
	// Limited to both, it starts all three.
	if _, err := h.s.Resolve(h.ctx, job.KindJob, "id", common, []string{"teamy", "teamx"}); !errors.As(err, &pe) || len(pe.Matches) != 3 {
		t.Errorf("teamx and teamy: %v; want the start of 3 job ids", err)
	}
	// An unscoped caller sees them all.
	if _, err := h.s.Resolve(h.ctx, job.KindJob, "id", common, nil); !errors.As(err, &pe) || !pe.MoreAtLeast {
		t.Errorf("unscoped: %v; want more than %d", err, maxResolved)
	}
}
