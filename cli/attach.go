package cli

import (
	"fmt"
	"io"
	"os"

	ucli "github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// attachCommand is `hodei attach ID`: this terminal on a running job's PTY.
func attachCommand(*env) *ucli.Command {
	return &ucli.Command{
		Name:      "attach",
		Usage:     "connect this terminal to a running job's PTY: its last screenful, then its output, and your keys",
		ArgsUsage: "ID",
		Description: "Shows the last screenful of the job's output, then its output as it comes; what you type goes to\n" +
			"the job, Ctrl-C included, and window size changes too. Several people may watch a job at once;\n" +
			"one at a time types: the first to type holds the job's input until they detach, and the others'\n" +
			"keys are not sent meanwhile (they are told who holds it). Typing takes the right to cancel the\n" +
			"job (roles admin, operator, submitter); --read-only only watches. Enter ~. detaches, leaving the\n" +
			"job running; Enter ~~ sends a ~; Enter ~? lists the keys. When the job ends, attach exits with\n" +
			"its exit code, as hodei run does (128+N for a job killed by signal N). Output passes the same\n" +
			"filter as hodei logs unless --raw.\n" +
			"If the server goes away (restart, upgrade, network), attach says so once and retries with\n" +
			"backoff for up to --reconnect-timeout, the terminal still raw; then it goes on after the last\n" +
			"byte it printed (the screen is not replayed). If you held the job's input you hold it again,\n" +
			"and keys typed meanwhile are sent then. Enter ~. detaches meanwhile too.",
		Flags: withFlags(false,
			&ucli.BoolFlag{Name: "read-only", Usage: "watch only: your keys are not sent to the job"},
			rawFlag(),
			reconnectFlag(),
		),
		Action: func(c *ucli.Context) error {
			a, err := args(c, "job ID")
			if err != nil {
				return err
			}
			if _, err := reconnectTimeout(c); err != nil {
				return err
			}
			return jobFlagsOf.named(c, withClient(c, func(cl *client.Client) error {
				id, err := resolveJobID(c, cl, a[0], "ID")
				if err != nil {
					return err
				}
				return attachTo(c, cl, id)
			}))
		},
	}
}

// attachTo runs one attach to the job id names, until it ends, the user
// detaches or the server stays away longer than --reconnect-timeout; the
// terminal is restored on each way out.
func attachTo(c *ucli.Context, cl *client.Client, ref string) error {
	j, err := cl.Get(c.Context, ref)
	if err != nil {
		return err
	}
	id := j.GetId()
	if st := j.GetState(); job.State(st).Terminal() {
		// Nothing to attach to, as the server would say: never "attached".
		return fmt.Errorf("job %s has ended (%s): hodei logs %s shows its output", id, hodeipb.StateName(st), id)
	}
	cfg := pumpConfig{jobID: id, readOnly: c.Bool("read-only"), notes: c.App.ErrWriter}
	var tty *os.File
	if f, ok := c.App.Reader.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		tty = f
	}
	hint := " (Enter ~. detaches, Enter ~? lists the keys)"
	switch {
	case tty == nil:
		cfg.readOnly, hint = true, " (read-only: stdin is not a terminal)"
	case cfg.readOnly:
		hint = " (read-only: your keys are not sent; Enter ~. detaches)"
	}
	fmt.Fprintf(c.App.ErrWriter, "hodei: attached to job %s%s\n", id, hint)
	var closeSrc func()
	if tty != nil {
		fi, err := tty.Stat()
		if err != nil {
			return fmt.Errorf("stdin: %w", err)
		}
		cfg.src, closeSrc = reopenInput(tty, fi)
		cfg.esc = newEscaper()
		cfg.size = func() *hodeipb.TerminalSize { return termSize(tty) }
		rt, err := makeRaw(tty)
		if err != nil {
			return err
		}
		defer rt.restore()
		errw := c.App.ErrWriter
		c.App.ErrWriter = crlfWriter{errw}
		cfg.notes = c.App.ErrWriter
		defer func() { c.App.ErrWriter = errw }()
	}
	f, err := newFollower(c, cl, id, true)
	if err != nil {
		return err
	}
	f.again = fmt.Sprintf("'hodei attach %s' gets back to it", id)
	cfg.rc = f.rc
	var stdout io.Writer = c.App.Writer
	if tty != nil {
		f.out = &lineTracker{w: stdout}
		stdout = f.out
	}
	var out io.WriteCloser = nopWriteCloser{stdout}
	if !c.Bool("raw") {
		out = newTermFilter(stdout)
	}
	cfg.output = out
	p := newPump(cl, cfg)
	var stopResize func()
	if cfg.size != nil {
		stopResize = onResize(p.resize)
	}
	ended, err := p.run(c.Context, closeSrc)
	if stopResize != nil {
		stopResize()
	}
	if cerr := out.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write output: %w", cerr)
	}
	switch {
	case err != nil:
		return f.explain(err)
	case ended == nil:
		fmt.Fprintf(c.App.ErrWriter, "\nhodei: detached from job %s, which goes on: hodei attach %s gets back to it\n", id, id)
		return nil
	}
	return jobExit(c, ended, false)
}

// nopWriteCloser is a Writer with a Close that does nothing.
type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
