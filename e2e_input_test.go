package main

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
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
