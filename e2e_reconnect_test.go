package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// client is a CLI process started by a test, its output captured.
type clientProc struct {
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	done           chan struct{}
	err            error // of Wait, once done is closed
}

// startClient starts the CLI against addr; it is killed in t.Cleanup if
// still running.
func startClient(t *testing.T, addr string, args ...string) *clientProc {
	t.Helper()
	p := &clientProc{cmd: cliCmd(addr, args...), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *clientProc) len() int {
	p.stdout.mu.Lock()
	defer p.stdout.mu.Unlock()
	return p.stdout.b.Len()
}

// wait waits for the process to exit and returns its exit code.
func (p *clientProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s still running after %s; stderr:\n%s", strings.Join(p.cmd.Args, " "), timeout, p.stderr)
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return 0
}

// TestRunAndLogsRideOutServerRestart follows a job that prints 1.5 MB of
// numbered lines with `hodei run` and `hodei logs -f`, SIGKILLs the server
// while they stream, lets the job print more while it is down, restarts
// it on the same data dir and address, and lets the job print the rest:
// both clients print the whole output exactly once, in order, say once
// that the server went away and once that it is back, and run exits with
// the job's exit code.
func TestRunAndLogsRideOutServerRestart(t *testing.T) {
	r, tmp := startRestartable(t), jobDir(t)
	addr := r.addr

	const pad = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMN" // 64-byte lines with the CR the PTY adds
	var want bytes.Buffer
	for i := range 24000 {
		fmt.Fprintf(&want, "line %06d %s\r\n", i, pad)
	}
	// Three parts: the first streams when the server is killed, the
	// second is printed while it is down, the third once it is back.
	script := fmt.Sprintf(`part() { awk -v a=$1 -v b=$2 'BEGIN { for (i = a; i < b; i++) printf "line %%06d %s\n", i }'; }
part 0 8000; touch %[2]s/p1; while [ ! -e %[2]s/f1 ]; do sleep 0.02; done
part 8000 16000; touch %[2]s/p2; while [ ! -e %[2]s/f2 ]; do sleep 0.02; done
part 16000 24000; exit 5`, pad, tmp)
	run := startClient(t, addr, "run", "--", "sh", "-c", script)
	var id string
	eventually(t, 30*time.Second, "the job to be listed", func() bool {
		out, _, _ := hodei(t, addr, "jobs", "ls", "-o", "json")
		var list []map[string]any
		if json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 {
			return false
		}
		id, _ = list[0]["id"].(string)
		return true
	})
	logs := startClient(t, addr, "logs", "-f", id)
	eventually(t, 30*time.Second, "both clients to print output", func() bool { return run.len() > 0 && logs.len() > 0 })
	r.srv.kill()
	killedAt := []int{run.len(), logs.len()}
	waitFile0(t, filepath.Join(tmp, "p1"), 30*time.Second)
	os.WriteFile(filepath.Join(tmp, "f1"), nil, 0o644)
	waitFile0(t, filepath.Join(tmp, "p2"), 30*time.Second)
	eventually(t, 30*time.Second, "both clients to say the server is unreachable", func() bool {
		return strings.Contains(run.stderr.String(), "unreachable") && strings.Contains(logs.stderr.String(), "unreachable")
	})

	r.srv = startServer(t, r.dataDir, r.args...)
	eventually(t, 60*time.Second, "both clients to reconnect", func() bool {
		return strings.Contains(run.stderr.String(), "reconnected") && strings.Contains(logs.stderr.String(), "reconnected")
	})
	os.WriteFile(filepath.Join(tmp, "f2"), nil, 0o644)

	if code := run.wait(t, 60*time.Second); code != 5 {
		t.Errorf("run exited %d, want the job's 5; stderr:\n%s", code, run.stderr)
	}
	if code := logs.wait(t, 60*time.Second); code != 0 {
		t.Errorf("logs -f exited %d; stderr:\n%s", code, logs.stderr)
	}
	wantSum := sha256.Sum256(want.Bytes())
	for i, c := range []*clientProc{run, logs} {
		got := []byte(c.stdout.String())
		if sha256.Sum256(got) != wantSum {
			t.Errorf("%s printed %d bytes (%d when the server was killed), want %d; first difference at byte %d",
				c.cmd.Args[3], len(got), killedAt[i], want.Len(), firstDiff(got, want.Bytes()))
		}
		stderr := c.stderr.String()
		wantLines := []string{
			fmt.Sprintf("hodei: server %s unreachable, retrying for up to 10m0s…", addr),
			fmt.Sprintf("hodei: reconnected to %s after ", addr),
		}
		for _, w := range wantLines {
			if strings.Count(stderr, w) != 1 {
				t.Errorf("%s stderr has not exactly one %q:\n%s", c.cmd.Args[3], w, stderr)
			}
		}
		t.Logf("%s: %d of %d bytes printed when the server was killed; stderr:\n%s", c.cmd.Args[3], killedAt[i], want.Len(), stderr)
	}
}

// waitFile0 waits until path exists, empty or not.
func waitFile0(t *testing.T, path string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, path, func() bool {
		_, err := os.Stat(path)
		return err == nil
	})
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestRunExitsWithTheSignal runs jobs that kill themselves: run exits
// 128+N as a shell would, and the job records the signal.
func TestRunExitsWithTheSignal(t *testing.T) {
	srv, _ := cluster(t)
	for _, tc := range []struct {
		sig  string
		num  int
		code int
	}{{"KILL", 9, 137}, {"TERM", 15, 143}} {
		t.Run(tc.sig, func(t *testing.T) {
			for _, mode := range [][]string{{"--name", "sig-" + tc.sig + "-pty"}, {"--name", "sig-" + tc.sig + "-pipes", "--no-pty"}} {
				args := append(append([]string{"run"}, mode...), "--", "sh", "-c", "echo before; kill -"+tc.sig+" $$; echo after")
				out, errOut, code := hodei(t, srv.grpcAddr, args...)
				if code != tc.code || !strings.Contains(out, "before") || strings.Contains(out, "after") {
					t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d", mode, code, out, errOut, tc.code)
				}
			}
			var list []struct {
				Name     string `json:"name"`
				State    string `json:"state"`
				ExitCode int    `json:"exit_code"`
				Signal   int    `json:"signal"`
			}
			out := mustRun(t, srv.grpcAddr, "jobs", "ls", "-o", "json")
			if err := json.Unmarshal([]byte(out), &list); err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, j := range list {
				if !strings.HasPrefix(j.Name, "sig-"+tc.sig) {
					continue
				}
				n++
				if j.State != "FAILED" || j.ExitCode != -1 || j.Signal != tc.num {
					t.Errorf("job %s: %s, exit code %d, signal %d; want FAILED, -1, %d", j.Name, j.State, j.ExitCode, j.Signal, tc.num)
				}
			}
			if n != 2 {
				t.Errorf("%d jobs named sig-%s*, want 2:\n%s", n, tc.sig, out)
			}
		})
	}
}

// TestRunWhileTheServerIsAway checks the two ways out while the server is
// away: Ctrl-C exits 1 at once, saying that the cancel could not be sent,
// and --reconnect-timeout gives up with a message that says how to pick
// up again. The job keeps running either way.
func TestRunWhileTheServerIsAway(t *testing.T) {
	r, tmp := startRestartable(t), jobDir(t)
	addr := r.addr
	script := fmt.Sprintf("echo started; touch %s/started; while [ ! -e %s/stop ]; do sleep 0.05; done; echo stopped", tmp, tmp)
	interrupted := startClient(t, addr, "run", "--", "sh", "-c", script)
	timedOut := startClient(t, addr, "run", "--reconnect-timeout", "1s", "--", "sh", "-c", script)
	eventually(t, 30*time.Second, "both jobs to start", func() bool {
		return interrupted.len() > 0 && timedOut.len() > 0
	})
	r.srv.kill()

	eventually(t, 30*time.Second, "run to notice", func() bool { return strings.Contains(interrupted.stderr.String(), "unreachable") })
	interrupted.cmd.Process.Signal(syscall.SIGINT)
	if code := interrupted.wait(t, 10*time.Second); code != 1 ||
		!strings.Contains(interrupted.stderr.String(), "the cancel cannot be sent") {
		t.Errorf("Ctrl-C while the server is away: exit %d, stderr:\n%s", code, interrupted.stderr)
	}
	if code := timedOut.wait(t, 30*time.Second); code != 1 ||
		!strings.Contains(timedOut.stderr.String(), "giving up (--reconnect-timeout)") ||
		!strings.Contains(timedOut.stderr.String(), "hodei logs -f") {
		t.Errorf("--reconnect-timeout 1s: exit %d, stderr:\n%s", code, timedOut.stderr)
	}

	t.Logf("interrupted:\n%s\ntimed out:\n%s", interrupted.stderr, timedOut.stderr)

	// Both jobs are still running: back, the server shows them so.
	r.srv = startServer(t, r.dataDir, r.args...)
	out := mustRun(t, addr, "jobs", "ls", "-o", "json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 {
		t.Fatalf("jobs after restart: %s (%v)", out, err)
	}
	for _, j := range list {
		if s := j["state"]; s != "RUNNING" && s != "SCHEDULED" {
			t.Errorf("job %v is %v, want it still running", j["id"], s)
		}
	}
	os.WriteFile(filepath.Join(tmp, "stop"), nil, 0o644)
}
