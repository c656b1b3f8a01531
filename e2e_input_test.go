package main

import (
	"regexp"
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
