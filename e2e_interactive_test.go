package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	pb "github.com/hodei-jobs/hodei/proto"
)

// ptyClient is the CLI run by a test on a terminal of its own: the test
// holds the PTY's master, types into it and reads what the CLI prints.
type ptyClient struct {
	cmd    *exec.Cmd
	master *os.File
	tty    *os.File // the CLI's terminal; the test keeps it open to read its mode
	out    *lockedBuffer
	done   chan struct{}
	code   int
	before unix.Termios // the terminal's mode before the CLI started
}

// startPTYClient runs the CLI against addr with a rows×cols terminal as its
// stdin, stdout and stderr (and controlling terminal, so that it gets
// SIGWINCH).
func startPTYClient(t *testing.T, addr string, rows, cols uint16, args ...string) *ptyClient {
	t.Helper()
	return startPTYClientStderr(t, addr, rows, cols, nil, args...)
}

// startPTYClientStderr is startPTYClient with the CLI's stderr going to
// stderr instead of the terminal (nil: the terminal), so that the
// terminal shows the job's output alone.
func startPTYClientStderr(t *testing.T, addr string, rows, cols uint16, stderr io.Writer, args ...string) *ptyClient {
	t.Helper()
	master, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := pty.Setsize(master, &pty.Winsize{Rows: rows, Cols: cols}); err != nil {
		t.Fatal(err)
	}
	c := &ptyClient{cmd: cliCmd(addr, args...), master: master, tty: tty, out: &lockedBuffer{}, done: make(chan struct{})}
	c.before = termios(t, tty)
	c.cmd.Stdin, c.cmd.Stdout, c.cmd.Stderr = tty, tty, tty
	if stderr != nil {
		c.cmd.Stderr = stderr
	}
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	read := make(chan struct{})
	go func() { defer close(read); io.Copy(c.out, master) }()
	go func() {
		err := c.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			c.code = ee.ExitCode()
		}
		close(c.done)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
		tty.Close()
		master.Close()
		<-read
	})
	return c
}

func termios(t *testing.T, tty *os.File) unix.Termios {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return *tio
}

// typ types s on the client's terminal.
func (c *ptyClient) typ(t *testing.T, s string) {
	t.Helper()
	if _, err := c.master.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

// waitOutput waits until the client printed something re matches; on a
// timeout it shows what the client had printed by then.
func (c *ptyClient) waitOutput(t *testing.T, re string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !rx.MatchString(c.out.String()) {
		select {
		case <-deadline:
			t.Fatalf("timed out after 30s waiting for output matching %s; got %s", re, strings.ReplaceAll(c.out.String(), "\r", `\r`))
		case <-tick.C:
		}
	}
}

// exit waits for the client to exit and returns its exit code, after
// checking that it left its terminal in the mode it found it in.
func (c *ptyClient) exit(t *testing.T) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the client did not exit; it printed %q", c.out.String())
	}
	if after := termios(t, c.tty); after != c.before {
		t.Fatalf("the terminal's mode was not restored:\nbefore %+v\nafter  %+v", c.before, after)
	}
	// Everything the client printed is read once this mark, written
	// behind it on the same terminal, is.
	if _, err := c.tty.Write([]byte(exitedMark)); err != nil {
		t.Fatal(err)
	}
	c.waitOutput(t, regexp.QuoteMeta(exitedMark))
	return c.code
}

// exitedMark follows the client's output once it has exited.
const exitedMark = "<client exited>"

var jobIDLine = regexp.MustCompile(`hodei: job ([0-9A-Z]{26})`)

// jobID returns the id the client printed on starting.
func (c *ptyClient) jobID(t *testing.T) string {
	t.Helper()
	c.waitOutput(t, jobIDLine.String())
	return jobIDLine.FindStringSubmatch(c.out.String())[1]
}

