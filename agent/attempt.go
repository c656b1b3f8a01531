package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hodei-jobs/hodei/job"
)

// Defaults of attemptOptions.
const (
	defaultBufferLimit  = 8 << 20
	defaultKillGrace    = 10 * time.Second
	defaultDrainTimeout = 5 * time.Second
	defaultRows         = 24
	defaultCols         = 80
)

// pumpBufSize is the read size of an output pump.
const pumpBufSize = 64 << 10

// pumpBufs holds the pumps' read buffers between attempts. A trivial job
// reads a few bytes, and a buffer made per attempt was nearly all that the
// supervisor allocated: its garbage collections came from these alone.
var pumpBufs = sync.Pool{New: func() any { return new([pumpBufSize]byte) }}

// attemptSpec is what to run: one attempt of a job on this host.
type attemptSpec struct {
	JobID   string
	Attempt int
	// Argv is already resolved: the command's argv, or /bin/sh -c script.
	// Argv[0] is looked up in the job's PATH when it has no slash; a
	// relative path with a slash is relative to Dir.
	Argv []string
	// Env is added on top of a minimal base (PATH, HOME, USER, LANG, and
	// TERM with a PTY, taken from the agent's own environment when set;
	// HOME, USER and LOGNAME from the job's user when it is not the
	// agent's), then SecretEnv, then HODEI_JOB_ID and HODEI_ATTEMPT, which
	// win.
	Env map[string]string
	// SecretEnv is passed like Env; its values (of at least
	// job.MinSecretLen bytes) are replaced with "***" in the output, in
	// the forms secretForms lists.
	SecretEnv map[string]string
	// Dir is the working directory. "" means "/", as for a system service
	// (a job that writes relative paths must say where), or the home of
	// the job's user when the agent switched to one and it exists.
	Dir string
	// Tenant is the job's tenant, named in refusals; RunAs is the user its
	// tenant runs jobs as ("": none named). attemptOptions.Users decides
	// from them who the job runs as.
	Tenant, RunAs string
	// NoPTY runs the job with pipes: stdout and stderr captured apart,
	// stdin from /dev/null, or a pipe fed by the attempt's input when
	// Stdin is not job.StdinNone.
	NoPTY bool
	// Stdin says what feeds the job's input; with a PTY, job.StdinStream
	// turns the terminal's echo off.
	Stdin job.Stdin
	// Rows and Cols size the PTY; 0 means 24 and 80.
	Rows, Cols uint16
	// Timeout, when > 0, stops the attempt that long after its start, like
	// Stop with the outcome timedOut.
	Timeout time.Duration
	// User, when not nil, is who the job runs as, already chosen (by the
	// agent, for its supervisor); attemptOptions.Users is then not asked.
	User *runUser
}

// attemptOptions are the agent's settings for running attempts.
type attemptOptions struct {
	SpoolDir string // directory for the spool files; "" means os.TempDir()
	// BufferLimit is the max unacknowledged bytes per stream before the
	// job's output stops being read (default 8 MiB).
	BufferLimit int64
	// KillGrace is how long a stopped job has between SIGTERM and SIGKILL
	// when Stop is given no grace, and at a timeout (default 10 s).
	KillGrace time.Duration
	// DrainTimeout bounds the reading of output after the job's processes
	// are gone, for a process that left the job's group (setsid) and keeps
	// its terminal or pipe open (default 5 s).
	DrainTimeout time.Duration
	// Users chooses the user each job runs as; nil runs every job as the
	// agent itself and ignores attemptSpec.RunAs.
	Users *userPolicy
	Now   func() time.Time // default time.Now
	// Progress, when set, is called after each write to the attempt's
	// spools (from the pump goroutines; it must not block).
	Progress func()
	// Reaper, when set (the supervisor's), counts the usage of the
	// orphans of the attempt's process group; nil counts the leader and
	// what it waited for only.
	Reaper *reaper
}

