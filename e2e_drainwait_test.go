package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestDrainWait drains a worker that runs a job with `workers drain
// --wait`: it says how many jobs are left, returns once the job has ended,
// and exits 0; with --timeout it gives up, names the job left and exits 1,
// the worker still drained.
func TestDrainWait(t *testing.T) {
	dataDir, addr, tmp := t.TempDir(), freeAddr(t), jobDir(t)
	startServer(t, dataDir, "--heartbeat", "200ms", "--grpc-addr", addr)
	ag := startAgent(t, addr, t.TempDir(), "--slots", "2")
	eventually(t, 20*time.Second, "the agent READY", func() bool { return workersJSON(t, addr)[ag.id] == "READY" })

	hold := func(name string) string {
		id := strings.TrimSpace(mustRun(t, addr, "submit", "--script",
			"touch "+tmp+"/"+name+".started; while [ ! -e "+tmp+"/"+name+".go ]; do sleep 0.05; done"))
		waitFile0(t, filepath.Join(tmp, name+".started"), 30*time.Second)
		return id
	}
	id := hold("a")

	// With --timeout, it gives up and names the job; the worker stays drained.
	_, stderr, code := hodei(t, addr, "workers", "drain", "--wait", "--timeout", "300ms", ag.id)
	if code != 1 || !strings.Contains(stderr, "still runs "+id+" after --timeout 300ms; it stays drained") {
		t.Errorf("drain --wait --timeout exited %d, stderr:\n%s", code, stderr)
	}
	if st := workersJSON(t, addr)[ag.id]; st != "DRAINING" {
		t.Errorf("after the timeout the worker is %s, want DRAINING", st)
	}

	wait := startClient(t, addr, "workers", "drain", "--wait", "-o", "json", ag.id)
	eventually(t, 30*time.Second, "drain --wait to say one job is left", func() bool {
		return strings.Contains(wait.stderr.String(), "is draining: 1 job left")
	})
	select {
	case <-wait.done:
		t.Fatalf("drain --wait returned while the job runs; stderr:\n%s", wait.stderr)
	default:
	}
	os.WriteFile(filepath.Join(tmp, "a.go"), nil, 0o644)
	if code := wait.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("drain --wait exited %d; stderr:\n%s", code, wait.stderr)
	}
	if !strings.Contains(wait.stderr.String(), "is drained: it runs nothing") {
		t.Errorf("drain --wait's stderr:\n%s", wait.stderr)
	}
	if st := workerState(t, wait.stdout.String()); st != "DRAINING" {
		t.Errorf("drain --wait printed %s, want DRAINING", st)
	}
	if j := waitJob(t, dial(t, addr).Jobs(), id, 10*time.Second); j.GetState() != pb.JobState_JOB_STATE_COMPLETED {
		t.Errorf("the job ended %s", j.GetState())
	}

	// Usage mistakes.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--timeout", "1s", ag.id}, "--timeout: only with --wait"},
		{[]string{"--wait", "--timeout", "-1s", ag.id}, "--timeout: -1s must not be negative"},
	} {
		_, stderr, code := hodei(t, addr, append([]string{"workers", "drain"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("drain %v exited %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
