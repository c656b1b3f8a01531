package agent

import (
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hodei-jobs/hodei/job"
)

// feed sends data to the attempt's input as the server would: open, then
// the bytes at the offsets the agent expects, then the EOF.
func feed(t *testing.T, in *jobInput, data string, eof bool) {
	t.Helper()
	cr := in.open()
	off, limit, closed := cr.GetOffset(), cr.GetLimit(), cr.GetClosed()
	if closed {
		t.Fatal("input closed at open")
	}
	if int(limit-off) < len(data) {
		t.Fatalf("credit %d for %d bytes", limit-off, len(data))
	}
	if err := in.put(off, []byte(data), eof, "", 0); err != nil {
		t.Fatal(err)
	}
}

func TestInputReachesTheJob(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spec  attemptSpec
		input string
		want  string
	}{
		{"Pipe", attemptSpec{NoPTY: true, Stdin: job.StdinStream, Argv: []string{"wc", "-l"}}, "a\nb\n", "2\n"},
		{"PTY", attemptSpec{Stdin: job.StdinStream, Argv: []string{"wc", "-l"}}, "a\nb\n", "2\r\n"},
		// The last line has no newline: its EOF is sent twice, the first
		// handing over the line, the second ending the input.
		{"PTYOpenLine", attemptSpec{Stdin: job.StdinStream, Argv: []string{"wc", "-c"}}, "abc", "3\r\n"},
		// With a terminal's input the PTY echoes it, as a terminal does.
		{"PTYEcho", attemptSpec{Stdin: job.StdinTerminal, Argv: shArgv("read x; echo got $x")}, "hi\n", "hi\r\ngot hi\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := mustStartAttempt(t, tc.spec, attemptOptions{})
			feed(t, a.Input(), tc.input, true)
			out := readSpool(t, a.Output())
			if e := waitAttempt(t, a, 10*time.Second); e.ExitCode != 0 || strings.TrimSpace(string(out)) != strings.TrimSpace(tc.want) {
				t.Fatalf("exit %+v, output %q; want 0 and %q", e, out, tc.want)
			}
		})
	}
}

func TestInputNoneWithoutPTYIsDevNull(t *testing.T) {
	a := mustStartAttempt(t, attemptSpec{NoPTY: true, Argv: []string{"wc", "-c"}}, attemptOptions{})
	if !a.Input().open().GetClosed() {
		t.Fatal("a --no-pty job without stdin takes input")
	}
	out := readSpool(t, a.Output())
	waitAttempt(t, a, 10*time.Second)
	if strings.TrimSpace(string(out)) != "0" {
		t.Fatalf("output %q, want 0 bytes read from /dev/null", out)
	}
}

func TestResizeReachesTheJob(t *testing.T) {
	a := mustStartAttempt(t, attemptSpec{Stdin: job.StdinTerminal, Rows: 24, Cols: 80, Argv: shArgv("read x; stty size")}, attemptOptions{})
	if err := a.Input().resize(33, 101); err != nil {
		t.Fatal(err)
	}
	feed(t, a.Input(), "\n", false)
	out := readSpool(t, a.Output())
	waitAttempt(t, a, 10*time.Second)
	if !strings.Contains(string(out), "33 101") {
		t.Fatalf("output %q, want the new size 33 101", out)
	}
}

