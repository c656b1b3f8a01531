package cli

import (
	"strings"
	"testing"
	"time"
)

// TestAttachEndedJob: attach to a job that has ended says so first, and
// never that it attached (trial 11 #12).
func TestAttachEndedJob(t *testing.T) {
	addr := startServer(t, true)
	r := runAt(t, addr, "submit", "--", "sh", "-c", "echo bye; exit 3")
	r.wantOK(t)
	id := strings.TrimSpace(r.stdout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for {
		var v jobView
		jsonOf(t, addr, &v, "jobs", "get", id)
		if v.State == "FAILED" {
			break
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("job %s is %s, not FAILED, after 30s", id, v.State)
		}
	}
	r = runAt(t, addr, "attach", id)
	want := "hodei: job " + id + " has ended (FAILED): hodei logs " + id + " shows its output\n"
	if r.stderr != want || r.code != 1 {
		t.Errorf("exit %d, stderr %q; want 1 and %q alone", r.code, r.stderr, want)
	}
}
