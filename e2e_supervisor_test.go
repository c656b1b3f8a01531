package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// upgradedBin is hodei built again from the same source with another
// version stamped in, as an upgrade replaces the binary; built once.
var upgradedBin = sync.OnceValues(func() (string, error) {
	path := filepath.Join(filepath.Dir(hodeiBin), "hodei-upgraded")
	build, err := makefileBuild("-ldflags", "-X github.com/hodei-jobs/hodei/cli.Version=v99.0.0-upgrade", "-o", path, ".")
	if err != nil {
		return "", err
	}
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	return path, nil
})

// startAgentOf runs `hodei agent` from bin and waits until it printed its
// worker id.
func startAgentOf(t *testing.T, bin, addr, dataDir string, extra ...string) *agentProc {
	t.Helper()
	args := append([]string{"agent", "--server", addr, "--data-dir", dataDir}, extra...)
	args = append(args, joinArgs(t, addr, dataDir, extra)...)
	p, lines := startLinesOf(t, bin, args...)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("hodei agent exited before it was ready:\n%s", p.stderr)
			}
			if rest, ok := strings.CutPrefix(line, "hodei: agent "); ok {
				id, _, _ := strings.Cut(rest, " ")
				return &agentProc{proc: p, id: id}
			}
		case <-deadline:
			t.Fatalf("hodei agent not ready after 30s:\n%s", p.stderr)
		}
	}
}

// supervisorPids returns the pids of the supervisors serving dataDir.
func supervisorPids(dataDir string) []int {
	socks, _ := filepath.Glob(filepath.Join(dataDir, "supervisor", "*.sock"))
	var pids []int
	for _, s := range socks {
		if pid, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(s), ".sock")); err == nil && !processGone(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// exitCode waits for p to exit and returns its exit code.
func (p *proc) exitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("still running after %s; stderr:\n%s", timeout, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// TestAgentRestartKeepsJobs runs a job that prints a line a second for 10 s
// and tees its own copy to a file; about 3 s in the agent is stopped
// (SIGTERM: it detaches; SIGKILL: it just dies), and 3 s later an agent
// built from the same source with another version starts on the same data
// dir. The job completes once, on its first attempt, its stored log is its
// own copy byte for byte, and nothing anywhere says the worker was lost.
// The old supervisor, of the other version, is retired and exits once its
// job is delivered.
func TestAgentRestartKeepsJobs(t *testing.T) {
	newBin, err := upgradedBin()
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(strings.TrimPrefix(sig.String(), "signal "), func(t *testing.T) {
			srv := startServer(t, t.TempDir(), "--heartbeat", "200ms", "--lease", "30s", "--log-level", "info")
			dataDir, tmp := t.TempDir(), jobDir(t)
			ag := startAgentOf(t, hodeiBin, srv.grpcAddr, dataDir, "--log-level", "info")
			copyPath := filepath.Join(tmp, "copy")
			script := fmt.Sprintf(`for i in 1 2 3 4 5 6 7 8 9 10; do echo "line $i of 10 at $(date +%%s.%%N)" | tee -a %s; sleep 1; done`, copyPath)
			cl := dial(t, srv.grpcAddr)
			id, err := cl.Submit(context.Background(), &pb.JobSpec{Command: []string{"sh", "-c", script}})
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, 30*time.Second, "the job's third line", func() bool {
				b, _ := os.ReadFile(copyPath)
				return strings.Count(string(b), "\n") >= 3
			})
			old := supervisorPids(dataDir)
			if len(old) != 1 {
				t.Fatalf("supervisors of %s: %v, want one", dataDir, old)
			}
			if sig == syscall.SIGKILL {
				ag.kill()
			} else {
				ag.cmd.Process.Signal(sig)
				if code := ag.exitCode(t, 30*time.Second); code != 0 {
					t.Fatalf("agent exited %d after SIGTERM, want 0; stderr:\n%s", code, ag.stderr)
				}
				if want := fmt.Sprintf("detached, 1 jobs keep running under supervisor pid %d", old[0]); !strings.Contains(ag.stderr.String(), want) {
					t.Errorf("agent stderr lacks %q:\n%s", want, ag.stderr)
				}
				if !strings.Contains(srv.stderr.String(), "agent detaching") {
					t.Errorf("the server did not log the agent's goodbye:\n%s", srv.stderr)
				}
				// Listed as leaving, not as drained by hand.
				if st := workersJSON(t, srv.grpcAddr)[ag.id]; st != "LEAVING" {
					t.Errorf("a detached agent's worker is listed %s, want LEAVING", st)
				}
			}
			lines := func() int { b, _ := os.ReadFile(copyPath); return strings.Count(string(b), "\n") }
			atStop := lines()
			<-time.After(3 * time.Second) // the scenario: the agent is away for 3 s
			if n := lines(); n <= atStop {
				t.Fatalf("the job printed nothing while no agent ran (%d lines, %d at the stop)", n, atStop)
			}
			ag2 := startAgentOf(t, newBin, srv.grpcAddr, dataDir, "--log-level", "info")
			j := waitJob(t, cl.Jobs(), id, 60*time.Second)
			if j.GetState() != pb.JobState_JOB_STATE_COMPLETED || j.GetAttempt() != 1 {
				t.Fatalf("job %s, attempt %d (%s), want COMPLETED on attempt 1", j.GetState(), j.GetAttempt(), j.GetReason())
			}
			stored := mustRun(t, srv.grpcAddr, "logs", id)
			own, err := os.ReadFile(copyPath)
			if err != nil {
				t.Fatal(err)
			}
			want := strings.ReplaceAll(string(own), "\n", "\r\n") // the PTY's line ends
			if sha256.Sum256([]byte(stored)) != sha256.Sum256([]byte(want)) || strings.Count(stored, "\n") != 10 {
				t.Fatalf("stored log (%d bytes) is not the job's own copy (%d bytes):\n%q\nwant\n%q", len(stored), len(want), stored, want)
			}
			for what, text := range map[string]string{"server log": srv.stderr.String(), "new agent log": ag2.stderr.String(), "job reason": j.GetReason()} {
				if strings.Contains(text, "worker lost") || strings.Contains(text, "agent restarted") {
					t.Errorf("%s mentions a lost worker:\n%s", what, text)
				}
			}
			if !strings.Contains(ag2.stderr.String(), "reattached") {
				t.Errorf("the new agent does not say it reattached:\n%s", ag2.stderr)
			}
			eventually(t, 30*time.Second, "the old supervisor to exit once its job was delivered", func() bool { return processGone(old[0]) })
			if t.Failed() {
				t.Logf("server:\n%s\nfirst agent:\n%s\nsecond agent:\n%s", srv.stderr, ag.stderr, ag2.stderr)
			}
		})
	}
}

