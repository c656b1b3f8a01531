package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// numberedLines is a job that prints a numbered line every 50 ms, writing
// its number to dir/n too, and answers each line typed into it with
// "got <LINE>"; typing quit makes it kill itself with SIGTERM. The lines
// come from a loop in the background, so that the reading of what is
// typed has no timeout (bash's read -t loses what it read when it times
// out mid-line).
func numberedLines(dir string) string {
	return fmt.Sprintf(`(i=0; while :; do i=$((i+1)); printf 'line %%06d\n' $i; echo $i > %s/n; sleep 0.05; done) &
while read -r x; do
	printf 'got <%%s>\n' "$x"
	if [ "$x" = quit ]; then kill $!; kill -TERM $$; fi
done`, dir)
}

// linesPrinted returns the number the job wrote to dir/n, or 0.
func linesPrinted(dir string) int {
	b, _ := os.ReadFile(filepath.Join(dir, "n"))
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// logOnFailure logs what a client said on stderr if the test failed.
func logOnFailure(t *testing.T, stderr *lockedBuffer) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the client's stderr:\n%s", stderr)
		}
	})
}

// restart SIGKILLs the server, waits until the client whose stderr is
// given says it is unreachable and whileDown returns, starts the server
// again and waits until the client says it reconnected.
func (r *restartable) restart(t *testing.T, stderr *lockedBuffer, whileDown func()) {
	t.Helper()
	r.srv.kill()
	eventually(t, 30*time.Second, "the client to say the server is unreachable", func() bool {
		return strings.Contains(stderr.String(), "unreachable")
	})
	whileDown()
	r.srv = startServer(t, r.dataDir, r.args...)
	eventually(t, 60*time.Second, "the client to reconnect", func() bool {
		return strings.Contains(stderr.String(), "reconnected")
	})
}

// wantOneOutage checks that a client's stderr says once that the server
// at addr went away and once that it is back, in that order.
func wantOneOutage(t *testing.T, stderr, addr string) {
	t.Helper()
	lost := fmt.Sprintf("hodei: server %s unreachable, retrying for up to 10m0s…\r\n", addr)
	back := fmt.Sprintf("hodei: reconnected to %s after ", addr)
	if strings.Count(stderr, lost) != 1 || strings.Count(stderr, back) != 1 || strings.Index(stderr, lost) > strings.Index(stderr, back) {
		t.Errorf("stderr has not exactly one %q then one %q:\n%s", lost, back, stderr)
	}
}

// printed returns what the client printed on its terminal, without the
// mark exit writes after it.
func (c *ptyClient) printed() string {
	return strings.TrimSuffix(c.out.String(), exitedMark)
}

