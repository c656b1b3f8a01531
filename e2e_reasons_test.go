package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// pendingJSON is what `jobs get -o json` says of a job's wait.
type pendingJSON struct {
	State         string `json:"state"`
	PendingReason string `json:"pending_reason"`
	PendingKind   string `json:"pending_kind"`
}

// jobJSON runs `hodei jobs get ID -o json`.
func jobJSON(t *testing.T, addr, id string) pendingJSON {
	t.Helper()
	var v pendingJSON
	if err := json.Unmarshal([]byte(mustRun(t, addr, "jobs", "get", id, "-o", "json")), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// wantWaiting fails unless job id is PENDING for the reason kind and
// text, as `jobs get -o json` shows it.
func wantWaiting(t *testing.T, addr, id, kind, text string) {
	t.Helper()
	if v := jobJSON(t, addr, id); v.State != "PENDING" || v.PendingKind != kind || v.PendingReason != text {
		t.Fatalf("job %s: %s, waiting for %s %q; want PENDING, %s %q", id, v.State, v.PendingKind, v.PendingReason, kind, text)
	}
}

// workerCapacity reads a worker's capacity from `workers ls -o json`.
func workerCapacity(t *testing.T, addr, id string) (cpuMillis, memoryMiB int64) {
	t.Helper()
	var ws []struct {
		ID       string `json:"id"`
		Capacity struct {
			CPUMillis int64 `json:"cpu_millis"`
			MemoryMiB int64 `json:"memory_mib"`
		} `json:"capacity"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, addr, "workers", "ls", "-o", "json")), &ws); err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if w.ID == id {
			return w.Capacity.CPUMillis, w.Capacity.MemoryMiB
		}
	}
	t.Fatalf("worker %s not listed", id)
	return 0, 0
}

// TestPendingReasons submits, against a real server and agents, one job
// per reason a pending job gives, and reads each reason with the CLI
// (`jobs get -o json`, `jobs ls`, `pipeline get`); with --require-fit the
// jobs no registered worker could take are refused with a non-zero exit,
// naming what does not fit. A job waiting for a label says so until an
// agent with the label joins, and then runs; `hodei run` says why its job
// waits on stderr meanwhile.
func TestPendingReasons(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--heartbeat", "200ms", "--lease", "1500ms", "--kill-grace", "2s")
	addr := srv.grpcAddr
	submit := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(mustRun(t, addr, append([]string{"submit"}, args...)...))
	}

	// No worker at all.
	first := submit("--", "true")
	wantWaiting(t, addr, first, "no-workers", "no worker has registered; start one with 'hodei agent'")
	wantRefused(t, addr, "no worker has registered", "submit", "--require-fit", "--", "true")

	ag := startAgent(t, addr, t.TempDir(), "--slots", "2", "--labels", "zone=a")
	if j := waitJob(t, dial(t, addr).Jobs(), first, 30*time.Second); j.GetState().String() != "JOB_STATE_COMPLETED" {
		t.Fatalf("the first job, once an agent joined: %s", j.GetState())
	}
	cpu, mem := workerCapacity(t, addr, ag.id)
	needMem := int64(999999)
	if mem >= needMem {
		needMem = mem + 1
	}

	// A tenant at its limit, with the job that holds it; a drained worker.
	mustRun(t, addr, "tenants", "set", "prod", "--max-running", "1")
	tmp := jobDir(t)
	holder := submit("--tenant", "prod", "--script", fmt.Sprintf("touch %s/started; sleep 60", tmp))
	eventually(t, 30*time.Second, "the job of tenant prod to start", func() bool {
		if _, err := os.Stat(filepath.Join(tmp, "started")); err == nil {
			return true
		}
		if v := jobJSON(t, addr, holder); v.State != "PENDING" && v.State != "SCHEDULED" && v.State != "RUNNING" {
			t.Fatalf("the job of tenant prod is %s: %s", v.State, mustRun(t, addr, "jobs", "get", holder))
		}
		return false
	})
	drained := startAgent(t, addr, t.TempDir(), "--slots", "1", "--labels", "zone=d")
	mustRun(t, addr, "workers", "drain", drained.id)

	for _, tt := range []struct {
		name       string
		args       []string
		kind, text string
		refused    string // what --require-fit says; "" when it accepts the job
	}{
		{"Label", []string{"--selector", "zone=c"}, "labels", "no ready worker has label zone=c (0 of 1)",
			"selector: no registered worker has label zone=c (0 of 2)"},
		{"Slots", []string{"--slots", "5"}, "slots", "needs 5 slots; the largest worker has 2",
			"--slots: needs 5 slots; the largest registered worker has 2"},
		{"Memory", []string{"--memory", strconv.FormatInt(needMem, 10)}, "memory",
			fmt.Sprintf("needs %s MiB; the largest worker has %s MiB", job.Thousands(needMem), job.Thousands(mem)),
			fmt.Sprintf("--memory: needs %s MiB; the largest registered worker has %s MiB", job.Thousands(needMem), job.Thousands(mem))},
		{"CPU", []string{"--cpu", strconv.FormatInt(cpu+1000, 10)}, "cpu",
			fmt.Sprintf("needs %s CPU millis; the largest worker has %s CPU millis", job.Thousands(cpu+1000), job.Thousands(cpu)),
			fmt.Sprintf("--cpu: needs %s CPU millis; the largest registered worker has %s CPU millis", job.Thousands(cpu+1000), job.Thousands(cpu))},
		{"Draining", []string{"--selector", "zone=d"}, "draining", "all matching workers draining (1 of 2 workers match)", ""},
		{"TenantLimit", []string{"--tenant", "prod"}, "tenant-limit", "tenant prod at its max-running limit (1 of 1)", ""},
		{"Dependency", []string{"--after", holder}, "dependency", "waiting for " + holder + " (RUNNING)", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := submit(append(tt.args, "--", "true")...)
			wantWaiting(t, addr, id, tt.kind, tt.text)
			if !strings.Contains(mustRun(t, addr, "jobs", "ls", "--state", "pending"), tt.text) {
				t.Errorf("jobs ls --state pending does not show %q", tt.text)
			}
			if !strings.Contains(mustRun(t, addr, "jobs", "get", id), "Reason:") {
				t.Errorf("jobs get %s has no Reason line", id)
			}
			args := append(append([]string{"submit", "--require-fit"}, tt.args...), "--", "true")
			if tt.refused == "" {
				mustRun(t, addr, args...)
				return
			}
			wantRefused(t, addr, tt.refused+" (--require-fit)", args...)
			// No worker fits: not a mistake in the command line (exit 2).
			if _, errOut, code := hodei(t, addr, args...); code != 1 || strings.Contains(errOut, "--help") {
				t.Errorf("%v: exit %d, stderr %q; want 1 with no pointer to --help", args, code, errOut)
			}
			run := append(append([]string{"run", "--require-fit"}, tt.args...), "--", "true")
			wantRefused(t, addr, tt.refused, run...)
		})
	}

	// A pipeline whose step needs a label no worker has says so.
	file := filepath.Join(t.TempDir(), "stuck.yaml")
	if err := os.WriteFile(file, []byte("name: stuck\nsteps:\n  - name: build\n    command: [\"true\"]\n    selector: {zone: z}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pipe := strings.TrimSpace(mustRun(t, addr, "pipeline", "run", file))
	if out := mustRun(t, addr, "pipeline", "get", pipe); !strings.Contains(out, "no ready worker has label zone=z (0 of 1)") {
		t.Errorf("pipeline get does not say why its step waits:\n%s", out)
	}
	var pv struct {
		Steps []struct {
			Jobs []pendingJSON `json:"jobs"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, addr, "pipeline", "get", pipe, "-o", "json")), &pv); err != nil {
		t.Fatal(err)
	}
	if len(pv.Steps) != 1 || len(pv.Steps[0].Jobs) != 1 || pv.Steps[0].Jobs[0].PendingReason != "no ready worker has label zone=z (0 of 1)" {
		t.Errorf("pipeline get -o json: %+v", pv)
	}

	// `hodei run` of a job no worker can take says why on stderr, and
	// runs it once an agent with the label joins.
	run := cliCmd(addr, "run", "--selector", "zone=e", "--", "echo", "ran")
	var stdout, stderr lockedBuffer
	run.Stdout, run.Stderr = &stdout, &stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	t.Cleanup(func() {
		run.Process.Kill()
		<-exited
	})
	eventually(t, 30*time.Second, "run to say why its job waits", func() bool {
		return strings.Contains(stderr.String(), "queued: no ready worker has label zone=e (0 of 1)\n")
	})
	startAgent(t, addr, t.TempDir(), "--slots", "1", "--labels", "zone=e")
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil || !strings.Contains(stdout.String(), "ran") {
			t.Fatalf("run after the agent joined: %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("run still waiting after the agent with zone=e joined; stderr %q", stderr.String())
	}
	if n := strings.Count(stderr.String(), "queued: "); n != 1 {
		t.Errorf("run said queued %d times, want once: %q", n, stderr.String())
	}
	mustRun(t, addr, "jobs", "cancel", holder)
}
