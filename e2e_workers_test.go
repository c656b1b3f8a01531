package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// workersJSON is `workers ls -o json`: state by worker id.
func workersJSON(t *testing.T, addr string) map[string]string {
	t.Helper()
	out, errOut, code := hodei(t, addr, "workers", "ls", "-o", "json")
	var ws []struct{ ID, State string }
	if code != 0 || json.Unmarshal([]byte(out), &ws) != nil {
		t.Fatalf("workers ls: exit %d, %q %q", code, out, errOut)
	}
	states := make(map[string]string, len(ws))
	for _, w := range ws {
		states[w.ID] = w.State
	}
	return states
}

// TestWorkersAfterRestartAndRemove restarts the server while an agent that
// is gone holds a running job: its worker is UNKNOWN, `workers rm` refuses
// it while it is connected and while it holds the job, and removes it once
// it is DOWN and its job was retried; a second agent that reconnects after
// the restart is READY again.
func TestWorkersAfterRestartAndRemove(t *testing.T) {
	dataDir, addr, tmp := t.TempDir(), freeAddr(t), jobDir(t)
	args := []string{"--heartbeat", "200ms", "--lease", "3s", "--grpc-addr", addr}
	srv := startServer(t, dataDir, args...)
	gone := startAgent(t, addr, t.TempDir(), "--slots", "1")
	stays := startAgent(t, addr, t.TempDir(), "--slots", "1")
	id := strings.TrimSpace(mustRun(t, addr, "submit", "--script", fmt.Sprintf("echo go > %s/started; sleep 5", tmp)))
	waitFile(t, filepath.Join(tmp, "started"), 30*time.Second)
	j, err := dial(t, addr).Get(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	holder, idle := gone, stays
	if j.GetWorker() == stays.id {
		holder, idle = stays, gone
	}
	wantRefused(t, addr, "a connected worker cannot be removed", "workers", "rm", holder.id)
	wantRefused(t, addr, `worker id starts with "no-such-worker"`, "workers", "rm", "no-such-worker")

	// The server goes first, so that the job is still RUNNING on disk;
	// then the agent that ran it.
	srv.kill()
	holder.kill()
	startServer(t, dataDir, args...)
	if got := workersJSON(t, addr)[holder.id]; got != "UNKNOWN" {
		t.Fatalf("the gone worker after the restart: %s, want UNKNOWN", got)
	}
	wantRefused(t, addr, "holds 1 active job:", "workers", "rm", holder.id)
	eventually(t, 20*time.Second, "the agent still running to say Hello again", func() bool {
		return workersJSON(t, addr)[idle.id] == "READY"
	})
	eventually(t, 20*time.Second, "the gone worker DOWN and its job lost", func() bool {
		j, err := dial(t, addr).Get(t.Context(), id)
		return err == nil && j.GetState() == pb.JobState_JOB_STATE_FAILED && workersJSON(t, addr)[holder.id] == "DOWN"
	})
	out, errOut, code := hodei(t, addr, "workers", "rm", holder.id)
	if code != 0 || out != fmt.Sprintf("worker %s removed\n", holder.id) {
		t.Fatalf("workers rm: exit %d, %q %q", code, out, errOut)
	}
	if ws := workersJSON(t, addr); len(ws) != 1 || ws[idle.id] != "READY" {
		t.Fatalf("workers after rm: %v, want only %s", ws, idle.id)
	}
	wantRefused(t, addr, `no worker id starts with "`+holder.id+`"`, "workers", "rm", holder.id)
}
