package cli

// `hodei run`'s stdin: keys from a terminal (raw, with ssh's escapes,
// window size changes) or bytes from a pipe or file, sent to the job over
// an attach stream while run follows the job's output.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"
	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// stdinFlags are run's flags for its stdin.
func stdinFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.BoolFlag{Name: "stdin", Aliases: []string{"i"}, Value: true,
			Usage: "send this command's stdin to the job: keys from a terminal (Enter ~. detaches), or a pipe's or file's bytes then EOF; -i=false: the job's stdin is as /dev/null (a PTY job's terminal gets EOF at once)"},
		&ucli.BoolFlag{Name: "no-stdin", Usage: "the same as -i=false"},
	}
}

// stdinPlan is how `hodei run` connects its stdin to the job.
type stdinPlan struct {
	src      io.Reader
	closeSrc func()   // ends a Read blocked in src; nil when src cannot be closed
	tty      *os.File // the terminal stdin is, for its mode and size; nil when it is not one
	raw      bool     // the job has a PTY: the terminal goes raw while it runs
}

// planStdin decides, before the submit, how stdin reaches the job, and
// sets spec.Stdin (and the PTY's size from the terminal when stdout is
// not one). nil: stdin is not connected (a closed stdin, or -i=false or
// /dev/null for a job without a PTY, which then reads /dev/null).
// -i=false is /dev/null for a PTY job too, as ssh -n: its terminal gets
// the EOF at once (see devNull), so that a job that reads its stdin ends
// rather than waits for keys nobody will type.
func planStdin(c *ucli.Context, spec *hodeipb.JobSpec) *stdinPlan {
	if !c.Bool("stdin") || c.Bool("no-stdin") {
		return devNull(spec)
	}
	f, isFile := c.App.Reader.(*os.File)
	if !isFile {
		spec.Stdin = hodeipb.StdinMode_STDIN_STREAM
		return &stdinPlan{src: c.App.Reader}
	}
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(fi, null) {
		return devNull(spec)
	}
	src, closeSrc := reopenInput(f, fi)
	pl := &stdinPlan{src: src, closeSrc: closeSrc}
	if !term.IsTerminal(int(f.Fd())) {
		spec.Stdin = hodeipb.StdinMode_STDIN_STREAM
		return pl
	}
	spec.Stdin = hodeipb.StdinMode_STDIN_TERMINAL
	pl.tty, pl.raw = f, !spec.GetNoPty()
	if pl.raw && spec.GetRows() == 0 {
		if size := termSize(f); size != nil {
			spec.Rows, spec.Cols = size.GetRows(), size.GetCols()
		}
	}
	return pl
}

// devNull is the plan for a job whose stdin is /dev/null: none for a job
// without a PTY (the agent gives it /dev/null); for a PTY job, an input
// that ends at once, so that its terminal gets the EOF (VEOF) as soon as
// it starts. The terminal stays the job's stdin: programs that ask
// whether it is one still see a terminal, and it does not echo.
func devNull(spec *hodeipb.JobSpec) *stdinPlan {
	if spec.GetNoPty() {
		return nil
	}
	spec.Stdin = hodeipb.StdinMode_STDIN_STREAM
	return &stdinPlan{src: strings.NewReader("")}
}

// reopenInput opens stdin again when it is a terminal or a pipe, as a new
// open file of its own: non-blocking, so that a Read waiting in it ends
// when the file is closed, without setting O_NONBLOCK on the file the
// shell shares. Anything else (a regular file, whose reads do not wait;
// a socket; a system without /proc) is read as it is, and closeSrc is nil.
func reopenInput(f *os.File, fi os.FileInfo) (io.Reader, func()) {
	if fi.Mode()&(os.ModeCharDevice|os.ModeNamedPipe) == 0 {
		return f, nil
	}
	g, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return f, nil
	}
	return g, func() { _ = g.Close() }
}

// hint is what run prints after the job's id.
func (pl *stdinPlan) hint() string {
	if pl != nil && pl.raw {
		return " (Enter ~. detaches, Enter ~? lists the keys)"
	}
	return ""
}

// errDetached is what follow returns when the user detached.
var errDetached = errors.New("detached")

type detachKey struct{}

// withDetach returns ctx carrying the channel that closes when the user
// asks to detach, for follow.
func withDetach(ctx context.Context, ch <-chan struct{}) context.Context {
	return context.WithValue(ctx, detachKey{}, ch)
}

// detachRequested returns the channel withDetach put in ctx; nil (which
// never fires) without one.
func detachRequested(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(detachKey{}).(<-chan struct{})
	return ch
}

