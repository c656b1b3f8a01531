package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/creack/pty"
	ucli "github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/client"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// runCommand is `hodei run`: submit, stream the output live, exit with the
// job's exit code.
func runCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:      "run",
		Usage:     "run a job and stream its output here; exit with its exit code",
		ArgsUsage: "[--] CMD [ARG…]",
		Description: "Submits like 'hodei submit', prints the job's id on stderr, then writes the job's output to\n" +
			"this terminal as it is produced (with --no-pty, its stderr to stderr) and exits with the job's\n" +
			"exit code. A job killed by signal N (by itself, by another process, or at its --timeout) exits\n" +
			"128+N, as in a shell (137 for SIGKILL, 143 for SIGTERM); one that could not start or was\n" +
			"cancelled exits 1; either way with the reason on stderr. A job that completed with something\n" +
			"to say (its output was lost, on an agent whose disk is full; it started past its deadline)\n" +
			"exits 0 and says it on stderr. While the job waits for a worker, run\n" +
			"says why on stderr once it has waited a second, and again when that changes (queued: REASON).\n" +
			"Stdin goes to the job. From a terminal, with a PTY (the default), the terminal is raw: every\n" +
			"key, Ctrl-C included, goes to the job, window size changes too, and Enter ~. detaches, leaving\n" +
			"the job running (hodei attach ID gets back to it; Enter ~~ sends a ~); what was typed before\n" +
			"Enter ~. is sent first. From a pipe or file, its bytes go to the job, then EOF. With -i=false\n" +
			"(--no-stdin) the job's stdin is as /dev/null, as with ssh -n: a PTY job's terminal gets EOF\n" +
			"(Ctrl-D) at once, so a job that reads its stdin ends. Otherwise Ctrl-C (SIGINT) cancels the\n" +
			"job and waits for it to end. Colours and cursor movement pass; sequences that act on your\n" +
			"terminal (title, clipboard, hyperlinks, device queries …) are dropped unless --raw.\n" +
			"If the server goes away (restart, upgrade, network), run says so once, retries with backoff\n" +
			"for up to --reconnect-timeout, and resumes the output after the last byte it printed; the\n" +
			"exit code is still the job's. Ctrl-C while the server is away exits 1 at once: the cancel\n" +
			"cannot be sent, so the job keeps running.",
		Flags: withFlags(false, slices.Concat(specFlags(), []ucli.Flag{rawFlag(), reconnectFlag(), requireFitFlag()}, stdinFlags())...),
		Action: func(c *ucli.Context) error {
			spec, err := specFromFlags(c, e.now())
			if err != nil {
				return err
			}
			if _, err := reconnectTimeout(c); err != nil {
				return err // before the submit, which a usage error must not leave behind
			}
			// The PTY takes the caller's terminal size when stdout is one.
			if f, ok := c.App.Writer.(*os.File); ok && !spec.GetNoPty() {
				if rows, cols, err := pty.Getsize(f); err == nil && rows > 0 && cols > 0 {
					spec.Rows, spec.Cols = uint32(rows), uint32(cols)
				}
			}
			stdin := planStdin(c, spec)
			return withClient(c, func(cl *client.Client) error {
				id, err := cl.Submit(c.Context, spec, client.RequireFit(c.Bool("require-fit")))
				if err != nil {
					return specFlagsOf.named(c, err)
				}
				fmt.Fprintf(c.App.ErrWriter, "hodei: job %s%s\n", id, stdin.hint())
				return stdin.connect(c, cl, id, func(f *follower) error { return follow(c, f, spec.GetNoPty(), c.Bool("raw")) })
			})
		},
	}
}

