package cli

import (
	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/client"
)

func logsCommand(*env) *ucli.Command {
	return &ucli.Command{
		Name:      "logs",
		Usage:     "print a job's output, byte for byte as stored",
		ArgsUsage: "ID",
		Flags: withFlags(false,
			&ucli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new output until the job ends"},
			&ucli.IntFlag{Name: "attempt", Usage: "only attempt `N` (default: every attempt, in order)"},
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
				return usagef(c, "--attempt: %d must be 1 or more (0: every attempt)", attempt)
			}
			return withClient(c, func(cl *client.Client) error {
				return cl.CopyLogs(c.Context, a[0], attempt, 0, c.Bool("follow"), c.App.Writer)
			})
		},
	}
}