func (o attemptOptions) withDefaults() attemptOptions {
	if o.SpoolDir == "" {
		o.SpoolDir = os.TempDir()
	}
	if o.BufferLimit <= 0 {
		o.BufferLimit = defaultBufferLimit
	}
	if o.KillGrace <= 0 {
		o.KillGrace = defaultKillGrace
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = defaultDrainTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// outcome is how an attempt ended.
type outcome int

// Outcomes of an attempt.
const (
	exited      outcome = iota + 1 // the process exited by itself, or by a signal not sent by the agent
	startFailed                    // the process never started; the exit's Reason says why
	killed                         // Stop ended it
	timedOut                       // the spec's Timeout ended it
)

func (o outcome) String() string {
	switch o {
	case exited:
		return "exited"
	case startFailed:
		return "start failed"
	case killed:
		return "killed"
	case timedOut:
		return "timed out"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// exit is the result of a finished attempt.
type exit struct {
	Outcome  outcome
	ExitCode int    // -1 when ended by a signal or never started
	Signal   int    // the signal that ended the process, whoever sent it; 0: none
	Reason   string // why, for people: "exit status 3", the start error, the stop reason
	// OutputLost says why the output ends early ("" when it is whole):
	// the spool could not be written, or a process kept it open past the
	// drain. It becomes JobFinished.output_lost, not part of Reason, so
	// that the server records the loss whatever the exit code.
	OutputLost string
	// WriteErr is the cause of a failed spool write and the file
	// ("no space left on device (DIR/spool/ID-1.out)"), "" when every
	// write succeeded: the agent's data-dir health (diskhealth.go).
	WriteErr string
	// CPUTime is user+sys of the process and the children it waited for,
	// plus the orphans of its group the reaper reaped.
	CPUTime   time.Duration
	MaxRSSKiB int64 // largest resident set of any one of those processes
	// Wall is from the start to the leader's exit (monotonic clock); 0
	// when it never started.
	Wall     time.Duration
	Orphans  int // orphans of its group the reaper counted
	Finished time.Time
}

// attempt is one running (or finished) attempt of a job: a process in its
// own session and process group, the pumps that move its output into
// spools, and the goroutine that reaps it.
//
// When the process group's leader exits, whatever is left of its group is
// killed: the job is its leader's lifetime, and leftovers would otherwise
// hold the output open and outlive the attempt.
//
// Methods are safe for concurrent use. The attempt owns its goroutines; all
// have ended when Done is closed.
type attempt struct {
	spec attemptSpec
	opts attemptOptions
	out  *spool // PTY output, or stdout
	errs *spool // stderr with NoPTY; empty and closed with a PTY
	in   *jobInput
	done chan struct{}

	mu         sync.Mutex // guards the fields below
	pid        int        // of the group leader; 0 if it never started
	startedAt  time.Time
	leaderGone bool // the leader has exited: its group must not be signalled again
	stopping   outcome
	stopReason string
	killTimer  *time.Timer
	timeout    *time.Timer
	outputErr  error // why some output was lost, if it was
	writeErr   error // the first failed spool write, if any
	result     exit  // set before done is closed

	closeOnce sync.Once
	closeErr  error
}

// startAttempt starts spec and returns at once. It never fails: a start
// error (command not found, not executable, bad working dir, spool not
// writable) becomes an exit with the outcome startFailed, the error text as
// Reason and Done already closed.
func startAttempt(spec attemptSpec, opts attemptOptions) *attempt {
	a := &attempt{
		spec: spec,
		opts: opts.withDefaults(),
		out:  emptySpool(),
		errs: emptySpool(),
		in:   newJobInput(nil, false),
		done: make(chan struct{}),
	}
	if err := a.start(); err != nil {
		_ = a.out.Close()
		_ = a.errs.Close()
		a.out, a.errs = emptySpool(), emptySpool()
		a.result = exit{Outcome: startFailed, ExitCode: -1, Reason: err.Error(), Finished: a.opts.Now()} // the server says "start: "
		close(a.done)
	}
	return a
}

// start creates the spools, starts the process and its goroutines.
func (a *attempt) start() error {
	spec := a.spec
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		return errors.New("empty command")
	}
	if spec.JobID == "" || strings.ContainsAny(spec.JobID, "/\\\x00") || strings.HasPrefix(spec.JobID, ".") {
		return fmt.Errorf("job id %q cannot name a spool file", spec.JobID)
	}
	u := spec.User
	if u == nil && a.opts.Users != nil {
		var err error
		if u, err = a.opts.Users.choose(spec.Tenant, spec.RunAs); err != nil {
			return err
		}
	}
	dir := spec.Dir
	if dir == "" {
		dir = "/"
		if u != nil && isDir(u.Home) {
			dir = u.Home
		}
	}
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("working dir: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("working dir %s: not a directory", dir)
	}
	env := buildEnv(spec, u)
	path, err := lookPath(spec.Argv[0], envValue(env, "PATH"), dir)
	if err != nil {
		return err
	}

	if err := os.MkdirAll(a.opts.SpoolDir, 0o700); err != nil {
		return fmt.Errorf("spool dir: %w", err)
	}
	base := filepath.Join(a.opts.SpoolDir, fmt.Sprintf("%s-%d", spec.JobID, spec.Attempt))
	if a.out, err = createSpool(base+".out", a.opts.BufferLimit); err != nil {
		return err
	}
	a.out.onWrite = a.opts.Progress
	if spec.NoPTY {
		if a.errs, err = createSpool(base+".err", a.opts.BufferLimit); err != nil {
			return err
		}
		a.errs.onWrite = a.opts.Progress
	}

	cmd := &exec.Cmd{Path: path, Args: spec.Argv, Env: env, Dir: dir}
	var cred *syscall.Credential
	if u != nil {
		cred = u.credential()
	}
	var readers []*os.File
	a.opts.Reaper.start(func() int {
		if spec.NoPTY {
			var stdinW *os.File
			readers, stdinW, err = startPipes(cmd, cred, spec.Stdin != job.StdinNone)
			if err == nil && stdinW != nil {
				a.in = newJobInput(stdinW, false)
			}
		} else {
			readers, err = startPTY(cmd, spec.Rows, spec.Cols, cred, spec.Stdin != job.StdinStream)
			if err == nil {
				a.in = newJobInput(readers[0], true)
			}
		}
		if err != nil {
			return 0
		}
		return cmd.Process.Pid
	})
	if err != nil {
		return err
	}

	a.mu.Lock()
	a.pid = cmd.Process.Pid
	a.startedAt = a.opts.Now()
	if spec.Timeout > 0 {
		reason := fmt.Sprintf("timed out after %s", spec.Timeout)
		a.timeout = time.AfterFunc(spec.Timeout, func() { a.stop(timedOut, reason, a.opts.KillGrace) })
	}
	a.mu.Unlock()

	secrets := make([]string, 0, len(spec.SecretEnv))
	for _, v := range spec.SecretEnv {
		secrets = append(secrets, v)
	}
	var pumps sync.WaitGroup
	pumps.Go(func() { a.pump(readers[0], a.out, newMasker(secrets)) })
	if len(readers) > 1 {
		pumps.Go(func() { a.pump(readers[1], a.errs, newMasker(secrets)) })
	}
	go a.wait(cmd, readers, &pumps)
	return nil
}

// pump moves one stream from r into sp, masking secrets, until the writing
// side is closed (EOF on a pipe, EIO on a PTY) or the drain deadline passes.
// It blocks in sp.write while the spool is full, which stops reading r and
// so blocks the job's writes. If the spool fails it goes on reading and
// discarding, so the job cannot hang on a full terminal. It leaves r open:
// wait closes it once the job's leader is reaped (closing a PTY's master
// hangs its terminal up, and a leader still on its way out would take that
// SIGHUP for its exit status).
func (a *attempt) pump(r *os.File, sp *spool, m *masker) {
	bp := pumpBufs.Get().(*[pumpBufSize]byte)
	defer pumpBufs.Put(bp)
	buf := bp[:]
	var masked []byte
	var werr, rerr error
	put := func(p []byte) {
		if werr == nil && len(p) > 0 {
			werr = sp.write(p)
		}
	}
	rc, err := r.SyscallConn()
	if err != nil {
		rerr = err
	}
	for rc != nil {
		n, err := readAvailable(rc, buf)
		if n > 0 {
			if m == nil {
				put(buf[:n])
			} else {
				masked = m.mask(masked[:0], buf[:n])
				put(masked)
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EIO) {
				rerr = err
			}
			break
		}
	}
	if m != nil {
		put(m.flush(masked[:0]))
	}
	sp.closeWrite()

	var lost, wrote error
	switch {
	case werr != nil && !errors.Is(werr, errSpoolClosed) && !errors.Is(werr, os.ErrClosed): // not abandoned by Close
		wrote = fmt.Errorf("%s (%s)", errnoText(werr), sp.Path())
		lost = fmt.Errorf("the agent could not write the job's output: %w", wrote)
	case errors.Is(rerr, os.ErrDeadlineExceeded):
		lost = errors.New("a process that left the job's group kept its terminal or pipe open: the rest was not read")
	case rerr != nil:
		lost = fmt.Errorf("read output: %w", rerr)
	}
	if lost != nil {
		a.mu.Lock()
		a.outputErr = errors.Join(a.outputErr, lost)
		if a.writeErr == nil {
			a.writeErr = wrote
		}
		a.mu.Unlock()
	}
}

// errnoText is the operating system's words for err ("no space left on
// device"), or err's own text when it carries no errno.
func errnoText(err error) string {
	if errno, ok := errors.AsType[syscall.Errno](err); ok {
		return errno.Error()
	}
	return err.Error()
}

// wait reaps the process, kills what is left of its group, waits for the
// output to be in the spools, records the exit and closes done.
func (a *attempt) wait(cmd *exec.Cmd, readers []*os.File, pumps *sync.WaitGroup) {
	pid := cmd.Process.Pid
	// Wait for the leader to exit without reaping it: while it is a zombie
	// its pid, and so its process group id, cannot be reused, so the kill
	// below reaches only the job's own leftovers.
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
	for err == syscall.EINTR {
		err = unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
	}
	a.mu.Lock()
	a.leaderGone = true
	for _, t := range []*time.Timer{a.timeout, a.killTimer} {
		if t != nil {
			t.Stop()
		}
	}
	if err == nil { // else the pid may be gone already: no group to kill safely
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	a.mu.Unlock()

	werr := cmd.Wait()
	finished := a.opts.Now()
	orphans := a.opts.Reaper.finish(pid, time.Now().Add(a.opts.DrainTimeout))
	// The job is gone: no more input (a pipe's write end is closed, so
	// what is left of the job reads EOF).
	a.in.close()

	// What is left to read now is what the kernel buffered: take it all
	// without waiting for acks, within a bounded time.
	a.out.unlimit()
	a.errs.unlimit()
	deadline := time.Now().Add(a.opts.DrainTimeout)
	for _, r := range readers {
		_ = r.SetReadDeadline(deadline)
	}
	pumps.Wait()
	for _, r := range readers {
		_ = r.Close()
	}

	e := exit{Outcome: exited, ExitCode: -1, Finished: finished}
	a.mu.Lock()
	defer a.mu.Unlock()
	if ps := cmd.ProcessState; ps != nil {
		e.ExitCode = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.Signal = int(ws.Signal())
		}
		e.CPUTime = ps.UserTime() + ps.SystemTime() + orphans.cpu
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			e.MaxRSSKiB = ru.Maxrss // KiB on Linux
		}
		e.MaxRSSKiB = max(e.MaxRSSKiB, orphans.maxRSSKiB)
		e.Orphans = orphans.n
		e.Wall = finished.Sub(a.startedAt)
		if !ps.Success() {
			e.Reason = ps.String()
		}
		if a.stopping != 0 {
			e.Outcome = a.stopping
			e.Reason = a.stopReason + " (" + ps.String() + ")"
		}
	} else {
		e.Reason = fmt.Sprintf("wait: %v", werr)
	}
	if a.outputErr != nil {
		e.OutputLost = strings.ReplaceAll(a.outputErr.Error(), "\n", "; ")
	}
	if a.writeErr != nil {
		e.WriteErr = a.writeErr.Error()
	}
	a.result = e
	close(a.done)
}

// Started returns the leader's pid and start time; ok is false when the
// process never started.
func (a *attempt) Started() (pid int, at time.Time, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pid, a.startedAt, a.pid != 0
}

// Stop sends SIGTERM (and SIGCONT, so a stopped job sees it) to the job's
// process group, and SIGKILL after grace (opts.KillGrace when grace <= 0).
// The exit's Outcome becomes killed and its Reason starts with reason,
// unless the process had already exited. Stop is idempotent: only the first
// call, or the timeout if it came first, counts. It does not wait: use Done.
func (a *attempt) Stop(reason string, grace time.Duration) {
	a.stop(killed, reason, grace)
}

func (a *attempt) stop(o outcome, reason string, grace time.Duration) {
	if grace <= 0 {
		grace = a.opts.KillGrace
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pid == 0 || a.leaderGone || a.stopping != 0 {
		return
	}
	a.stopping, a.stopReason = o, reason
	_ = syscall.Kill(-a.pid, syscall.SIGTERM)
	_ = syscall.Kill(-a.pid, syscall.SIGCONT)
	a.killTimer = time.AfterFunc(grace, a.kill)
}

// kill sends SIGKILL to the job's group if its leader is still there.
func (a *attempt) kill() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pid != 0 && !a.leaderGone {
		_ = syscall.Kill(-a.pid, syscall.SIGKILL)
	}
}

// Done is closed when the process has exited, what was left of its group is
// killed, and all its output is in the spools (the spools are Closed).
func (a *attempt) Done() <-chan struct{} { return a.done }

// Exit returns the result; it is valid once Done is closed.
func (a *attempt) Exit() exit {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.result
}

// Input returns the attempt's input.
func (a *attempt) Input() *jobInput { return a.in }

// Output returns the PTY output, or stdout with NoPTY.
func (a *attempt) Output() *spool { return a.out }

// Stderr returns stderr with NoPTY; with a PTY an empty, closed spool.
func (a *attempt) Stderr() *spool { return a.errs }

// release is Close for an attempt whose result the agent has journaled:
// the spool files stay, for the agent to send and remove.
func (a *attempt) release() error {
	a.closeOnce.Do(func() {
		a.kill()
		a.in.close()
		a.closeErr = errors.Join(a.out.release(), a.errs.release())
		<-a.done
	})
	return a.closeErr
}

// Close releases the attempt: it closes the spools and removes their files.
// Call it once the result and output were delivered. A still-running
// attempt is killed at once (SIGKILL to its group) and Close waits for Done.
// Close is idempotent and returns the first call's error.
func (a *attempt) Close() error {
	a.closeOnce.Do(func() {
		a.mu.Lock()
		if a.pid != 0 && !a.leaderGone {
			if a.stopping == 0 {
				a.stopping, a.stopReason = killed, "attempt closed"
			}
			_ = syscall.Kill(-a.pid, syscall.SIGKILL)
		}
		a.mu.Unlock()
		a.in.close()
		// Closing the spools first unblocks a pump waiting for acks.
		a.closeErr = errors.Join(a.out.Close(), a.errs.Close())
		<-a.done
	})
	return a.closeErr
}