// TestJobEndsWhileNoAgentRuns kills the agent while a job runs, lets the
// job end, and starts an agent again: the job's exit code and all its
// output reach the server.
func TestJobEndsWhileNoAgentRuns(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--heartbeat", "200ms", "--lease", "30s", "--log-level", "info")
	dataDir, tmp := t.TempDir(), jobDir(t)
	ag := startAgent(t, srv.grpcAddr, dataDir)
	gate, ended := filepath.Join(tmp, "gate"), filepath.Join(tmp, "ended")
	script := fmt.Sprintf(`echo begin; while [ ! -e %s ]; do sleep 0.05; done; echo end; touch %s; exit 7`, gate, ended)
	cl := dial(t, srv.grpcAddr)
	id, err := cl.Submit(context.Background(), &pb.JobSpec{Command: []string{"sh", "-c", script}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the job's first line to be stored", func() bool {
		out, _, _ := hodei(t, srv.grpcAddr, "logs", id)
		return strings.Contains(out, "begin")
	})
	ag.kill()
	os.WriteFile(gate, nil, 0o644)
	waitFile0(t, ended, 30*time.Second)
	startAgent(t, srv.grpcAddr, dataDir)
	j := waitJob(t, cl.Jobs(), id, 60*time.Second)
	if j.GetState() != pb.JobState_JOB_STATE_FAILED || j.GetExitCode() != 7 || j.GetAttempt() != 1 {
		t.Fatalf("job %s, exit code %d, attempt %d (%s); want FAILED with the job's 7 on attempt 1", j.GetState(), j.GetExitCode(), j.GetAttempt(), j.GetReason())
	}
	if got := mustRun(t, srv.grpcAddr, "logs", id); got != "begin\r\nend\r\n" {
		t.Fatalf("stored log %q, want begin and end", got)
	}
}

