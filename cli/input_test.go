package cli

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

func TestEscaper(t *testing.T) {
	for _, tc := range []struct {
		name  string
		feeds []string
		keys  string
		act   escAction
	}{
		{"DetachAfterEnter", []string{"ls\r~."}, "ls\r", escDetach},
		{"DetachAtStart", []string{"~."}, "", escDetach},
		{"DetachAfterNewline", []string{"x\n~.rest"}, "x\n", escDetach},
		{"NotAtLineStart", []string{"a~."}, "a~.", escNone},
		{"TildeTilde", []string{"\r~~."}, "\r~.", escNone},
		{"TildeOther", []string{"\r~x"}, "\r~x", escNone},
		{"TildeEnter", []string{"\r~\r~."}, "\r~\r", escDetach},
		{"Help", []string{"\r~?ls"}, "\rls", escHelp},
		{"SplitAcrossReads", []string{"ls\r", "~", "."}, "ls\r", escDetach},
		{"CtrlCPasses", []string{"\x03\r~~"}, "\x03\r~", escNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEscaper()
			var keys []byte
			act := escNone
			for _, f := range tc.feeds {
				var a escAction
				keys, a = e.feed(keys, []byte(f))
				if a != escNone {
					act = a
				}
				if a == escDetach {
					break
				}
			}
			if string(keys) != tc.keys || act != tc.act {
				t.Fatalf("keys %q, action %d; want %q, %d", keys, act, tc.keys, tc.act)
			}
		})
	}
}

// countingReader counts what was read from it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestPumpReadsNoMoreThanItCanSend: with no credit from the server (the
// job does not read), the client takes at most maxPending bytes from its
// stdin and then stops reading, so that whatever writes to it blocks; as
// input is sent, it reads again, never holding more than maxPending.
func TestPumpReadsNoMoreThanItCanSend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr, pw := io.Pipe()
		src := &countingReader{r: pr}
		p := newPump(nil, pumpConfig{jobID: "j", src: src, claim: true})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); p.readInput(ctx) }()
		var written atomic.Int64
		go func() {
			chunk := bytes.Repeat([]byte("y"), 1000)
			for {
				n, err := pw.Write(chunk)
				written.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
		synctest.Wait() // everyone blocked: the writer on the pipe, the reader on room
		if got := src.n.Load(); got > maxPending || got < maxPending-4096 {
			t.Fatalf("the client read %d bytes it cannot send; want about %d and never more", got, maxPending)
		}
		held := func() int {
			p.mu.Lock()
			defer p.mu.Unlock()
			return len(p.pending)
		}
		if held() > maxPending {
			t.Fatalf("the client holds %d bytes, more than %d", held(), maxPending)
		}
		// The sender takes 10,000 bytes (credit came): the reader reads
		// again, up to the bound.
		p.mu.Lock()
		before := src.n.Load()
		p.pending = p.pending[:copy(p.pending, p.pending[10000:])]
		p.mu.Unlock()
		signalChan(p.room)
		synctest.Wait()
		if got := src.n.Load() - before; got < 10000-4096 || got > 10000 || held() > maxPending {
			t.Fatalf("after 10000 bytes went out the client read %d more and holds %d", got, held())
		}
		cancel()
		pw.CloseWithError(io.ErrClosedPipe)
		<-done
	})
}

// TestPumpDropsKeysItCannotSend: keys typed while another client holds
// the input, or on a read-only attach, are not queued, and the user is
// told why once.
func TestPumpDropsKeysItCannotSend(t *testing.T) {
	var notes strings.Builder
	p := newPump(nil, pumpConfig{jobID: "j", notes: &notes})
	p.holder = "alice"
	p.take([]byte("ls\r"))
	p.take([]byte("pwd\r"))
	if len(p.pending) != 0 || strings.Count(notes.String(), "alice holds the job's input") != 1 {
		t.Fatalf("pending %q, notes %q; want nothing queued and one notice", p.pending, notes.String())
	}
	p.holder = ""
	p.take([]byte("ls\r"))
	if string(p.pending) != "ls\r" {
		t.Fatalf("pending %q once the input is free, want the keys", p.pending)
	}
}

// TestRunStdinModes checks what run asks of the server for its stdin: a
// stream of bytes by default when stdin is not a terminal; with -i=false
// or --no-stdin nothing for a job without a PTY, and an empty stream (EOF
// at once) for one with a PTY.
func TestRunStdinModes(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want hodeipb.StdinMode
	}{
		{"Default", []string{"run", "--", "true"}, hodeipb.StdinMode_STDIN_STREAM},
		{"NoPTY", []string{"run", "--no-pty", "--", "true"}, hodeipb.StdinMode_STDIN_STREAM},
		// -i=false is /dev/null: a PTY job gets an input that ends at once.
		{"IFalse", []string{"run", "-i=false", "--", "true"}, hodeipb.StdinMode_STDIN_STREAM},
		{"NoStdin", []string{"run", "--no-stdin", "--", "true"}, hodeipb.StdinMode_STDIN_STREAM},
		{"IFalseNoPTY", []string{"run", "-i=false", "--no-pty", "--", "true"}, hodeipb.StdinMode_STDIN_NONE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.jobs.jobs = []*hodeipb.Job{{Id: "01J00000000000000000000001", State: hodeipb.JobState_JOB_STATE_COMPLETED}}
			r := h.run(t, tc.args...)
			if r.code != 0 || r.stderr != "hodei: job 01J00000000000000000000001\n" {
				t.Fatalf("exit %d, stderr %q; want 0 and the job's id", r.code, r.stderr)
			}
			h.jobs.mu.Lock()
			defer h.jobs.mu.Unlock()
			if got := h.jobs.submitted[0].GetStdin(); got != tc.want {
				t.Fatalf("spec.stdin %s, want %s", got, tc.want)
			}
		})
	}
}
