package cli

import (
	"fmt"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/client"
	pb "github.com/hodei-jobs/hodei/proto"
)

// tokenCommand is `hodei token create|ls|revoke` (admin only).
func tokenCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:  "token",
		Usage: "create, list and revoke API tokens (admin)",
		Subcommands: []*ucli.Command{
			{
				Name:  "create",
				Usage: "create a token; prints it alone on stdout (it is shown only once)",
				Description: "Roles: admin (everything), operator (tenants, workers, cancel any job, snapshot),\n" +
					"submitter (submit, cancel and read within its tenants), viewer (read within its tenants),\n" +
					"agent (joins agents; prints the ready-to-paste `hodei agent --join` line on stderr).",
				Flags: withFlags(false,
					&ucli.StringFlag{Name: "role", Usage: "`ROLE`: admin, operator, submitter, viewer or agent (required)"},
					&ucli.StringSliceFlag{Name: "tenant", Usage: "limit the token to tenant `T` (repeat for more; default: every tenant)"},
					&ucli.DurationFlag{Name: "ttl", DefaultText: fmt.Sprintf("%s; %s for agent tokens", auth.DefaultTTL, auth.DefaultAgentTTL),
						Usage: fmt.Sprintf("lifetime of the token, a `DURATION` of at most %s", auth.MaxTTL)},
					&ucli.StringFlag{Name: "name", Usage: "`NAME` shown in token ls and the audit log (default: the role)"},
				),
				Action: func(c *ucli.Context) error {
					if _, err := args(c); err != nil {
						return err
					}
					if c.String("role") == "" {
						return usagef(c, "--role is required: admin, operator, submitter, viewer or agent")
					}
					if _, err := auth.ParseRole(c.String("role")); err != nil {
						return usagef(c, "--role: %s", err)
					}
					if ttl := c.Duration("ttl"); c.IsSet("ttl") && (ttl <= 0 || ttl > auth.MaxTTL) {
						return usagef(c, "--ttl: %s must be more than 0 and at most %s", ttl, auth.MaxTTL)
					}
					return withClient(c, func(cl *client.Client) error {
						resp, err := cl.Admin().CreateToken(c.Context, &pb.CreateTokenRequest{
							Role: c.String("role"), Tenants: c.StringSlice("tenant"),
							TtlMs: c.Duration("ttl").Milliseconds(), Name: c.String("name"),
						})
						if err != nil {
							return tokenFlagsOf.named(c, err)
						}
						fmt.Fprintln(c.App.Writer, resp.GetToken())
						if resp.GetInfo().GetRole() == string(auth.Agent) {
							// The token goes in the environment: flags show in ps.
							fmt.Fprintf(c.App.ErrWriter, "join an agent (until %s) with:\n\n    HODEI_JOIN=%s hodei agent --server %s --ca-fingerprint %s --data-dir /var/lib/hodei-agent\n\n",
								unixNano(resp.GetInfo().GetExpiresUnixNano()).Local().Format(time.DateTime), resp.GetToken(), serverAddr(c), resp.GetCaFingerprint())
						}
						return nil
					})
				},
			},
			{
				Name:  "ls",
				Usage: "list tokens (never their text)",
				Flags: withFlags(true),
				Action: func(c *ucli.Context) error {
					if _, err := args(c); err != nil {
						return err
					}
					asJSON, err := jsonOutput(c)
					if err != nil {
						return err
					}
					return withClient(c, func(cl *client.Client) error {
						resp, err := cl.Admin().ListTokens(c.Context, &pb.ListTokensRequest{})
						if err != nil {
							return err
						}
						if asJSON {
							return writeJSON(c.App.Writer, nonNilSlice(resp.GetTokens()))
						}
						return writeTokenTable(c, e, resp.GetTokens())
					})
				},
			},
			{
				Name:      "revoke",
				Usage:     "revoke a token; it is refused from its next call, and its open streams end",
				ArgsUsage: "ID",
				Flags:     withFlags(false),
				Action: func(c *ucli.Context) error {
					a, err := args(c, "token ID")
					if err != nil {
						return err
					}
					return withClient(c, func(cl *client.Client) error {
						t, err := cl.Admin().RevokeToken(c.Context, &pb.RevokeTokenRequest{Id: a[0]})
						if err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "revoked %s (%s)\n", t.GetId(), cell(t.GetName()))
						return nil
					})
				},
			},
		},
	}
}

func writeTokenTable(c *ucli.Context, e *env, toks []*pb.TokenInfo) error {
	now := e.now()
	t := newTable(c.App.Writer, "ID", "NAME", "ROLE", "TENANTS", "EXPIRES", "LAST USED", "STATE")
	for _, tk := range toks {
		tenants := strings.Join(tk.GetTenants(), ",")
		if tenants == "" {
			tenants = "*"
		}
		lastUsed := "never"
		if tk.GetLastUsedUnixNano() != 0 {
			lastUsed = age(now, unixNano(tk.GetLastUsedUnixNano())) + " ago"
		}
		exp := unixNano(tk.GetExpiresUnixNano())
		state := "active"
		switch {
		case tk.GetRevokedUnixNano() != 0:
			state = "revoked"
		case !exp.After(now):
			state = "expired"
		}
		t.row(tk.GetId(), tk.GetName(), tk.GetRole(), tenants, exp.Local().Format(time.DateTime), lastUsed, state)
	}
	return t.flush()
}
