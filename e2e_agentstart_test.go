package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestSecondAgentOnSameDataDir starts a second agent on the data dir of one
// that runs a job: it exits at once, non-zero, saying the dir is locked and
// by whom, before it registers; the first agent's job runs to the end.
func TestSecondAgentOnSameDataDir(t *testing.T) {
	srv, first := cluster(t)
	dir := first.dataDir(t)
	tmp := jobDir(t)
	id := strings.TrimSpace(mustRun(t, srv.grpcAddr, "submit", "--script",
		fmt.Sprintf("echo go > %[1]s/started; while [ ! -e %[1]s/release ]; do sleep 0.05; done; echo done", tmp)))
	waitFile(t, filepath.Join(tmp, "started"), 30*time.Second)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, hodeiBin, "agent", "--server", srv.grpcAddr, "--data-dir", dir, "--log-level", "warn")
	out, errOut, code := runCmd(t, cmd)
	want := fmt.Sprintf("hodei: agent data dir %s is locked by another process, pid %d (is another hodei agent using this data dir?", dir, first.cmd.Process.Pid)
	if code == 0 || ctx.Err() != nil || !strings.HasPrefix(errOut, want) || out != "" {
		t.Fatalf("second agent: exit %d (ctx %v), stdout %q, stderr %q; want non-zero at once and %q…", code, ctx.Err(), out, errOut, want)
	}

	if err := os.WriteFile(filepath.Join(tmp, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, dial(t, srv.grpcAddr).Jobs(), id, 30*time.Second)
	if j.GetState() != pb.JobState_JOB_STATE_COMPLETED || j.GetWorker() != first.id || j.GetAttempt() != 1 {
		t.Fatalf("the first agent's job: %s on %s, attempt %d (%s); want COMPLETED on %s at its first attempt",
			j.GetState(), j.GetWorker(), j.GetAttempt(), j.GetReason(), first.id)
	}
	if ws := workersJSON(t, srv.grpcAddr); len(ws) != 1 || ws[first.id] != "READY" {
		t.Fatalf("workers %v, want only %s READY", ws, first.id)
	}
}

// dataDir is the --data-dir the agent was started with.
func (a *agentProc) dataDir(t *testing.T) string {
	t.Helper()
	args := a.cmd.Args
	for i, arg := range args {
		if arg == "--data-dir" && i+1 < len(args) {
			return args[i+1]
		}
	}
	t.Fatal("agent started without --data-dir")
	return ""
}

// TestAgentStartLines starts an agent before its server: it says it is
// connecting and why it cannot yet (once, though it retries several
// times), and "connected" only once the server welcomed it; it says when
// it loses the server and when it is back.
func TestAgentStartLines(t *testing.T) {
	addr := freeAddr(t)
	ag, lines := startLines(t, "agent", "--server", addr, "--data-dir", t.TempDir(), "--insecure-no-auth",
		"--slots", "2", "--labels", "zone=a", "--name", "edge", "--log-level", "debug")
	first := nextLine(t, lines)
	m := regexp.MustCompile(`^hodei: agent (w-[0-9a-f]+) connecting to ` + regexp.QuoteMeta(addr) + `$`).FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("first line %q, want hodei: agent ID connecting to %s", first, addr)
	}
	id := m[1]
	want := fmt.Sprintf("hodei: agent %s cannot reach %s yet (connection refused, 1 attempt); retrying in ", id, addr)
	if got := nextLine(t, lines); !strings.HasPrefix(got, want) {
		t.Fatalf("second line %q, want %q…", got, want)
	}
	// Several more attempts fail (the debug log counts them) with no line.
	eventually(t, 30*time.Second, "four failed attempts", func() bool {
		return strings.Contains(ag.stderr.String(), "failures=4")
	})
	srv := startServer(t, t.TempDir(), "--insecure-no-auth", "--grpc-addr", addr, "--heartbeat", "200ms")
	if got, want := nextLine(t, lines), fmt.Sprintf("hodei: agent %s connected to %s as edge: 2 slots, labels arch=%s,os=%s,zone=a", id, addr, runtime.GOARCH, runtime.GOOS); got != want {
		t.Fatalf("after the server started: %q, want %q", got, want)
	}
	if ws := workersJSON(t, addr); ws[id] != "READY" {
		t.Fatalf("workers %v, want %s READY", ws, id)
	}
	srv.kill()
	if got, want := nextLine(t, lines), fmt.Sprintf("hodei: agent %s lost %s (", id, addr); !strings.HasPrefix(got, want) {
		t.Fatalf("after the server went: %q, want %q…", got, want)
	}
	startServer(t, t.TempDir(), "--insecure-no-auth", "--grpc-addr", addr, "--heartbeat", "200ms")
	for {
		got := nextLine(t, lines)
		if strings.Contains(got, "cannot reach") {
			continue // a retry before the new server listened
		}
		if want := fmt.Sprintf("hodei: agent %s connected to %s again", id, addr); got != want {
			t.Fatalf("after the server came back: %q, want %q", got, want)
		}
		break
	}
}

