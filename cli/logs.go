package cli

import (
	"context"
	"fmt"
	"io"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/client"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

func logsCommand(*env) *ucli.Command {
	return &ucli.Command{
		Name:      "logs",
		Usage:     "print a job's output; terminal sequences other than colours and cursor movement are dropped unless --raw",
		ArgsUsage: "ID",
		Description: "Prints the output the job's current attempt has written so far (--attempt N: that attempt's).\n" +
			"With -f it keeps printing as the job writes, through its later retries, until it ends. If the\n" +
			"server goes away meanwhile (restart, upgrade, network), logs -f says so once, retries with\n" +
			"backoff for up to --reconnect-timeout, and resumes after the last byte it printed.",
		Flags: withFlags(false,
			&ucli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new output until the job ends"},
			&ucli.IntFlag{Name: "attempt", DefaultText: "the current one; with -f, later retries too", Usage: "attempt `N`"},
			&ucli.BoolFlag{Name: "stderr", Usage: "the stderr of a job run with --no-pty, instead of its stdout (a PTY merges stderr into stdout)"},
			rawFlag(),
			reconnectFlag(),
		),
		Action: func(c *ucli.Context) error {
			a, err := args(c, "job ID")
			if err != nil {
				return err
			}
			attempt, err := int32Flag(c, "attempt")
			if err != nil {
				return err
			}
			if attempt < 0 {
				return usagef(c, "--attempt: %d must be 1 or more (0: the current one)", attempt)
			}
			if _, err := reconnectTimeout(c); err != nil {
				return err // a usage error before any call
			}
			return jobFlagsOf.named(c, withClient(c, func(cl *client.Client) error {
				id, err := resolveJobID(c, cl, a[0], "ID")
				if err != nil {
					return err
				}
				req := &hodeipb.LogsRequest{Id: id, Attempt: attempt, Follow: c.Bool("follow")}
				if c.Bool("stderr") {
					req.Stream = hodeipb.LogStream_LOG_STREAM_STDERR
				}
				if !req.Follow {
					return copyJobOutput(c.Context, cl, req, c.App.Writer, c.Bool("raw"))
				}
				f, err := newFollower(c, cl, req.Id, false)
				if err != nil {
					return err
				}
				return f.copyOutput(c.Context, req, c.App.Writer, c.Bool("raw"))
			}))
		},
	}
}

// rawFlag is --raw of the commands that print a job's output.
func rawFlag() ucli.Flag {
	return &ucli.BoolFlag{Name: "raw", Usage: "print the job's output byte for byte as stored; without it, colours and " +
		"cursor movement pass but sequences that act on your terminal (title, clipboard, hyperlinks, " +
		"device queries, DCS/APC/PM/SOS, C1 controls) are dropped"}
}

// copyJobOutput copies the output that req asks for to w, through a
// termFilter unless raw.
func copyJobOutput(ctx context.Context, cl *client.Client, req *hodeipb.LogsRequest, w io.Writer, raw bool) error {
	return throughFilter(w, raw, func(w io.Writer) error { return cl.CopyLogs(ctx, req, w) })
}

// throughFilter runs copyTo on w, or on a termFilter writing to w unless
// raw; the filter's Close resets colours and cursor the output left
// changed, even when the copy fails.
func throughFilter(w io.Writer, raw bool, copyTo func(io.Writer) error) error {
	if raw {
		return copyTo(w)
	}
	f := newTermFilter(w)
	err := copyTo(f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write logs: %w", cerr)
	}
	return err
}
