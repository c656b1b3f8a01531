package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUnplaceableAheadAndReservation: against a real server and agent,
// 300 queued jobs pinned to hosts that do not exist do not keep a later
// job from running on the idle agent (attack 11, finding 1); and behind a
// 2-slot job waiting for a slot held by a running job, a 1-slot job says
// what holds it back, as the 2-slot job says what it waits for (trial 11,
// finding 2).
func TestUnplaceableAheadAndReservation(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--heartbeat", "200ms", "--lease", "1500ms")
	addr := srv.grpcAddr
	ag := startAgent(t, addr, t.TempDir(), "--slots", "2")
	submit := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(mustRun(t, addr, append([]string{"submit"}, args...)...))
	}

	var lines strings.Builder
	for i := range 300 {
		fmt.Fprintf(&lines, "{\"command\":[\"true\"],\"selector\":{\"host\":\"node-%d\"}}\n", i)
	}
	file := filepath.Join(t.TempDir(), "pinned.jsonl")
	if err := os.WriteFile(file, []byte(lines.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	submit("--file", file)
	hello := submit("--", "echo", "hello")
	if j := waitJob(t, dial(t, addr).Jobs(), hello, 30*time.Second); j.GetState().String() != "JOB_STATE_COMPLETED" {
		t.Fatalf("a job behind 300 unplaceable ones: %s", j.GetState())
	}

	tmp := jobDir(t)
	holder := submit("--script", fmt.Sprintf("touch %s/started; sleep 60", tmp))
	eventually(t, 30*time.Second, "the holding job to start", func() bool {
		_, err := os.Stat(filepath.Join(tmp, "started"))
		return err == nil
	})
	two := submit("--slots", "2", "--", "true")
	one := submit("--", "true")
	eventually(t, 30*time.Second, "the 2-slot job to wait for its reserved worker", func() bool {
		return jobJSON(t, addr, two).PendingKind == "reserved"
	})
	wantWaiting(t, addr, two, "reserved", fmt.Sprintf("waits for 2 slots on %s; 1 free", ag.id))
	wantWaiting(t, addr, one, "held-back", fmt.Sprintf("behind %s (needs 2 slots on %s)", two, ag.id))
	mustRun(t, addr, "jobs", "cancel", holder)
	for _, id := range []string{two, one} {
		if j := waitJob(t, dial(t, addr).Jobs(), id, 30*time.Second); j.GetState().String() != "JOB_STATE_COMPLETED" {
			t.Fatalf("job %s once the holder was cancelled: %s", id, j.GetState())
		}
	}
}