// TestAgentDrainOnStop sends SIGTERM to an agent run with --drain-on-stop
// while a job runs: a job that ends within the drain completes and the
// agent exits 0 after it; one that outlives the drain is stopped with its
// grace (it traps SIGTERM and says so), and the agent exits 0 leaving no
// supervisor behind.
func TestAgentDrainOnStop(t *testing.T) {
	for _, tc := range []struct {
		name, drain, script string
		want                pb.JobState
		log                 string
	}{
		{"JobEnds", "30s", "sleep 3; echo done", pb.JobState_JOB_STATE_COMPLETED, "done\r\n"},
		{"JobOutlivesDrain", "1s", "trap 'echo stopped; exit 9' TERM; echo started; sleep 60 & wait", pb.JobState_JOB_STATE_FAILED, "started\r\nstopped\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, t.TempDir(), "--heartbeat", "200ms", "--lease", "30s", "--log-level", "info")
			dataDir := t.TempDir()
			ag := startAgent(t, srv.grpcAddr, dataDir, "--drain-on-stop", tc.drain, "--kill-grace", "5s", "--log-level", "info")
			cl := dial(t, srv.grpcAddr)
			id, err := cl.Submit(context.Background(), &pb.JobSpec{Command: []string{"sh", "-c", tc.script}})
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, 30*time.Second, "the job to run", func() bool {
				j, err := cl.Get(context.Background(), id)
				return err == nil && j.GetState() == pb.JobState_JOB_STATE_RUNNING
			})
			sups := supervisorPids(dataDir)
			ag.cmd.Process.Signal(syscall.SIGTERM)
			if code := ag.exitCode(t, 60*time.Second); code != 0 {
				t.Fatalf("agent exited %d, want 0; stderr:\n%s", code, ag.stderr)
			}
			// The agent exits once the job's result is delivered: no waiting here.
			j, err := cl.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if j.GetState() != tc.want {
				t.Fatalf("job %s (%s) when the agent exited, want %s; agent stderr:\n%s", j.GetState(), j.GetReason(), tc.want, ag.stderr)
			}
			if got := mustRun(t, srv.grpcAddr, "logs", id); got != tc.log {
				t.Errorf("stored log %q, want %q", got, tc.log)
			}
			for _, w := range []string{"stopping: draining", "drained"} {
				if !strings.Contains(ag.stderr.String(), w) {
					t.Errorf("agent stderr lacks %q:\n%s", w, ag.stderr)
				}
			}
			if !strings.Contains(srv.stderr.String(), "agent draining") {
				t.Errorf("the server did not log the agent's goodbye:\n%s", srv.stderr)
			}
			for _, pid := range sups {
				eventually(t, 10*time.Second, "the supervisor to exit", func() bool { return processGone(pid) })
			}
		})
	}
}

// TestSupervisedJobsKeepDefaultSignals: a job started by the supervisor
// has no signal ignored (the supervisor drops SIGHUP and SIGPIPE for
// itself; an ignored one would stay ignored in its jobs, and `yes | head`
// would no longer end by SIGPIPE).
func TestSupervisedJobsKeepDefaultSignals(t *testing.T) {
	srv := startServer(t, t.TempDir())
	startAgent(t, srv.grpcAddr, t.TempDir())
	out, errOut, code := hodei(t, srv.grpcAddr, "run", "--", "grep", "SigIgn", "/proc/self/status")
	mask, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "SigIgn:")), 16, 64)
	// Bits 0 and 12: SIGHUP and SIGPIPE, what the supervisor sets aside
	// for itself. (What this test's own parents ignore is passed on.)
	if code != 0 || err != nil || mask&(1<<0|1<<12) != 0 {
		t.Fatalf("a job's ignored signals: exit %d, %q %q; want SIGHUP and SIGPIPE at their defaults", code, out, errOut)
	}
}