// connect runs follow (which streams the job's output until it ends) with
// the plan's input going to the job. A terminal is raw meanwhile and is
// restored on every way out: the job's end, a detach, an interrupt, an
// error (the server gone for longer than --reconnect-timeout). On a
// detach follow returns errDetached: connect says how to get back and
// returns nil. The output and the input ride out the server's outages
// through one follower, so that each outage is told once.
func (pl *stdinPlan) connect(c *ucli.Context, cl *client.Client, id string, follow func(*follower) error) error {
	if pl == nil {
		f, err := newFollower(c, cl, id, true)
		if err != nil {
			return err
		}
		err = follow(f)
		if isStreamLimit(err) {
			return cannotFollow(c, id, err)
		}
		return err
	}
	errw, outw := c.App.ErrWriter, c.App.Writer
	var lines *lineTracker
	if pl.raw {
		rt, err := makeRaw(pl.tty)
		if err != nil {
			return err
		}
		defer rt.restore()
		lines = &lineTracker{w: outw}
		c.App.ErrWriter, c.App.Writer = crlfWriter{errw}, lines
		defer func() { c.App.ErrWriter, c.App.Writer = errw, outw }()
	}
	f, err := newFollower(c, cl, id, true)
	if err != nil {
		return err
	}
	f.out = lines
	cfg := pumpConfig{jobID: id, src: pl.src, claim: true, notes: c.App.ErrWriter, rc: f.rc}
	if pl.raw {
		cfg.esc = newEscaper()
		cfg.size = func() *hodeipb.TerminalSize { return termSize(pl.tty) }
	}
	p := newPump(cl, cfg)
	ctx, cancel := context.WithCancel(context.WithoutCancel(c.Context))
	// stop ends follow: closed on a detach, or when a pipe's input could
	// not all be sent (inputErr says why).
	stop := make(chan struct{})
	var (
		wg       sync.WaitGroup
		stopOnce sync.Once
		inputErr error // set before stop closes, read after wg.Wait
	)
	wg.Go(func() {
		// A terminal's pump that fails says so itself and goes on reading
		// the keys for ~. (keepEscapes); the output tells of an outage.
		_, err := p.run(ctx, pl.closeSrc)
		var gone *client.UnreachableError
		if err != nil && ctx.Err() == nil && !pl.raw && !errors.As(err, &gone) {
			inputErr = err
			stopOnce.Do(func() { close(stop) })
		}
	})
	wg.Go(func() {
		select {
		case <-p.detachC():
			stopOnce.Do(func() { close(stop) })
		case <-ctx.Done():
		}
	})
	if pl.raw {
		stopResize := onResize(p.resize)
		defer stopResize()
	}
	outer := c.Context
	c.Context = withDetach(outer, stop)
	err = follow(f)
	c.Context = outer
	if errors.Is(err, errDetached) && p.isDetached() {
		// What was typed before the escape is sent before the stream
		// closes: the pump ends by itself once it has (within detachWait).
		waitPump(&wg, 2*detachWait)
	}
	cancel()
	wg.Wait()
	switch {
	case isStreamLimit(inputErr):
		return cannotFollow(c, id, inputErr)
	case isStreamLimit(err):
		return cannotFollow(c, id, err)
	case inputErr != nil:
		fmt.Fprintf(c.App.ErrWriter, "hodei: stdin of job %s could not all be sent (%s): the job does not get the rest of it "+
			"nor its end; it goes on: hodei jobs cancel %s stops it\n", id, status.Convert(inputErr).Message(), id)
		return &exitStatus{code: exitFailure}
	case errors.Is(err, errDetached):
		fmt.Fprintf(c.App.ErrWriter, "\nhodei: detached from job %s, which goes on: hodei attach %s gets back to it\n", id, id)
		return nil
	}
	return err
}

// isStreamLimit reports whether err is the server's refusal of one more
// stream that follows a job: the caller's token holds the most it allows
// (hodei serve --max-streams-per-token).
func isStreamLimit(err error) bool {
	st, ok := status.FromError(err)
	return err != nil && ok && st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "--max-streams-per-token")
}

// cannotFollow says that job id, submitted, goes on while `hodei run`
// cannot follow it (err: the stream limit), and how to follow it later.
func cannotFollow(c *ucli.Context, id string, err error) error {
	fmt.Fprintf(c.App.ErrWriter, "hodei: job %s was submitted and goes on, but hodei run cannot follow it: %s.\n"+
		"hodei: once a stream is free, hodei logs -f %s follows its output, hodei attach %s its terminal; "+
		"hodei jobs cancel %s stops it\n", id, strings.TrimSuffix(status.Convert(err).Message(), "."), id, id, id)
	return &exitStatus{code: exitFailure}
}

// waitPump waits for the goroutines of wg to end, at most d.
func waitPump(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// rawTerm is a terminal put in raw mode, and how to restore it.
type rawTerm struct {
	fd    int
	state *term.State
	once  sync.Once
}

// makeRaw puts f's terminal in raw mode: keys, Ctrl-C included, go to the
// job as bytes, unechoed (the job's PTY echoes them).
func makeRaw(f *os.File) (*rawTerm, error) {
	fd := int(f.Fd())
	st, err := term.MakeRaw(fd)
	if err != nil {
		return nil, fmt.Errorf("stdin: put the terminal in raw mode: %w", err)
	}
	return &rawTerm{fd: fd, state: st}, nil
}

// restore puts the terminal back as it was; it is idempotent.
func (r *rawTerm) restore() { r.once.Do(func() { _ = term.Restore(r.fd, r.state) }) }

// termSize returns the terminal's size, or nil. The size is the
// terminal's, not something the user typed: past what a PTY takes
// (job.MaxPTYSize) it is clamped, not refused.
func termSize(f *os.File) *hodeipb.TerminalSize {
	cols, rows, err := term.GetSize(int(f.Fd()))
	if err != nil || rows <= 0 || cols <= 0 {
		return nil
	}
	return &hodeipb.TerminalSize{Rows: uint32(min(rows, job.MaxPTYSize)), Cols: uint32(min(cols, job.MaxPTYSize))}
}

// onResize calls fn on every SIGWINCH until the returned stop is called,
// which waits for the goroutine it started.
func onResize(fn func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-ch:
				fn()
			}
		}
	})
	return func() {
		signal.Stop(ch)
		close(done)
		wg.Wait()
	}
}

// crlfWriter writes "\r\n" for each "\n", for messages printed while the
// terminal is raw (which does not return the carriage by itself).
type crlfWriter struct{ w io.Writer }

func (c crlfWriter) Write(p []byte) (int, error) {
	if _, err := c.w.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(string(p), "\r\n", "\n"), "\n", "\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}
