package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestRunInAHugeTerminal runs `hodei run -- bash` in a terminal wider
// than 1000 columns, then makes it larger still: the job's PTY has the
// terminal's size each time (a PTY takes up to 65535), and the keys typed
// after the resize still reach the job.
func TestRunInAHugeTerminal(t *testing.T) {
	srv, _ := cluster(t)
	c := startPTYClient(t, srv.grpcAddr, 50, 1200, "run", "--", "bash")
	c.typ(t, "stty size\r")
	c.waitOutput(t, `(?m)^\r?50 1200\r$`)
	if err := pty.Setsize(c.master, &pty.Winsize{Rows: 2000, Cols: 3000}); err != nil {
		t.Fatal(err)
	}
	// The resize and the next keys travel apart: ask until it shows.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for !regexp.MustCompile(`(?m)^\r?2000 3000\r$`).MatchString(c.out.String()) {
		c.typ(t, "stty size\r")
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("the job never saw 2000 3000; output %q", c.out.String())
		}
	}
	c.typ(t, "exit 4\r")
	if code := c.exit(t); code != 4 {
		t.Fatalf("exit %d, want 4; output %q", code, c.out.String())
	}
}

// runCmdWithin runs cmd as runCmd does, killing it after timeout: then
// the test fails, showing what it printed.
func runCmdWithin(t *testing.T, cmd *exec.Cmd, timeout time.Duration) (string, string, int) {
	t.Helper()
	killed := make(chan struct{})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-time.After(timeout):
			close(killed)
			if cmd.Process != nil {
				cmd.Process.Kill()
			}
		case <-stop:
		}
	}()
	out, errOut, code := runCmd(t, cmd)
	select {
	case <-killed:
		t.Fatalf("%s still running after %s; stdout %q, stderr %q", strings.Join(cmd.Args, " "), timeout, out, errOut)
	default:
	}
	return out, errOut, code
}

// TestNoStdinIsDevNull: with -i=false (or --no-stdin) the job's stdin is
// as /dev/null, with a PTY too (its terminal gets the EOF at once), so a
// job that reads its stdin ends instead of waiting for input that will
// never come, and what is piped to run does not reach it.
func TestNoStdinIsDevNull(t *testing.T) {
	srv, _ := cluster(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"PTY", []string{"run", "-i=false", "--", "wc", "-l"}, "0\r\n"},
		{"PTYNoStdin", []string{"run", "--no-stdin", "--", "sh", "-c", "cat; echo end"}, "end\r\n"},
		{"NoPTY", []string{"run", "-i=false", "--no-pty", "--", "wc", "-l"}, "0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := cliCmd(srv.grpcAddr, tc.args...)
			cmd.Stdin = strings.NewReader("a\nb\n")
			out, errOut, code := runCmdWithin(t, cmd, 30*time.Second)
			if code != 0 || out != tc.want {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and %q", code, out, errOut, tc.want)
			}
		})
	}
}

// TestPipedStdinRidesOutServerRestart pipes 4 MB through `run --no-pty`
// into a job that reads slowly (so that the server's and the agent's
// windows are full), on a separate agent, SIGKILLs the server while the
// input flows and starts it again: the job reads every byte once, in
// order (its sha256 is the input's), and run exits 0.
func TestPipedStdinRidesOutServerRestart(t *testing.T) {
	r, tmp := startRestartable(t), jobDir(t)
	input := make([]byte, 4<<20)
	if _, err := rand.Read(input); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(input)
	out := filepath.Join(tmp, "out")
	// 64 KiB at a time, a pause between: a slow reader. The sum goes to
	// the output once the input has ended.
	script := fmt.Sprintf(`while :; do head -c 65536 > %[1]s.chunk; [ -s %[1]s.chunk ] || break; cat %[1]s.chunk >> %[1]s; sleep 0.02; done; sha256sum < %[1]s`, out)
	cmd := cliCmd(r.addr, "run", "--no-pty", "--", "sh", "-c", script)
	cmd.Stdin = bytes.NewReader(input)
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var runErr error
	done := make(chan struct{})
	go func() { runErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	logOnFailure(t, &stderr)
	size := func() int64 {
		fi, err := os.Stat(out)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	eventually(t, 60*time.Second, "the job to have read 1 MB", func() bool { return size() >= 1<<20 })
	r.restart(t, &stderr, func() {})
	select {
	case <-done:
		if runErr != nil {
			t.Fatalf("run: %v; stdout %q", runErr, stdout.String())
		}
	case <-time.After(120 * time.Second):
		t.Fatalf("run still running after 120s; the job had read %d of %d bytes", size(), len(input))
	}
	t.Logf("run's stderr:\n%s", stderr.String())
	want := hex.EncodeToString(sum[:])
	if got := strings.Fields(stdout.String()); len(got) == 0 || got[0] != want {
		t.Fatalf("the job read %d bytes with sha256 %q, want %d bytes with %s", size(), stdout.String(), len(input), want)
	}
}

// TestDetachSendsWhatWasTypedFirst pastes a command and Enter ~. in one
// go, into a running job and into one still PENDING (it waits for another
// job): run detaches, and the command reaches the job in both cases, the
// second once the job starts.
func TestDetachSendsWhatWasTypedFirst(t *testing.T) {
	srv, _ := cluster(t)
	dir := jobDir(t)
	for _, pending := range []bool{false, true} {
		name := map[bool]string{false: "Running", true: "Pending"}[pending]
		t.Run(name, func(t *testing.T) {
			args := []string{"run", "--", "bash"}
			gate := filepath.Join(dir, name+".gate")
			if pending {
				blocker := strings.TrimSpace(mustRun(t, srv.grpcAddr, "submit", "--", "sh", "-c",
					fmt.Sprintf("while [ ! -e %s ]; do sleep 0.05; done", gate)))
				args = []string{"run", "--after", blocker, "--", "bash"}
			}
			c := startPTYClient(t, srv.grpcAddr, 24, 80, args...)
			id := c.jobID(t)
			if !pending {
				c.typ(t, "echo ready-$((1+1))\r")
				c.waitOutput(t, `ready-2`)
			}
			marker := filepath.Join(dir, name)
			c.typ(t, "touch "+marker+"; exit 7\r~.")
			if code := c.exit(t); code != 0 || !strings.Contains(c.out.String(), "detached") {
				t.Fatalf("detach: exit %d, output %q", code, c.out.String())
			}
			if pending {
				if j := jobState(t, srv.grpcAddr, id); j.GetState() != pb.JobState_JOB_STATE_PENDING {
					t.Fatalf("the job is %s after the detach, want it still PENDING", j.GetState())
				}
				if err := os.WriteFile(gate, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			j := waitJob(t, dial(t, srv.grpcAddr).Jobs(), id, 30*time.Second)
			if j.GetExitCode() != 7 {
				t.Fatalf("the job ended %s with %d, want 7 from the command typed before the detach", j.GetState(), j.GetExitCode())
			}
			if _, err := os.Stat(marker); err != nil {
				t.Fatalf("the command typed before the detach did not run: %v", err)
			}
		})
	}
}
