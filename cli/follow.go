package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	ucli "github.com/urfave/cli/v2"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/client"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// What the commands that follow a job (run, logs -f, attach) do when the
// server goes away: they retry with client.Backoff's capped exponential
// backoff with jitter (50–100 ms first, doubling, at most 5 s apart),
// say so once on stderr, say once that they are back, resume the output
// after the last byte they wrote (client.LogCursor), and give up after
// --reconnect-timeout.

const flagReconnectTimeout = "reconnect-timeout"

// reconnectFlag is --reconnect-timeout of the commands that follow a job.
func reconnectFlag() ucli.Flag {
	return &ucli.DurationFlag{Name: flagReconnectTimeout, Value: client.DefaultReconnectTimeout,
		Usage: "when the server goes away (restart, upgrade, network), retry for up to `DURATION` " +
			"(backoff 0.05–5 s between tries), then give up; the output resumes where it stopped. 0: do not retry"}
}

// reconnectTimeout returns --reconnect-timeout, checked.
func reconnectTimeout(c *ucli.Context) (time.Duration, error) {
	timeout := c.Duration(flagReconnectTimeout)
	if timeout < 0 {
		return 0, usagef(c, "--%s: %s must not be negative (0: do not retry)", flagReconnectTimeout, timeout)
	}
	return timeout, nil
}

// follower is how a command follows a job through server outages: one
// Reconnector shared by all its calls, so that an outage is reported once.
// Set its fields before its first call.
type follower struct {
	rc   *client.Reconnector
	cl   *client.Client
	addr string
	id   string // the job followed, for messages
	// again says how to pick up after giving up; "": hodei logs -f.
	again string
	// out is the job's output on a raw terminal, so that the outage
	// messages start on a line of their own; nil: none.
	out *lineTracker
}

// newFollower reads --reconnect-timeout and returns the follower of job
// id through cl: it prints on c's stderr one line when the server goes
// away and one when it is back. reached says that the command has reached
// the server already (run's submit); until it has, an unreachable server
// is an error at once, which says what address was tried.
//
// The messages go to c's stderr as it is when newFollower is called (a
// raw terminal's, for run and attach).
//
// `hodei attach`, and run's input, follow a job the same way: their attach
// streams (input.go's pump) go through f.rc.Do, call up on the server's
// first answer (Attached), and keep their place in the output with a
// client.LogCursor, resuming there on the new stream.
func newFollower(c *ucli.Context, cl *client.Client, id string, reached bool) (*follower, error) {
	timeout, err := reconnectTimeout(c)
	if err != nil {
		return nil, err
	}
	addr := globalString(c, flagAddr)
	rc := &client.Reconnector{Timeout: timeout, Client: cl, Reached: reached}
	f := &follower{rc: rc, cl: cl, addr: addr, id: id}
	if timeout == 0 {
		rc.Timeout = -1
	} else {
		w := c.App.ErrWriter
		rc.OnLost = func(error) {
			fmt.Fprintf(w, "%shodei: server %s unreachable, retrying for up to %s…\n", f.out.lineStart(), addr, timeout)
		}
		rc.OnBack = func(down time.Duration) {
			fmt.Fprintf(w, "%shodei: reconnected to %s after %s\n", f.out.lineStart(), addr, down.Round(100*time.Millisecond))
		}
	}
	return f, nil
}

// lineTracker is the job's output on a terminal, remembering whether the
// last byte written ended a line: a message printed while the output
// stands mid-line (at a shell's prompt, say) starts on a line of its own.
// Safe for one writer and concurrent lineStart calls.
type lineTracker struct {
	w       io.Writer
	midLine atomic.Bool
}

func (l *lineTracker) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if n > 0 {
		l.midLine.Store(p[n-1] != '\n')
	}
	return n, err
}

// lineStart returns the line end a message needs first ("" for a nil
// tracker), and counts the line as ended: the message ends it.
func (l *lineTracker) lineStart() string {
	if l != nil && l.midLine.Swap(false) {
		return "\n"
	}
	return ""
}

// copyOutput writes the output req asks for to w, through a termFilter
// unless raw, riding out server outages: the same filter sees the whole
// output, however many streams it took.
func (f *follower) copyOutput(ctx context.Context, req *hodeipb.LogsRequest, w io.Writer, raw bool) error {
	return f.explain(throughFilter(w, raw, func(w io.Writer) error { return f.cl.FollowLogs(ctx, f.rc, req, w) }))
}

// get returns the job, riding out server outages.
func (f *follower) get(ctx context.Context) (*hodeipb.Job, error) {
	var j *hodeipb.Job
	err := f.rc.Do(ctx, func(ctx context.Context, _ func()) error {
		var err error
		j, err = f.cl.Get(ctx, f.id)
		return err
	})
	return j, f.explain(err)
}

// down reports whether the server is away at the moment.
func (f *follower) down() bool {
	_, down := f.rc.Down()
	return down
}

// explain turns the Reconnector giving up into a message that says what
// happened and how to pick up again; other errors pass.
func (f *follower) explain(err error) error {
	var gone *client.UnreachableError
	if !errors.As(err, &gone) {
		return err
	}
	again := f.again
	if again == "" {
		again = fmt.Sprintf("'hodei logs -f %s' picks up its output", f.id)
	}
	return fmt.Errorf("server %s unreachable for %s, giving up (--%s); job %s may still be running: "+
		"%s once the server is back (last error: %s)",
		f.addr, gone.For.Round(time.Second), flagReconnectTimeout, f.id, again, status.Convert(gone.Err).Message())
}
