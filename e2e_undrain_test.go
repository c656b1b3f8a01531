package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestDrainUndrain drains the only worker: a job submitted then waits, also
// across a restart of the server (the drain is stored); `workers undrain`
// lets it run, the undrain is stored too (a job after the next restart
// runs), and both calls are audited.
func TestDrainUndrain(t *testing.T) {
	dataDir, addr, tmp := t.TempDir(), freeAddr(t), jobDir(t)
	args := []string{"--heartbeat", "200ms", "--grpc-addr", addr}
	srv := startServer(t, dataDir, args...)
	ag := startAgent(t, addr, t.TempDir(), "--slots", "1")
	eventually(t, 20*time.Second, "the agent READY", func() bool { return workersJSON(t, addr)[ag.id] == "READY" })

	out := mustRun(t, addr, "workers", "drain", ag.id, "-o", "json")
	if st := workerState(t, out); st != "DRAINING" {
		t.Fatalf("workers drain printed %s, want DRAINING", st)
	}
	marker := filepath.Join(tmp, "ran")
	id := strings.TrimSpace(mustRun(t, addr, "submit", "--script", "echo ran > "+marker))

	// The job waits while the worker keeps heartbeating (the server has
	// had passes enough to place it), and after a restart of the server.
	waitHeartbeats(t, addr, ag.id, 3)
	wantPending(t, addr, id, marker)
	srv.kill()
	srv = startServer(t, dataDir, args...)
	eventually(t, 30*time.Second, "the agent back, still DRAINING", func() bool { return workersJSON(t, addr)[ag.id] == "DRAINING" })
	waitHeartbeats(t, addr, ag.id, 3)
	wantPending(t, addr, id, marker)

	out = mustRun(t, addr, "workers", "undrain", ag.id, "-o", "json")
	if st := workerState(t, out); st != "READY" {
		t.Fatalf("workers undrain printed %s, want READY", st)
	}
	if j := waitJob(t, dial(t, addr).Jobs(), id, 30*time.Second); j.GetState() != pb.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("after undrain the job is %s (%s), want COMPLETED", j.GetState(), j.GetReason())
	}
	if got := waitFile(t, marker, time.Second); got != "ran" {
		t.Fatalf("marker %q", got)
	}

	// Both calls are audited (the audit log is written behind the call).
	eventually(t, 10*time.Second, "drain and undrain in the audit log", func() bool {
		var records []struct{ Action, Target, Result string }
		if err := json.Unmarshal([]byte(mustRun(t, addr, "audit", "ls", "--action", "drain", "-o", "json")), &records); err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, r := range records {
			got[r.Action[strings.LastIndex(r.Action, "/")+1:]+" "+r.Target+" "+r.Result] = true
		}
		return got["DrainWorker "+ag.id+" OK"] && got["UndrainWorker "+ag.id+" OK"]
	})

	// Undrained is stored: after a restart the worker is READY and runs.
	srv.kill()
	startServer(t, dataDir, args...)
	eventually(t, 30*time.Second, "the agent back, READY", func() bool { return workersJSON(t, addr)[ag.id] == "READY" })
	next := strings.TrimSpace(mustRun(t, addr, "submit", "--", "true"))
	if j := waitJob(t, dial(t, addr).Jobs(), next, 30*time.Second); j.GetState() != pb.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("a job after the restart is %s (%s), want COMPLETED", j.GetState(), j.GetReason())
	}
}

// workerState is the state in the JSON a worker command printed.
func workerState(t *testing.T, out string) string {
	t.Helper()
	var w struct{ State string }
	if err := json.Unmarshal([]byte(out), &w); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	return w.State
}

// waitHeartbeats waits until the server has heard n heartbeats of the
// worker from now on (its last heartbeat time changed n times).
func waitHeartbeats(t *testing.T, addr, worker string, n int) {
	t.Helper()
	last := int64(-1)
	seen := -1
	eventually(t, 30*time.Second, fmt.Sprintf("%d heartbeats of %s", n, worker), func() bool {
		resp, err := dial(t, addr).Admin().ListWorkers(t.Context(), &pb.ListWorkersRequest{})
		if err != nil {
			return false
		}
		for _, w := range resp.GetWorkers() {
			if w.GetId() == worker && w.GetLastHeartbeatUnixNano() != last {
				last = w.GetLastHeartbeatUnixNano()
				seen++
			}
		}
		return seen >= n
	})
}

// wantPending fails unless the job is PENDING and has not run.
func wantPending(t *testing.T, addr, id, marker string) {
	t.Helper()
	j, err := dial(t, addr).Get(t.Context(), id)
	if err != nil || j.GetState() != pb.JobState_JOB_STATE_PENDING {
		t.Fatalf("job on a drained worker: %v (%v), want PENDING", j.GetState(), err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the job ran on a drained worker")
	}
}