func jobState(t *testing.T, addr, id string) *pb.Job {
	t.Helper()
	j, err := dial(t, addr).Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// TestInteractiveRunTypesIntoBash types into `hodei run -- bash` before
// bash is even up: the keys are held until the job starts, then bash runs
// them and the client exits with bash's code, its terminal restored.
func TestInteractiveRunTypesIntoBash(t *testing.T) {
	srv, _ := cluster(t)
	c := startPTYClient(t, srv.grpcAddr, 24, 80, "run", "--", "bash")
	c.typ(t, "echo hi; exit 3\r")
	if code := c.exit(t); code != 3 {
		t.Fatalf("exit %d, want 3; output %q", code, c.out.String())
	}
	if !regexp.MustCompile(`(?m)^\r?hi\r$`).MatchString(c.out.String()) {
		t.Fatalf("output %q, want a line hi", c.out.String())
	}
}

// TestInteractiveResize changes the size of the client's terminal: the
// job's PTY follows.
func TestInteractiveResize(t *testing.T) {
	srv, _ := cluster(t)
	c := startPTYClient(t, srv.grpcAddr, 30, 100, "run", "--", "bash")
	c.typ(t, "stty size\r")
	c.waitOutput(t, `(?m)^\r?30 100\r$`)
	if err := pty.Setsize(c.master, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	// The resize and the next keys travel apart: ask until it shows.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for !regexp.MustCompile(`(?m)^\r?40 120\r$`).MatchString(c.out.String()) {
		c.typ(t, "stty size\r")
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("the job never saw 40 120; output %q", c.out.String())
		}
	}
	c.typ(t, "exit\r")
	if code := c.exit(t); code != 0 {
		t.Fatalf("exit %d; output %q", code, c.out.String())
	}
}

// TestPipedStdinReachesTheJob pipes bytes into run: a job without a PTY
// reads them from its stdin pipe, one with a PTY from its terminal (which
// does not echo them back), and both see EOF after them.
func TestPipedStdinReachesTheJob(t *testing.T) {
	srv, _ := cluster(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"NoPTY", []string{"run", "--no-pty", "--", "wc", "-l"}, "2\n"},
		{"PTY", []string{"run", "--", "wc", "-l"}, "2\r\n"},
		{"PTYLastLineOpen", []string{"run", "--", "sh", "-c", "cat; echo"}, "a\r\nb\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := cliCmd(srv.grpcAddr, tc.args...)
			cmd.Stdin = strings.NewReader("a\nb\n")
			if tc.name == "PTYLastLineOpen" {
				cmd.Stdin = strings.NewReader("a\nb")
			}
			out, errOut, code := runCmd(t, cmd)
			if code != 0 || out != tc.want || !jobIDLine.MatchString(errOut) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 0, %q and the job's id", code, out, errOut, tc.want)
			}
		})
	}
	// -i=false keeps stdin away from the job: it reads /dev/null
	// (TestNoStdinIsDevNull has a PTY job).
	cmd := cliCmd(srv.grpcAddr, "run", "-i=false", "--no-pty", "--", "sh", "-c", "wc -c")
	cmd.Stdin = strings.NewReader("abc")
	if out, errOut, code := runCmd(t, cmd); code != 0 || strings.TrimSpace(out) != "0" {
		t.Fatalf("-i=false: exit %d, stdout %q, stderr %q; want 0 bytes read", code, out, errOut)
	}
}