// follow streams the output of the job f follows until it ends and maps
// its end to an exit status. An interrupt (c.Context ending) cancels the
// job and keeps streaming until the job has ended. Unless raw, each stream
// passes through its own termFilter.
func follow(c *ucli.Context, f *follower, noPTY, raw bool) error {
	cl, id := f.cl, f.id
	// The streams outlive an interrupt: they end when the job does.
	streamCtx, stopStreams := context.WithCancel(context.WithoutCancel(c.Context))
	defer stopStreams()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	copyStream := func(stream hodeipb.LogStream, w io.Writer) {
		defer wg.Done()
		// A new job's output starts at attempt 1; retries follow it.
		req := &hodeipb.LogsRequest{Id: id, Attempt: 1, Follow: true, LaterAttempts: true, Stream: stream}
		err := f.copyOutput(streamCtx, req, w, raw)
		if err != nil && streamCtx.Err() == nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			stopStreams()
		}
	}
	stderr := &lockedWriter{w: c.App.ErrWriter} // the job's stderr and "queued: …"
	wg.Add(1)
	go copyStream(hodeipb.LogStream_LOG_STREAM_OUTPUT, c.App.Writer)
	if noPTY {
		wg.Add(1)
		go copyStream(hodeipb.LogStream_LOG_STREAM_STDERR, stderr)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// While it is pending, say why (once it waited a second).
	queuedCtx, stopQueued := context.WithCancel(streamCtx)
	var queued sync.WaitGroup
	queued.Go(func() { reportQueued(queuedCtx, cl, id, stderr) })
	defer func() { stopQueued(); queued.Wait() }()
	interrupted := false
	select {
	case <-detachRequested(c.Context): // the user detached (interactive.go)
		stopStreams()
		<-done
		return errDetached
	case <-done:
	case <-c.Context.Done():
		interrupted = true
		if f.down() {
			stopStreams()
			<-done
			fmt.Fprintf(stderr, "hodei: interrupted while server %s is unreachable: the cancel cannot be sent, "+
				"so job %s may still run; 'hodei jobs cancel %s' once the server is back\n", f.addr, id, id)
			return &exitStatus{code: exitFailure}
		}
		fmt.Fprintf(stderr, "hodei: cancelling job %s (interrupt again to leave it running)\n", id)
		cctx, cancel := context.WithTimeout(streamCtx, 30*time.Second)
		_, err := cl.Cancel(cctx, id, "interrupted from hodei run")
		cancel()
		if err != nil && !isFailedPrecondition(err) {
			stopStreams()
			<-done
			// Said here: after an interrupt, Run would only print "interrupted".
			fmt.Fprintf(stderr, "hodei: cancel of job %s failed, it may still run: %s\n", id, visible(status.Convert(err).Message(), ""))
			return &exitStatus{code: exitFailure}
		}
		<-done
	}
	stopQueued()
	queued.Wait() // before anything more is said on stderr
	if err := errors.Join(errs...); err != nil {
		return err
	}
	j, err := f.get(streamCtx)
	if err != nil {
		return err
	}
	return jobExit(c, j, interrupted)
}

func isFailedPrecondition(err error) bool { return status.Code(err) == codes.FailedPrecondition }

// jobExit maps a finished job to the exit status of `hodei run`.
func jobExit(c *ucli.Context, j *hodeipb.Job, interrupted bool) error {
	switch j.GetState() {
	case hodeipb.JobState_JOB_STATE_COMPLETED:
		// Its process succeeded, so run exits 0 as the job did; what the
		// job's record says besides (its output was lost, it started past
		// its deadline) is said, not left for hodei jobs get to find.
		if r := j.GetReason(); r != "" {
			fmt.Fprintf(c.App.ErrWriter, "hodei: job %s completed: %s\n", j.GetId(), visible(r, ""))
		}
		return nil
	case hodeipb.JobState_JOB_STATE_FAILED:
		code := int(j.GetExitCode())
		if code <= 0 || code > 255 {
			code = exitFailure
		}
		if sig := int(j.GetSignal()); sig > 0 && sig < 128 {
			code = 128 + sig // killed by signal N, as shells and srun say it
		}
		// A plain non-zero exit speaks for itself; anything else (start
		// error, timeout, worker lost) gets its reason.
		if j.GetReason() != fmt.Sprintf("exit code %d", j.GetExitCode()) {
			fmt.Fprintf(c.App.ErrWriter, "hodei: job %s failed: %s\n", j.GetId(), visible(j.GetReason(), ""))
		}
		return &exitStatus{code: code}
	case hodeipb.JobState_JOB_STATE_CANCELLED:
		fmt.Fprintf(c.App.ErrWriter, "hodei: job %s cancelled: %s\n", j.GetId(), visible(j.GetReason(), ""))
		if interrupted {
			return &exitStatus{code: exitInterrupted}
		}
		return &exitStatus{code: exitFailure}
	}
	fmt.Fprintf(c.App.ErrWriter, "hodei: job %s is %s\n", j.GetId(), hodeipb.StateName(j.GetState()))
	return &exitStatus{code: exitFailure}
}
