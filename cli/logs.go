package cli

import (
	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/client"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

func logsCommand(*env) *ucli.Command {
	return &ucli.Command{
		Name:      "logs",
		Usage:     "print a job's output, byte for byte as stored",
		ArgsUsage: "ID",
		Flags: withFlags(false,
			&ucli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new output until the job ends"},
			&ucli.IntFlag{Name: "attempt", Usage: "attempt `N` (default: the current one; with -f, later retries too)"},
			&ucli.BoolFlag{Name: "stderr", Usage: "the stderr of a job run with --no-pty, instead of its stdout"},
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
			return withClient(c, func(cl *client.Client) error {
				req := &hodeipb.LogsRequest{Id: a[0], Attempt: attempt, Follow: c.Bool("follow")}
				if c.Bool("stderr") {
					req.Stream = hodeipb.LogStream_LOG_STREAM_STDERR
				}
				return cl.CopyLogs(c.Context, req, c.App.Writer)
			})
		},
	}
}
