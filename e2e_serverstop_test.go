package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestServerStopsGracefully SIGTERMs a server while a job runs on its agent
// and clients follow it (logs -f) and another (run): the server ends the
// followers' and the agent's streams itself (no call is cut at the deadline), logs what it
// does with counts, and exits 0; the next start picks everything up, and
// the job's result and whole log arrive.
func TestServerStopsGracefully(t *testing.T) {
	tmp, dataDir, addr := jobDir(t), t.TempDir(), freeAddr(t)
	args := []string{"--heartbeat", "200ms", "--lease", "60s", "--grpc-addr", addr}
	srv := startServer(t, dataDir, append(args, "--log-level", "info")...)
	ag := startAgent(t, addr, t.TempDir(), "--log-level", "info")

	script := "echo before; touch " + tmp + "/started; while [ ! -e " + tmp + "/go ]; do sleep 0.05; done; echo after"
	out, stderr, code := hodei(t, addr, "submit", "-o", "json", "--", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("submit exited %d: %s", code, stderr)
	}
	var sub struct{ ID string }
	if err := json.Unmarshal([]byte(out), &sub); err != nil {
		t.Fatalf("submit -o json: %v: %s", err, out)
	}
	waitFile0(t, filepath.Join(tmp, "started"), 30*time.Second)
	logs := startClient(t, addr, "logs", "-f", sub.ID)
	eventually(t, 30*time.Second, "the follower to print the first line", func() bool { return logs.len() > 0 })
	// And a job run in the foreground, its stdin piped (as from a script).
	run := startClient(t, addr, "run", "--", "sh", "-c", "echo run-before; while [ ! -e "+tmp+"/go ]; do sleep 0.05; done; echo run-after")
	eventually(t, 30*time.Second, "run to print the first line", func() bool { return run.len() > 0 })

	srv.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-srv.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the server did not exit after SIGTERM; stderr:\n%s", srv.stderr)
	}
	if c := srv.cmd.ProcessState.ExitCode(); c != 0 {
		t.Errorf("the server exited %d after SIGTERM, want 0", c)
	}
	log := srv.stderr.String()
	for _, want := range []string{
		"stopping: refusing new calls, telling agents and clients to reconnect", "agents=1", "streams=", // the agent's and the follower's
		"stopped: every commit is on disk and the store is closed", "running=2", "calls_cut=false",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the server's log lacks %q:\n%s", want, log)
		}
	}

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the agent's log:\n%s", ag.stderr)
		}
	})
	// The agent says why it reconnects, as what it is: no warning.
	eventually(t, 10*time.Second, "the agent to say the server stops", func() bool {
		return strings.Contains(ag.stderr.String(), "the server is stopping; reconnecting to its next start")
	})
	if strings.Contains(ag.stderr.String(), "level=WARN") {
		t.Errorf("the agent warned when the server stopped:\n%s", ag.stderr)
	}
	srv = startServer(t, dataDir, args...)
	os.WriteFile(filepath.Join(tmp, "go"), nil, 0o644)
	if code := logs.wait(t, 60*time.Second); code != 0 {
		t.Errorf("logs -f exited %d; stderr:\n%s", code, logs.stderr)
	}
	if got := logs.stdout.String(); got != "before\r\nafter\r\n" {
		t.Errorf("logs -f printed %q, want both lines once", got)
	}
	if code := run.wait(t, 60*time.Second); code != 0 {
		t.Errorf("run exited %d; stderr:\n%s", code, run.stderr)
	}
	if got := run.stdout.String(); got != "run-before\r\nrun-after\r\n" {
		t.Errorf("run printed %q, want both lines once", got)
	}
	if j := waitJob(t, dial(t, addr).Jobs(), sub.ID, 60*time.Second); j.GetState() != pb.JobState_JOB_STATE_COMPLETED || j.GetAttempt() != 1 {
		t.Errorf("the job ended %s in attempt %d, want COMPLETED in its first", j.GetState(), j.GetAttempt())
	}
}
