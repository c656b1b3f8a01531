package agent

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	MaybeSupervise("") // the agents under test start their supervisors from this binary
	goleak.VerifyTestMain(m)
}

// shArgv returns the argv running script with /bin/sh -c.
func shArgv(script string) []string { return []string{"/bin/sh", "-c", script} }

// mustStartAttempt starts spec with a temp spool dir (unless opts names one) and
// closes the attempt after the test.
func mustStartAttempt(tb testing.TB, spec attemptSpec, opts attemptOptions) *attempt {
	tb.Helper()
	if opts.SpoolDir == "" {
		opts.SpoolDir = tb.TempDir()
	}
	if spec.JobID == "" {
		spec.JobID = "job"
	}
	if spec.Attempt == 0 {
		spec.Attempt = 1
	}
	a := startAttempt(spec, opts)
	tb.Cleanup(func() {
		if err := a.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return a
}

// readSpool reads sp from 0 to its end, acknowledging as it goes.
func readSpool(tb testing.TB, sp *spool) []byte {
	tb.Helper()
	ctx := ctxForTest(tb)
	var all []byte
	for {
		data, eof, err := sp.Read(ctx, int64(len(all)), 0)
		if err != nil {
			tb.Fatalf("read output at %d: %v", len(all), err)
		}
		all = append(all, data...)
		sp.Ack(int64(len(all)))
		if eof {
			return all
		}
	}
}

// waitAttempt waits for the attempt to finish within d.
func waitAttempt(tb testing.TB, a *attempt, d time.Duration) exit {
	tb.Helper()
	select {
	case <-a.Done():
		return a.Exit()
	case <-time.After(d):
		tb.Fatalf("attempt not done after %s", d)
		return exit{}
	}
}

// attemptResult is what a finished attempt produced.
type attemptResult struct {
	exit          exit
	out, stderr   string
	pid           int
	startedAtTime time.Time
}

// runAttempt runs spec to the end, reading both streams, and returns the result.
func runAttempt(tb testing.TB, spec attemptSpec, opts attemptOptions) attemptResult {
	tb.Helper()
	a := mustStartAttempt(tb, spec, opts)
	errc := make(chan []byte, 1)
	go func() { errc <- readSpool(tb, a.Stderr()) }()
	out := readSpool(tb, a.Output())
	stderr := <-errc
	e := waitAttempt(tb, a, 20*time.Second)
	pid, at, _ := a.Started()
	return attemptResult{exit: e, out: string(out), stderr: string(stderr), pid: pid, startedAtTime: at}
}

// waitGroupGone waits until no process of group pgid is left. Killed
// orphans are reaped by init, which may take a moment (seconds, in some
// containers), hence the polling.
func waitGroupGone(tb testing.TB, pgid int) {
	tb.Helper()
	pollUntil(tb, "process group "+strconv.Itoa(pgid)+" to be gone", func() bool {
		return errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
	})
}

// waitOutput waits until the spool's file contains s.
func waitOutput(tb testing.TB, sp *spool, s string) {
	tb.Helper()
	pollUntil(tb, "output "+strconv.Quote(s), func() bool {
		data, _ := os.ReadFile(sp.Path())
		return bytes.Contains(data, []byte(s))
	})
}

func TestAttemptPTY(t *testing.T) {
	t.Run("ExitCode", func(t *testing.T) {
		r := runAttempt(t, attemptSpec{Argv: shArgv("echo hello; exit 3")}, attemptOptions{})
		if !strings.Contains(r.out, "hello\r\n") {
			t.Errorf("output = %q, want hello\\r\\n in it", r.out)
		}
		if r.exit.Outcome != exited || r.exit.ExitCode != 3 || r.exit.Reason != "exit status 3" {
			t.Errorf("exit = %+v, want exited with code 3", r.exit)
		}
		if r.pid <= 0 || r.startedAtTime.IsZero() || r.exit.Finished.Before(r.startedAtTime) {
			t.Errorf("pid %d, started %v, finished %v", r.pid, r.startedAtTime, r.exit.Finished)
		}
		if r.stderr != "" {
			t.Errorf("stderr with a PTY = %q, want empty", r.stderr)
		}
	})
	t.Run("KilledBySignal", func(t *testing.T) {
		// A process that dies of a signal nobody at the agent sent still
		// exits, with the signal's number: run turns it into 128+N.
		for _, tc := range []struct {
			sig  string
			want int
		}{{"KILL", 9}, {"TERM", 15}} {
			r := runAttempt(t, attemptSpec{Argv: shArgv("kill -" + tc.sig + " $$")}, attemptOptions{})
			if r.exit.Outcome != exited || r.exit.ExitCode != -1 || r.exit.Signal != tc.want {
				t.Errorf("kill -%s: exit = %+v, want exited, code -1, signal %d", tc.sig, r.exit, tc.want)
			}
		}
	})
	t.Run("TTY", func(t *testing.T) {
		r := runAttempt(t, attemptSpec{Argv: []string{"tty"}}, attemptOptions{})
		if !strings.HasPrefix(r.out, "/dev/pts/") || r.exit.ExitCode != 0 || r.exit.Reason != "" {
			t.Errorf("tty: output %q, exit %+v; want /dev/pts/N and 0", r.out, r.exit)
		}
	})
	t.Run("Size", func(t *testing.T) {
		r := runAttempt(t, attemptSpec{Argv: []string{"stty", "size"}, Rows: 30, Cols: 100}, attemptOptions{})
		if r.out != "30 100\r\n" {
			t.Errorf("stty size = %q, want 30 100", r.out)
		}
		r = runAttempt(t, attemptSpec{Argv: []string{"stty", "size"}}, attemptOptions{})
		if r.out != "24 80\r\n" {
			t.Errorf("default stty size = %q, want 24 80", r.out)
		}
	})
}

func TestAttemptPipes(t *testing.T) {
	r := runAttempt(t, attemptSpec{Argv: shArgv("echo out; echo err >&2; tty || true"), NoPTY: true}, attemptOptions{})
	if r.out != "out\nnot a tty\n" || r.stderr != "err\n" {
		t.Errorf("stdout %q, stderr %q; want \"out\\nnot a tty\\n\", \"err\\n\"", r.out, r.stderr)
	}
	if r.exit.Outcome != exited || r.exit.ExitCode != 0 {
		t.Errorf("exit = %+v", r.exit)
	}
}

func TestAttemptUsage(t *testing.T) {
	r := runAttempt(t, attemptSpec{Argv: shArgv("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"), NoPTY: true}, attemptOptions{})
	if r.exit.CPUTime <= 0 || r.exit.MaxRSSKiB <= 0 {
		t.Errorf("usage: cpu %s, max rss %d KiB; want both > 0", r.exit.CPUTime, r.exit.MaxRSSKiB)
	}
}

func TestAttemptLargeOutput(t *testing.T) {
	const size = 20 << 20
	for _, tc := range []struct {
		name  string
		noPTY bool
		setup string
	}{
		{"Pipes", true, ""},
		{"PTY", false, "stty -opost; "}, // no \n → \r\n, so the bytes compare
	} {
		t.Run(tc.name, func(t *testing.T) {
			copyPath := filepath.Join(t.TempDir(), "copy")
			script := tc.setup + "head -c " + strconv.Itoa(size) + ` /dev/urandom | base64 | tee "$COPY"`
			r := runAttempt(t, attemptSpec{Argv: shArgv(script), NoPTY: tc.noPTY, Env: map[string]string{"COPY": copyPath}}, attemptOptions{})
			want, err := os.ReadFile(copyPath)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) < size || sha256.Sum256([]byte(r.out)) != sha256.Sum256(want) {
				t.Fatalf("output: %d bytes, the job wrote %d; sha256 differs", len(r.out), len(want))
			}
			if r.exit.ExitCode != 0 {
				t.Errorf("exit = %+v", r.exit)
			}
		})
	}
}

func TestAttemptBackpressure(t *testing.T) {
	const limit = 64 << 10
	mark := filepath.Join(t.TempDir(), "finished")
	a := mustStartAttempt(t, attemptSpec{
		Argv:  shArgv(`head -c 1048576 /dev/zero; touch "$MARK"`),
		Env:   map[string]string{"MARK": mark},
		NoPTY: true,
	}, attemptOptions{BufferLimit: limit})

	out := a.Output()
	pollUntil(t, "the spool to fill", func() bool { return out.Size() >= limit })
	// Nobody acks: the job must stay blocked in its writes.
	select {
	case <-a.Done():
		t.Fatal("attempt finished with its output unacknowledged")
	case <-time.After(200 * time.Millisecond):
	}
	if n := out.Size(); n != limit {
		t.Fatalf("Size = %d without acks, want it stopped at the limit %d", n, limit)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("the job got past its writes without acks")
	}

	got := readSpool(t, out) // acks as it reads: the job resumes
	if len(got) != 1<<20 || bytes.ContainsFunc(got, func(r rune) bool { return r != 0 }) {
		t.Fatalf("read %d bytes, want 1 MiB of zeros", len(got))
	}
	e := waitAttempt(t, a, 10*time.Second)
	if e.ExitCode != 0 {
		t.Fatalf("exit = %+v", e)
	}
	if _, err := os.Stat(mark); err != nil {
		t.Fatalf("the job did not finish: %v", err)
	}
}

// TestAttemptExitRightAfterWrite checks that the bytes a process writes just
// before it exits are not lost between its exit and the end of the output.
func TestAttemptExitRightAfterWrite(t *testing.T) {
	for i := range 50 {
		r := runAttempt(t, attemptSpec{Argv: shArgv("printf %s abc"), Attempt: i + 1}, attemptOptions{})
		if r.out != "abc" {
			t.Fatalf("run %d: output %q, want abc", i, r.out)
		}
	}
}

func TestAttemptStartFailure(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	badInterp := filepath.Join(dir, "bad-interp")
	if err := os.WriteFile(plain, []byte("echo hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badInterp, []byte("#!/nonexistent/interp\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		spec attemptSpec
		want []string // in the reason
	}{
		{"NotFound", attemptSpec{Argv: []string{"hodei-no-such-command"}}, []string{`"hodei-no-such-command" not found in PATH`}},
		{"NoSuchPath", attemptSpec{Argv: []string{"/nonexistent/cmd"}}, []string{"/nonexistent/cmd", "no such file or directory"}},
		{"NotExecutable", attemptSpec{Argv: []string{plain}}, []string{plain, "not executable"}},
		{"RelativeNotExecutable", attemptSpec{Argv: []string{"./plain"}, Dir: dir}, []string{"./plain", "not executable"}},
		{"IsDirectory", attemptSpec{Argv: []string{dir}}, []string{dir, "is a directory"}},
		{"BadInterpreter", attemptSpec{Argv: []string{badInterp}}, []string{badInterp, "no such file or directory"}},
		{"BadWorkingDir", attemptSpec{Argv: []string{"true"}, Dir: "/nonexistent"}, []string{"working dir", "/nonexistent", "no such file or directory"}},
		{"WorkingDirIsFile", attemptSpec{Argv: []string{"true"}, Dir: plain}, []string{"working dir", plain, "not a directory"}},
		{"EmptyCommand", attemptSpec{}, []string{"empty command"}},
		{"BadJobID", attemptSpec{Argv: []string{"true"}, JobID: "../x"}, []string{"job id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spoolDir := t.TempDir()
			a := mustStartAttempt(t, tc.spec, attemptOptions{SpoolDir: spoolDir})
			select {
			case <-a.Done():
			default:
				t.Fatal("Done not closed at once after a start failure")
			}
			e := a.Exit()
			if e.Outcome != startFailed || e.ExitCode != -1 || e.Finished.IsZero() {
				t.Errorf("exit = %+v, want startFailed, -1", e)
			}
			for _, w := range tc.want {
				if !strings.Contains(e.Reason, w) {
					t.Errorf("reason %q does not mention %q", e.Reason, w)
				}
			}
			if _, _, ok := a.Started(); ok {
				t.Error("Started ok after a start failure")
			}
			for _, sp := range []*spool{a.Output(), a.Stderr()} {
				if data, eof, err := sp.Read(ctxForTest(t), 0, 0); len(data) != 0 || !eof || err != nil {
					t.Errorf("Read = %q, %v, %v; want empty eof", data, eof, err)
				}
			}
			if left, _ := os.ReadDir(spoolDir); len(left) != 0 {
				t.Errorf("spool files left: %v", left)
			}
		})
	}
}

func TestAttemptStop(t *testing.T) {
	const grace = time.Second
	for _, tc := range []struct {
		name     string
		script   string
		noPTY    bool
		wantCode int
		wantSig  int
		want     string // in the reason
	}{
		{"TrapTERM", `trap 'exit 0' TERM; echo ready; sleep 60 & wait`, false, 0, 0, "(exit status 0)"},
		{"IgnoreTERM", `trap '' TERM; echo ready; sleep 60`, false, -1, 9, "(signal: killed)"},
		{"IgnoreTERMPipes", `trap '' TERM; echo ready; sleep 60`, true, -1, 9, "(signal: killed)"},
		{"Grandchild", `sleep 60 & echo ready; wait`, false, -1, 15, "(signal: terminated)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := mustStartAttempt(t, attemptSpec{Argv: shArgv(tc.script), NoPTY: tc.noPTY}, attemptOptions{})
			waitOutput(t, a.Output(), "ready")
			pid, _, ok := a.Started()
			if !ok {
				t.Fatal("not started")
			}
			a.Stop("cancelled by test", grace)
			a.Stop("second stop", time.Millisecond) // no effect
			e := waitAttempt(t, a, grace+time.Second)
			if e.Outcome != killed || e.ExitCode != tc.wantCode || e.Signal != tc.wantSig ||
				!strings.HasPrefix(e.Reason, "cancelled by test") || !strings.Contains(e.Reason, tc.want) {
				t.Errorf("exit = %+v, want killed, code %d, signal %d, reason with %q", e, tc.wantCode, tc.wantSig, tc.want)
			}
			waitGroupGone(t, pid)
		})
	}

	t.Run("AfterExit", func(t *testing.T) {
		a := mustStartAttempt(t, attemptSpec{Argv: []string{"true"}}, attemptOptions{})
		waitAttempt(t, a, 10*time.Second)
		a.Stop("too late", grace)
		if e := a.Exit(); e.Outcome != exited || e.ExitCode != 0 {
			t.Errorf("exit = %+v, want exited 0", e)
		}
	})
}

// TestAttemptLeftovers checks that processes a job leaves behind in its
// group are killed when its leader exits, with a PTY or pipes.
func TestAttemptLeftovers(t *testing.T) {
	for _, noPTY := range []bool{false, true} {
		t.Run("NoPTY="+strconv.FormatBool(noPTY), func(t *testing.T) {
			r := runAttempt(t, attemptSpec{Argv: shArgv(`trap '' HUP; sleep 60 & echo bye`), NoPTY: noPTY}, attemptOptions{})
			if !strings.Contains(r.out, "bye") || r.exit.Outcome != exited || r.exit.ExitCode != 0 {
				t.Errorf("output %q, exit %+v", r.out, r.exit)
			}
			waitGroupGone(t, r.pid)
		})
	}
}

func TestAttemptTimeout(t *testing.T) {
	a := mustStartAttempt(t, attemptSpec{Argv: []string{"sleep", "60"}, Timeout: 300 * time.Millisecond}, attemptOptions{KillGrace: time.Second})
	e := waitAttempt(t, a, 5*time.Second)
	if e.Outcome != timedOut || e.ExitCode != -1 || !strings.Contains(e.Reason, "timed out after 300ms") {
		t.Errorf("exit = %+v, want timedOut", e)
	}
	pid, at, _ := a.Started()
	if d := e.Finished.Sub(at); d < 300*time.Millisecond {
		t.Errorf("finished %s after start, before the timeout", d)
	}
	waitGroupGone(t, pid)
}

func TestAttemptEnv(t *testing.T) {
	dir := t.TempDir()
	script := `echo "$HODEI_JOB_ID $HODEI_ATTEMPT $FOO"; [ "$TOKEN" = s3cret-value ] && echo token-ok; echo "TOKEN=$TOKEN"; pwd`
	spec := attemptSpec{
		JobID:     "01JOBID",
		Attempt:   2,
		Argv:      shArgv(script),
		Env:       map[string]string{"FOO": "bar", "HODEI_JOB_ID": "not this"},
		SecretEnv: map[string]string{"TOKEN": "s3cret-value"},
		Dir:       dir,
		NoPTY:     true,
	}
	r := runAttempt(t, spec, attemptOptions{})
	if want := "01JOBID 2 bar\ntoken-ok\nTOKEN=***\n" + dir + "\n"; r.out != want {
		t.Errorf("output %q, want %q", r.out, want)
	}

	t.Run("DefaultDir", func(t *testing.T) {
		r := runAttempt(t, attemptSpec{Argv: []string{"pwd"}, NoPTY: true}, attemptOptions{})
		if r.out != "/\n" {
			t.Errorf("pwd = %q, want /", r.out)
		}
	})
	t.Run("SecretMaskedInPTY", func(t *testing.T) {
		// Written in two pieces so that the secret may straddle two reads.
		spec := attemptSpec{
			Argv:      shArgv(`printf 'a %s' "${T%value}"; printf '%s b' value; echo " $T"`),
			SecretEnv: map[string]string{"T": "s3cret-value", "SHORT": "ab"},
		}
		r := runAttempt(t, spec, attemptOptions{})
		if r.out != "a *** b ***\r\n" {
			t.Errorf("output %q, want the secret masked", r.out)
		}
	})
}

func TestAttemptDrainTimeout(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	// The escaped process is in a session of its own, out of the job's group,
	// and keeps the terminal open: the output cannot reach its end.
	script := `setsid sh -c 'echo $$ > "$PIDFILE"; exec sleep 30' & while [ ! -s "$PIDFILE" ]; do :; done; echo hi`
	a := mustStartAttempt(t, attemptSpec{Argv: shArgv(script), Env: map[string]string{"PIDFILE": pidFile}},
		attemptOptions{DrainTimeout: 300 * time.Millisecond})
	e := waitAttempt(t, a, 5*time.Second)
	if e.Outcome != exited || e.ExitCode != 0 || e.Reason != "" || !strings.Contains(e.OutputLost, "left the job's group") || e.WriteErr != "" {
		t.Errorf("exit = %+v, want exited 0 and the output cut in OutputLost", e)
	}
	if out := string(readSpool(t, a.Output())); out != "hi\r\n" {
		t.Errorf("output %q, want hi", out)
	}
}

func TestAttemptCloseRunning(t *testing.T) {
	a := startAttempt(attemptSpec{JobID: "job", Attempt: 1, Argv: []string{"sleep", "60"}}, attemptOptions{SpoolDir: t.TempDir(), KillGrace: time.Minute})
	pid, _, _ := a.Started()
	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close of a running attempt did not return")
	}
	if e := a.Exit(); e.Outcome != killed || !strings.Contains(e.Reason, "attempt closed") {
		t.Errorf("exit = %+v, want killed by close", e)
	}
	if _, err := os.Stat(a.Output().Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spool file after Close: %v", err)
	}
	waitGroupGone(t, pid)
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
