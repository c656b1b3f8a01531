package cli

import (
	"context"
	"strings"
	"testing"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// GetUsage answers as a server with no usage recorded in the days asked.
func (f *fakeAdmin) GetUsage(_ context.Context, req *hodeipb.GetUsageRequest) (*hodeipb.GetUsageResponse, error) {
	return &hodeipb.GetUsageResponse{From: req.GetFrom(), To: req.GetTo(), Total: &hodeipb.UsageRow{}}, nil
}

// TestUsageNothingFound checks that `hodei usage` with nothing to show
// says so on stderr (for a tenant: that it may not exist) rather than
// printing an empty table alone; JSON and CSV stay as they are.
func TestUsageNothingFound(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		args []string
		want string // on stderr; "": nothing
	}{
		{[]string{"--tenant", "nosuch", "--from", "2026-03-01", "--to", "2026-03-31"},
			`no ended attempts of tenant "nosuch" from 2026-03-01 to 2026-03-31 (UTC days): it ran nothing then, or there is no such tenant (hodei tenants ls lists them)`},
		{[]string{"--label", "k=v", "--from", "2026-03-01", "--to", "2026-03-31"},
			`no ended attempts with label k=v from 2026-03-01 to 2026-03-31 (UTC days)`},
		{[]string{"--tenant", "nosuch", "--attempts", "--from", "2026-03-01", "--to", "2026-03-02"},
			`no ended attempts of tenant "nosuch" from 2026-03-01 to 2026-03-02`},
		{[]string{"--tenant", "nosuch", "-o", "csv"}, ""},
		{[]string{"--tenant", "nosuch", "-o", "json"}, ""},
	} {
		r := h.run(t, append([]string{"usage"}, tc.args...)...)
		if r.code != 0 {
			t.Errorf("usage %v: exit %d %s", tc.args, r.code, r.stderr)
			continue
		}
		if tc.want == "" && r.stderr != "" || tc.want != "" && !strings.Contains(r.stderr, tc.want) {
			t.Errorf("usage %v: stderr %q, want %q", tc.args, r.stderr, tc.want)
		}
	}
}