// TestAttachRidesOutServerRestart attaches to a running PTY job, types
// into it, and SIGKILLs and restarts the server meanwhile: attach says
// once that the server went away and once that it is back, keeps the
// terminal raw, and goes on printing after the last byte it printed —
// what it printed is exactly the end of the job's log, from the line its
// replay started at — typing after the restart reaches the job, attach
// exits with 128+15 when the job kills itself with SIGTERM, and the
// terminal is restored.
func TestAttachRidesOutServerRestart(t *testing.T) {
	r, dir := startRestartable(t), jobDir(t)
	id := strings.TrimSpace(mustRun(t, r.addr, "submit", "--", "bash", "-c", numberedLines(dir)))
	// More than a screenful, so that attach replays the last one only.
	eventually(t, 30*time.Second, "40 lines of output", func() bool { return linesPrinted(dir) >= 40 })

	var stderr lockedBuffer
	logOnFailure(t, &stderr)
	a := startPTYClientStderr(t, r.addr, 24, 80, &stderr, "attach", id)
	a.waitOutput(t, `line 000045\r\n`)
	a.typ(t, "before\r")
	a.waitOutput(t, `got <before>\r\n`)

	var atRestart int
	r.restart(t, &stderr, func() {
		// The job goes on while the server is away: 20 more lines, which
		// the agent keeps until the server is back.
		atRestart = len(a.printed())
		n := linesPrinted(dir)
		eventually(t, 30*time.Second, "20 lines printed while the server is away", func() bool { return linesPrinted(dir) >= n+20 })
	})
	// Keys typed after the restart reach the job: attach held the input
	// and takes it again.
	a.typ(t, "after\r")
	a.waitOutput(t, `got <after>\r\n`)
	if !strings.Contains(stderr.String(), "unreachable") || termios(t, a.tty) == a.before {
		t.Fatal("the terminal was restored while the server was away")
	}
	a.typ(t, "quit\r")
	if code := a.exit(t); code != 128+15 {
		t.Fatalf("attach exited %d, want 143 (the job's SIGTERM); stderr:\n%s", code, stderr.String())
	}
	if j := jobState(t, r.addr, id); j.GetState() != pb.JobState_JOB_STATE_FAILED || j.GetSignal() != 15 {
		t.Fatalf("job %s (signal %d), want FAILED by SIGTERM", j.GetState(), j.GetSignal())
	}

	log := mustRun(t, r.addr, "logs", id)
	got := a.printed()
	start := len(log) - len(got)
	switch {
	case !strings.HasSuffix(log, got):
		t.Fatalf("attach printed %d bytes (%d before the restart), which are not the end of the job's %d-byte log; "+
			"first difference at byte %d of what it printed", len(got), atRestart, len(log), firstDiff([]byte(got), []byte(log[max(start, 0):])))
	case start > 0 && log[start-1] != '\n':
		t.Fatalf("attach's output starts inside a line: %q", got[:min(len(got), 40)])
	case atRestart == 0 || len(got) <= atRestart:
		t.Fatalf("attach printed %d bytes before the restart and %d in all", atRestart, len(got))
	case start == 0 || strings.Count(got, "line ") > 200:
		t.Fatalf("attach printed %d of the log's %d bytes, %d lines: want the last screenful (24 lines) replayed, not the whole log",
			len(got), len(log), strings.Count(got, "line "))
	}
	if !regexp.MustCompile(`^hodei: attached to job ` + id).MatchString(stderr.String()) {
		t.Errorf("stderr does not start with the attach line:\n%s", stderr.String())
	}
	wantOneOutage(t, stderr.String(), r.addr)
	t.Logf("attach printed %d bytes of the %d-byte log (%d before the restart); stderr:\n%s", len(got), len(log), atRestart, stderr.String())
}

// TestInteractiveRunRidesOutServerRestart types into an interactive `hodei
// run` across a SIGKILL and restart of the server: the keys typed after it
// still reach the job, run's output is the job's log from its start with
// no gap or repeat, and Enter ~. still detaches, leaving the job running,
// with the terminal restored.
func TestInteractiveRunRidesOutServerRestart(t *testing.T) {
	r, dir := startRestartable(t), jobDir(t)
	var stderr lockedBuffer
	logOnFailure(t, &stderr)
	c := startPTYClientStderr(t, r.addr, 24, 80, &stderr, "run", "--", "bash", "-c", numberedLines(dir))
	c.waitOutput(t, `line 000005\r\n`)
	c.typ(t, "before\r")
	c.waitOutput(t, `got <before>\r\n`)

	r.restart(t, &stderr, func() {})
	c.typ(t, "after\r")
	c.waitOutput(t, `got <after>\r\n`)
	c.typ(t, "\r~.")
	if code := c.exit(t); code != 0 || !strings.Contains(stderr.String(), "detached") {
		t.Fatalf("detach after the restart: exit %d, stderr:\n%s", code, stderr.String())
	}
	m := jobIDLine.FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no job id on stderr:\n%s", stderr.String())
	}
	id := m[1]
	if j := jobState(t, r.addr, id); j.GetState() != pb.JobState_JOB_STATE_RUNNING {
		t.Fatalf("after detaching the job is %s, want RUNNING", j.GetState())
	}
	mustRun(t, r.addr, "jobs", "cancel", id)
	waitJob(t, dial(t, r.addr).Jobs(), id, 30*time.Second)

	log, got := mustRun(t, r.addr, "logs", id), c.printed()
	if !strings.HasPrefix(log, got) {
		t.Fatalf("run printed %d bytes, which are not the start of the job's %d-byte log; first difference at byte %d",
			len(got), len(log), firstDiff([]byte(got), []byte(log)))
	}
	wantOneOutage(t, stderr.String(), r.addr)
}
