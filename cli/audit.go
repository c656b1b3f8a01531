package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// auditCommand is `hodei audit`: the record of mutating calls and denials.
func auditCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:  "audit",
		Usage: "read the audit trail of changes and refused calls (admin only)",
		Subcommands: []*ucli.Command{
			{
				Name:  "ls",
				Usage: "list audit records, newest first",
				Description: "Every mutating call and every refused call is recorded with its time, token,\n" +
					"role, tenant, action, target and result, and kept for the server's\n" +
					"--audit-retention (default 90 days):\n\n" +
					"   hodei audit ls --since 24h --actor ci --action Cancel",
				Flags: withFlags(true,
					&ucli.StringFlag{Name: "since", Usage: "only records from `WHEN` on: a duration before now (30m, 24h, 7d) or an RFC 3339 time"},
					&ucli.StringFlag{Name: "actor", Usage: "only records of the token `NAME` (or agent worker id)"},
					&ucli.StringFlag{Name: "action", Usage: "only records whose action contains `TEXT`, ignoring case (Submit, AdminService)"},
					&ucli.IntFlag{Name: "limit", DefaultText: strconv.Itoa(job.DefaultAuditLimit), Usage: fmt.Sprintf("at most `N` records, up to %d", job.MaxAuditLimit)},
				),
				Action: func(c *ucli.Context) error {
					if _, err := args(c); err != nil {
						return err
					}
					f, err := auditFilter(c, e.now())
					if err != nil {
						return err
					}
					asJSON, err := jsonOutput(c)
					if err != nil {
						return err
					}
					var rs []*hodeipb.AuditRecord
					err = withClient(c, func(cl *client.Client) error {
						rs, err = cl.ListAudit(c.Context, f)
						return err
					})
					if err != nil {
						return err
					}
					if asJSON {
						views := make([]auditView, len(rs))
						for i, r := range rs {
							views[i] = newAuditView(r)
						}
						return writeJSON(c.App.Writer, views)
					}
					return writeAuditTable(c.App.Writer, rs)
				},
			},
		},
	}
}

// auditFilter checks the flags of `audit ls` and builds its filter.
func auditFilter(c *ucli.Context, now time.Time) (job.AuditFilter, error) {
	f := job.AuditFilter{Actor: c.String("actor"), Action: c.String("action"), Limit: c.Int("limit")}
	if err := f.Validate(); err != nil {
		return f, fieldUsage(c, err)
	}
	if s := c.String("since"); s != "" {
		since, rule := parseSince(s, now)
		if rule != "" {
			return f, usagef(c, "--since: %s", rule)
		}
		f.Since = since
	}
	return f, nil
}

// parseSince reads a duration before now (Go's syntax, or whole days as
// 7d) or an RFC 3339 time, or says what is wrong with it. The time must
// be after the start of 1970 and not after now: the server counts times
// in nanoseconds since 1970, which end in 2262.
func parseSince(s string, now time.Time) (time.Time, string) {
	const allowed = " (give a time after 1970 and not in the future: 30m, 24h, 7d or 2026-03-01T00:00:00Z)"
	epoch := time.Unix(0, 0)
	d, err := time.ParseDuration(s)
	if days, ok := strings.CutSuffix(s, "d"); ok && err != nil {
		if n, nerr := strconv.Atoi(days); nerr == nil {
			if n > int(now.Sub(epoch)/(24*time.Hour)) {
				return time.Time{}, s + " before now is before 1970" + allowed
			}
			d, err = time.Duration(n)*24*time.Hour, nil
		}
	}
	var t time.Time
	if err == nil {
		if d <= 0 {
			return time.Time{}, s + " must be more than 0 before now"
		}
		t = now.Add(-d)
		if !t.After(epoch) {
			return time.Time{}, s + " before now is before 1970" + allowed
		}
		return t, ""
	}
	if t, err = time.Parse(time.RFC3339, s); err != nil {
		return time.Time{}, strconv.Quote(s) + " is neither a duration before now (30m, 24h, 7d) nor an RFC 3339 time (2026-03-01T00:00:00Z)"
	}
	switch {
	case !t.After(epoch):
		return time.Time{}, s + " is not after 1970" + allowed
	case t.After(now):
		return time.Time{}, s + " is in the future" + allowed
	}
	return t, ""
}

// auditView is an audit record as `--output json` shows it.
type auditView struct {
	Time      time.Time `json:"time"`
	TokenID   string    `json:"token_id"`
	TokenName string    `json:"token_name"`
	Role      string    `json:"role"`
	Scope     []string  `json:"scope"`
	Tenant    string    `json:"tenant"`
	Action    string    `json:"action"`
	Target    string    `json:"target"`
	Result    string    `json:"result"`
	Message   string    `json:"message"`
	Peer      string    `json:"peer"`
}

func newAuditView(r *hodeipb.AuditRecord) auditView {
	scope := r.GetScope()
	if scope == nil {
		scope = []string{}
	}
	return auditView{
		Time:      unixNano(r.GetTimeUnixNano()),
		TokenID:   r.GetTokenId(),
		TokenName: r.GetTokenName(),
		Role:      r.GetRole(),
		Scope:     scope,
		Tenant:    r.GetTenant(),
		Action:    r.GetAction(),
		Target:    r.GetTarget(),
		Result:    r.GetResult(),
		Message:   r.GetMessage(),
		Peer:      r.GetPeer(),
	}
}

func writeAuditTable(w io.Writer, rs []*hodeipb.AuditRecord) error {
	t := newTable(w, "TIME", "ACTOR", "ROLE", "ACTION", "TARGET", "TENANT", "RESULT", "MESSAGE")
	for _, r := range rs {
		at := ""
		if n := r.GetTimeUnixNano(); n != 0 {
			at = unixNano(n).Format(time.RFC3339)
		}
		t.row(at, r.GetTokenName(), r.GetRole(), shortAction(r.GetAction()), r.GetTarget(),
			r.GetTenant(), r.GetResult(), r.GetMessage())
	}
	return t.flush()
}

// shortAction is the method name of a gRPC action
// ("/hodei.v1.JobService/Submit" → "Submit"); any other action (an HTTP
// method and path) is shown whole.
func shortAction(a string) string {
	service, method, ok := strings.Cut(strings.TrimPrefix(a, "/"), "/")
	if !ok || method == "" || strings.ContainsAny(service, " /") || !strings.Contains(service, ".") ||
		strings.Contains(method, "/") {
		return a
	}
	return method
}