// TestInputFlowControl feeds a reader that never reads, as the server
// would: it sends whenever the credit allows. The agent's buffer never
// holds more than InputWindow, the credit stops growing once the pipe is
// full, and input beyond the credit is refused.
func TestInputFlowControl(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	in := newJobInput(w, false)
	var (
		mu    sync.Mutex
		limit int64
	)
	credited := make(chan struct{}, 1)
	in.setNotify(func(w int64, _ bool) {
		mu.Lock()
		limit = max(limit, w+InputWindow)
		mu.Unlock()
		select {
		case credited <- struct{}{}:
		default:
		}
	})
	cr := in.open()
	next, limit := cr.GetOffset(), cr.GetLimit()
	chunk := make([]byte, 1000)
	pipeSize, err := unix.FcntlInt(r.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	for {
		mu.Lock()
		room := limit - next
		mu.Unlock()
		if room > 0 {
			n := min(room, int64(len(chunk)))
			if err := in.put(next, chunk[:n], false, "", 0); err != nil {
				t.Fatal(err)
			}
			next += n
			continue
		}
		// No credit: done once the agent's buffer is full, the writer
		// being held up by the pipe nobody reads.
		in.mu.Lock()
		held, written := len(in.buf), in.written
		in.mu.Unlock()
		if held > InputWindow || next > int64(pipeSize)+InputWindow {
			t.Fatalf("the agent holds %d bytes of input (window %d), %d sent in all (pipe %d)", held, InputWindow, next, pipeSize)
		}
		if held == InputWindow {
			break
		}
		select {
		case <-credited:
		case <-deadline:
			t.Fatalf("no progress: %d bytes sent, %d held, %d written", next, held, written)
		}
	}
	// Everything sent is either in the pipe or in the window: the credit
	// never ran ahead of what was written.
	in.mu.Lock()
	written := in.written
	in.mu.Unlock()
	if next != written+InputWindow {
		t.Fatalf("sent %d, written %d: the credit is not written + window", next, written)
	}
	if written > int64(pipeSize) {
		t.Fatalf("written %d into a pipe of %d that nobody reads", written, pipeSize)
	}
	if err := in.put(next, []byte("x"), false, "", 0); !errors.Is(err, errInputCredit) {
		t.Fatalf("input beyond the credit: %v, want errInputCredit", err)
	}
	if err := in.put(next-1, []byte("x"), false, "", 0); !errors.Is(err, errInputOffset) {
		t.Fatalf("input at a stale offset: %v, want errInputOffset", err)
	}
	in.close() // cuts the blocked write and waits for the writer
	if !in.open().GetClosed() {
		t.Fatal("input still open after close")
	}
}

// TestInputOpenTellsTheSource: an open answers where the input stands in
// the client's terms too: the source of the last bytes received and the
// offset after them there, and what was written; bytes from an unnamed
// source leave no source.
func TestInputOpenTellsTheSource(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	in := newJobInput(w, false)
	defer in.close()
	in.open()
	if err := in.put(0, []byte("hello"), false, "c1", 100); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	cr := in.open()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for cr.GetWritten() < 5 {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("the writer never counted the bytes the job read: %v", cr)
		}
		cr = in.open()
	}
	if cr.GetSource() != "c1" || cr.GetSourceOffset() != 105 || cr.GetOffset() != 5 || cr.GetWritten() != 5 {
		t.Fatalf("open answers %v, want source c1 up to 105, 5 bytes received and written", cr)
	}
	if err := in.put(5, []byte("x"), false, "", 0); err != nil {
		t.Fatal(err)
	}
	if cr := in.open(); cr.GetSource() != "" {
		t.Fatalf("after unnamed input the open answers source %q, want none", cr.GetSource())
	}
}

// TestInputSourceOffsetBounded: input whose source offset plus length
// would pass MaxSourceOffset (and so could overflow) is refused, and the
// source the open tells stays the last one taken.
func TestInputSourceOffsetBounded(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	in := newJobInput(w, false)
	defer in.close()
	in.open()
	for _, off := range []int64{-1, MaxSourceOffset - 3, 1<<63 - 4} {
		if err := in.put(0, []byte("hello"), false, "m", off); !errors.Is(err, errInputSource) {
			t.Errorf("5 bytes at source offset %d: %v, want %v", off, err, errInputSource)
		}
	}
	if cr := in.open(); cr.GetSource() != "" || cr.GetSourceOffset() != 0 || cr.GetOffset() != 0 {
		t.Fatalf("after refused input the open answers %v, want nothing taken", cr)
	}
}