// TestServeDevLabelsAndSlots: serve --dev --labels --slots reach the dev
// agent, over its default labels os and arch.
func TestServeDevLabelsAndSlots(t *testing.T) {
	dataDir := t.TempDir()
	_, lines := startLines(t, "serve", "--dev", "--data-dir", dataDir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "-",
		"--labels", "gpu=1,zone=lab", "--slots", "3", "--log-level", "warn")
	var addr string
	for addr == "" {
		if rest, ok := strings.CutPrefix(nextLine(t, lines), "hodei: serving grpc="); ok {
			addr, _, _ = strings.Cut(rest, " ")
		}
	}
	connected := regexp.MustCompile(`^hodei: agent (w-[0-9a-f]+) connected to ` + regexp.QuoteMeta(addr) + ` as dev: 3 slots, labels (.*)$`)
	var m []string
	for m == nil {
		m = connected.FindStringSubmatch(nextLine(t, lines))
	}
	wantLabels := fmt.Sprintf("arch=%s,gpu=1,os=%s,zone=lab", runtime.GOARCH, runtime.GOOS)
	if m[2] != wantLabels {
		t.Fatalf("dev agent labels %s, want %s", m[2], wantLabels)
	}
	credsMu.Lock()
	credsByAddr[addr] = credsOf(t, dataDir)
	credsMu.Unlock()
	var ws []struct {
		ID       string
		Name     string
		Labels   map[string]string
		Capacity struct{ Slots int64 }
	}
	if err := json.Unmarshal([]byte(mustRun(t, addr, "workers", "ls", "-o", "json")), &ws); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"os": runtime.GOOS, "arch": runtime.GOARCH, "gpu": "1", "zone": "lab"}
	if len(ws) != 1 || ws[0].ID != m[1] || ws[0].Capacity.Slots != 3 || fmt.Sprint(ws[0].Labels) != fmt.Sprint(want) {
		t.Fatalf("workers ls: %+v; want the dev agent %s with 3 slots and labels %v", ws, m[1], want)
	}
	// A selector on the default labels is met.
	out, errOut, code := hodei(t, addr, "run", "--selector", "os="+runtime.GOOS, "--", "echo", "hi")
	if code != 0 || !strings.Contains(out, "hi") {
		t.Fatalf("run --selector os=%s: exit %d, %q %q", runtime.GOOS, code, out, errOut)
	}
}

// nextLine returns the next line of a process's stdout, failing the test
// when none comes within 30 s or the process ended.
func nextLine(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("the process ended")
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatal("no line in 30s")
	}
	return ""
}

// TestExamplePipelinesComplete runs every valid example of
// testdata/pipelines (all but invalid-*) as they stand against serve --dev,
// as `make run` starts it, and wants each COMPLETED.
func TestExamplePipelinesComplete(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "pipelines", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var valid []string
	for _, f := range files {
		if !strings.HasPrefix(filepath.Base(f), "invalid-") {
			valid = append(valid, f)
		}
	}
	if len(valid) < 4 {
		t.Fatalf("valid examples %q, want at least 4", valid)
	}
	dataDir := t.TempDir()
	_, lines := startLines(t, "serve", "--dev", "--data-dir", dataDir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "-", "--log-level", "warn")
	var addr string
	for {
		l := nextLine(t, lines)
		if rest, ok := strings.CutPrefix(l, "hodei: serving grpc="); ok {
			addr, _, _ = strings.Cut(rest, " ")
		}
		if strings.HasPrefix(l, "hodei: the dev agent runs jobs here") {
			break
		}
	}
	credsMu.Lock()
	credsByAddr[addr] = credsOf(t, dataDir)
	credsMu.Unlock()
	for _, f := range valid {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, errOut, code := hodei(t, addr, "pipeline", "run", f, "--wait", "-o", "json")
			var p struct {
				State string
				Steps []struct{ Name, State string }
			}
			if code != 0 || json.Unmarshal([]byte(out), &p) != nil || p.State != "COMPLETED" {
				t.Fatalf("pipeline run %s --wait: exit %d, state %q\nstdout:\n%s\nstderr:\n%s", f, code, p.State, out, errOut)
			}
		})
	}
}

// TestAgentJoinedLine: the agent's "joined the cluster" log line names its
// worker once (its logger does), not twice (trial 11 #12).
func TestAgentJoinedLine(t *testing.T) {
	srv := startServer(t, t.TempDir())
	ag := startAgent(t, srv.grpcAddr, t.TempDir(), "--log-level", "info")
	var line string
	eventually(t, 30*time.Second, "the joined line", func() bool {
		for l := range strings.SplitSeq(ag.stderr.String(), "\n") {
			if strings.Contains(l, "joined the cluster") {
				line = l
				return true
			}
		}
		return false
	})
	if n := strings.Count(line, "worker="); n != 1 {
		t.Errorf("joined line %q has worker= %d times, want once", line, n)
	}
}