// TestDetachAndAttach detaches from a running bash with Enter ~., which
// leaves it running, and gets back with hodei attach: the last screenful
// comes first, and typing goes on.
func TestDetachAndAttach(t *testing.T) {
	srv, _ := cluster(t)
	c := startPTYClient(t, srv.grpcAddr, 24, 80, "run", "--", "bash")
	id := c.jobID(t)
	c.typ(t, "echo marker-$((6*7))\r")
	c.waitOutput(t, `(?m)^\r?marker-42\r$`)
	c.typ(t, "\r~.")
	if code := c.exit(t); code != 0 || !strings.Contains(c.out.String(), "detached") {
		t.Fatalf("detach: exit %d, output %q", code, c.out.String())
	}
	if j := jobState(t, srv.grpcAddr, id); j.GetState() != pb.JobState_JOB_STATE_RUNNING {
		t.Fatalf("after detaching the job is %s, want RUNNING", j.GetState())
	}

	a := startPTYClient(t, srv.grpcAddr, 24, 80, "attach", id)
	a.waitOutput(t, `(?m)^\r?marker-42\r$`) // the replayed screen
	a.typ(t, "echo again-$((2*3))\r")
	a.waitOutput(t, `(?m)^\r?again-6\r$`)
	a.typ(t, "exit 4\r")
	if code := a.exit(t); code != 4 {
		t.Fatalf("attach: exit %d, want the job's 4; output %q", code, a.out.String())
	}
	// A job that has ended cannot be attached to.
	_, errOut, code := hodei(t, srv.grpcAddr, "attach", id)
	if code == 0 || !strings.Contains(errOut, "has ended") {
		t.Fatalf("attach to an ended job: exit %d, stderr %q", code, errOut)
	}
}

// TestInteractiveCtrlC: Ctrl-C goes to the job as a key, as with srun
// --pty: the PTY turns it into SIGINT for the job, which ends of it; run
// exits and restores the terminal.
func TestInteractiveCtrlC(t *testing.T) {
	srv, _ := cluster(t)
	c := startPTYClient(t, srv.grpcAddr, 24, 80, "run", "--", "sh", "-c", "echo ready; exec sleep 600")
	id := c.jobID(t)
	c.waitOutput(t, `ready`)
	c.typ(t, "\x03")
	if code := c.exit(t); code == 0 {
		t.Fatalf("exit 0 after Ctrl-C; output %q", c.out.String())
	}
	j := jobState(t, srv.grpcAddr, id)
	if j.GetState() != pb.JobState_JOB_STATE_FAILED || !strings.Contains(j.GetReason(), "interrupt") {
		t.Fatalf("job %s (%s), want FAILED by the interrupt the job got from its terminal", j.GetState(), j.GetReason())
	}
}

// TestInteractiveServerKilled kills the server under an interactive run:
// the client ends (or, riding the restart out, detaches on Enter ~.) and
// its terminal is restored.
func TestInteractiveServerKilled(t *testing.T) {
	srv, _ := cluster(t)
	c := startPTYClient(t, srv.grpcAddr, 24, 80, "run", "--", "sh", "-c", "echo ready; exec sleep 600")
	c.waitOutput(t, `ready`)
	srv.kill()
	c.typ(t, "\r~.")
	c.exit(t)
}

// TestAttachReadOnlyWatches: a --read-only attach sees the job's output
// while another client types; its own keys are not sent, and it is told.
func TestAttachReadOnlyWatches(t *testing.T) {
	srv, _ := cluster(t)
	c := startPTYClient(t, srv.grpcAddr, 24, 80, "run", "--", "bash")
	id := c.jobID(t)
	c.typ(t, "echo up-$((0+1))\r")
	c.waitOutput(t, `(?m)^\r?up-1\r$`)
	w := startPTYClient(t, srv.grpcAddr, 24, 80, "attach", "--read-only", id)
	w.waitOutput(t, `attached to job \S+ \(read-only: your keys are not sent; Enter ~\. detaches\)`)
	w.waitOutput(t, `(?m)^\r?up-1\r$`)
	w.typ(t, "echo nope\r")
	w.waitOutput(t, `read-only: your keys are not sent \(Enter ~\. detaches\)`)
	c.typ(t, "echo yes-$((1+1))\r")
	w.waitOutput(t, `(?m)^\r?yes-2\r$`)
	w.typ(t, "\r~.")
	if code := w.exit(t); code != 0 {
		t.Fatalf("read-only attach: exit %d; output %q", code, w.out.String())
	}
	c.typ(t, "exit\r")
	if code := c.exit(t); code != 0 || strings.Contains(c.out.String(), "nope") {
		t.Fatalf("run: exit %d, output %q; want 0 and none of the watcher's keys", code, c.out.String())
	}
}
