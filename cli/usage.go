package cli

import (
	"cmp"
	"encoding/csv"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// usageCommand is `hodei usage`: accounting of what ended attempts used,
// like Slurm's sreport (sums by group) and sacct (--attempts).
func usageCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:      "usage",
		Usage:     "sum what jobs used (wall, CPU, slot-time, peak RSS) by tenant, day, user or label",
		ArgsUsage: " ",
		Description: "Each ended attempt's wall time, CPU time (user+system of its processes, orphans of its\n" +
			"process group included), peak RSS and slot-seconds (slots × wall) are kept in daily\n" +
			"roll-ups (UTC days) that outlive the jobs, for the server's --usage-retention (400 days):\n\n" +
			"   hodei usage --since 30d --group-by tenant\n" +
			"   hodei usage --from 2026-03-01 --to 2026-03-31 --tenant ml --group-by label:project --output csv\n" +
			"   hodei usage --since 7d --attempts          (one line per attempt, as sacct)\n\n" +
			"Without --since or --from the last 30 days are summed. A label filter combines with\n" +
			"--group-by tenant, day or that label only. A token limited to tenants sees only theirs.",
		Flags: withFlags(false,
			&ucli.StringFlag{Name: "tenant", Usage: "only the tenant `NAME`"},
			&ucli.StringFlag{Name: "label", Usage: "only jobs with the label `KEY=VALUE`"},
			&ucli.StringFlag{Name: "since", Usage: "from the UTC day `WHEN` falls on to today: a duration before now (30d, 720h) or an RFC 3339 time"},
			&ucli.StringFlag{Name: "from", Usage: "first UTC `DAY` (YYYY-MM-DD), included (default: 30 days before --to)"},
			&ucli.StringFlag{Name: "to", Usage: "last UTC `DAY` (YYYY-MM-DD), included (default: today)"},
			&ucli.StringFlag{Name: "group-by", Value: "tenant", Usage: "sum by `GROUP`: tenant, day, user or label:KEY"},
			&ucli.BoolFlag{Name: "attempts", Usage: "list each attempt's record (job, attempt, times, usage) instead of sums"},
			&ucli.StringFlag{Name: flagOutput, Aliases: []string{"o"}, Value: "table", Usage: "output `FORMAT`: table, json or csv"},
		),
		Action: func(c *ucli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			req, err := usageRequest(c, e.now())
			if err != nil {
				return err
			}
			format := globalString(c, flagOutput)
			switch format {
			case "table", "json", "csv":
			default:
				return usagef(c, "--output: %q is not a format; use table, json or csv", format)
			}
			return withClient(c, func(cl *client.Client) error {
				if req.Attempts {
					return writeUsageAttempts(c, cl, req, format)
				}
				resp, err := cl.GetUsage(c.Context, req)
				if err != nil {
					return err
				}
				if err := writeUsageRows(c.App.Writer, req.GroupBy, resp, format); err != nil {
					return err
				}
				if format == "table" && len(resp.GetRows()) == 0 {
					_, err = fmt.Fprintln(c.App.ErrWriter, noUsage(req, resp.GetFrom(), resp.GetTo()))
				}
				return err
			})
		},
	}
}

// usageRequest checks the flags of `hodei usage` and builds its request.
func usageRequest(c *ucli.Context, now time.Time) (*hodeipb.GetUsageRequest, error) {
	req := &hodeipb.GetUsageRequest{Tenant: c.String("tenant"), Label: c.String("label"), GroupBy: c.String("group-by"),
		Attempts: c.Bool("attempts")}
	if req.Tenant != "" && !job.ValidTenant(req.Tenant) {
		return nil, usagef(c, "--tenant: %q is not a tenant name (lower-case letters, digits, '-' and '_')", req.Tenant)
	}
	if req.Label != "" {
		if k, _, ok := strings.Cut(req.Label, "="); !ok || k == "" {
			return nil, usagef(c, "--label: %q must be KEY=VALUE", req.Label)
		}
	}
	if _, _, err := job.ParseUsageGroup("group-by", req.GroupBy); err != nil {
		return nil, fieldUsage(c, err)
	}
	if c.IsSet("since") {
		for _, name := range []string{"from", "to"} {
			if c.IsSet(name) {
				return nil, usagef(c, "--since and --%s: give either --since or --from/--to", name)
			}
		}
		since, rule := parseSince(c.String("since"), now)
		if rule != "" {
			return nil, usagef(c, "--since: %s", rule)
		}
		req.From, req.To = since.UTC().Format(time.DateOnly), now.UTC().Format(time.DateOnly)
	}
	for _, name := range []string{"from", "to"} {
		if !c.IsSet(name) {
			continue
		}
		s := c.String(name)
		if _, err := time.Parse(time.DateOnly, s); err != nil {
			return nil, usagef(c, "--%s: %q is not a day as YYYY-MM-DD (2026-03-01)", name, s)
		}
		if name == "from" {
			req.From = s
		} else {
			req.To = s
		}
	}
	if req.From != "" && req.To != "" && req.To < req.From {
		return nil, usagef(c, "--to: %s is before --from %s", req.To, req.From)
	}
	return req, nil
}

// noUsage is the note for an answer with nothing in it: the days and
// filters it covered, and, for a tenant, that it may not exist (usage
// outlives tenants, so the server answers a name it does not know).
func noUsage(req *hodeipb.GetUsageRequest, from, to string) string {
	what := "no ended attempts"
	if req.GetTenant() != "" {
		what += fmt.Sprintf(" of tenant %q", req.GetTenant())
	}
	if req.GetLabel() != "" {
		what += " with label " + req.GetLabel()
	}
	what += fmt.Sprintf(" from %s to %s (UTC days)", from, to)
	if req.GetTenant() != "" {
		what += ": it ran nothing then, or there is no such tenant (hodei tenants ls lists them)"
	}
	return what
}

// groupTitle is the first column's title for group_by g.
func groupTitle(g string) string {
	switch {
	case g == "" || g == "tenant":
		return "TENANT"
	case strings.HasPrefix(g, "label:"):
		return "LABEL " + strings.TrimPrefix(g, "label:")
	}
	return strings.ToUpper(g)
}

// usageSums is a row of sums as --output json shows it; times in seconds.
type usageSums struct {
	Group       string  `json:"group"`
	Attempts    int64   `json:"attempts"`
	WallSeconds float64 `json:"wall_seconds"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	SlotSeconds float64 `json:"slot_seconds"`
	MaxRSSKiB   int64   `json:"max_rss_kib"`
}

func newUsageSums(r *hodeipb.UsageRow) usageSums {
	return usageSums{Group: r.GetGroup(), Attempts: r.GetAttempts(), WallSeconds: seconds(r.GetWallMicros()),
		CPUSeconds: seconds(r.GetCpuMicros()), SlotSeconds: seconds(r.GetSlotMicros()), MaxRSSKiB: r.GetMaxRssKib()}
}

func seconds(micros int64) float64 { return float64(micros) / 1e6 }

// secondsText is micros as seconds with all six decimals, for CSV: the sum
// of a column is exact.
func secondsText(micros int64) string {
	sign := ""
	if micros < 0 {
		sign, micros = "-", -micros
	}
	return fmt.Sprintf("%s%d.%06d", sign, micros/1e6, micros%1e6)
}

// spanText is micros for people: 12.345s under a minute, else H:MM:SS
// (hours unbounded, as sacct's elapsed time).
func spanText(micros int64) string {
	if micros < 60e6 {
		return fmt.Sprintf("%.3fs", seconds(micros))
	}
	s := micros / 1e6
	return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
}

// kibText is a size in KiB for people.
func kibText(kib int64) string {
	switch {
	case kib <= 0:
		return "-"
	case kib < 1024:
		return fmt.Sprintf("%d KiB", kib)
	case kib < 1024*1024:
		return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
	}
	return fmt.Sprintf("%.2f GiB", float64(kib)/(1024*1024))
}

func writeUsageRows(w io.Writer, groupBy string, resp *hodeipb.GetUsageResponse, format string) error {
	switch format {
	case "json":
		rows := make([]usageSums, len(resp.GetRows()))
		for i, r := range resp.GetRows() {
			rows[i] = newUsageSums(r)
		}
		total := newUsageSums(resp.GetTotal())
		total.Group = ""
		return writeJSON(w, struct {
			From    string      `json:"from"`
			To      string      `json:"to"`
			GroupBy string      `json:"group_by"`
			Rows    []usageSums `json:"rows"`
			Total   usageSums   `json:"total"`
		}{resp.GetFrom(), resp.GetTo(), cmp.Or(groupBy, "tenant"), rows, total})
	case "csv":
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{strings.ToLower(strings.ReplaceAll(groupTitle(groupBy), " ", "_")), "attempts",
			"wall_seconds", "cpu_seconds", "slot_seconds", "max_rss_kib"})
		for _, r := range resp.GetRows() {
			_ = cw.Write([]string{r.GetGroup(), strconv.FormatInt(r.GetAttempts(), 10), secondsText(r.GetWallMicros()),
				secondsText(r.GetCpuMicros()), secondsText(r.GetSlotMicros()), strconv.FormatInt(r.GetMaxRssKib(), 10)})
		}
		cw.Flush()
		return cw.Error()
	}
	fmt.Fprintf(w, "Usage from %s to %s (UTC days)\n", resp.GetFrom(), resp.GetTo())
	t := newTable(w, groupTitle(groupBy), "ATTEMPTS", "WALL", "CPU", "SLOT-TIME", "MAX RSS")
	row := func(group string, r *hodeipb.UsageRow) {
		t.row(group, strconv.FormatInt(r.GetAttempts(), 10), spanText(r.GetWallMicros()), spanText(r.GetCpuMicros()),
			spanText(r.GetSlotMicros()), kibText(r.GetMaxRssKib()))
	}
	for _, r := range resp.GetRows() {
		g := r.GetGroup()
		if g == "" {
			g = "(none)"
		}
		row(g, r)
	}
	if len(resp.GetRows()) > 1 {
		row("TOTAL", resp.GetTotal())
	}
	return t.flush()
}

// usageAttempt is an attempt's record as --output json shows it.
type usageAttempt struct {
	Job         string            `json:"job"`
	Attempt     int32             `json:"attempt"`
	Name        string            `json:"name,omitempty"`
	Tenant      string            `json:"tenant"`
	User        string            `json:"user,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Worker      string            `json:"worker,omitempty"`
	Slots       int64             `json:"slots"`
	State       string            `json:"state"`
	ExitCode    int32             `json:"exit_code"`
	Started     *time.Time        `json:"started,omitempty"`
	Finished    time.Time         `json:"finished"`
	WallSeconds float64           `json:"wall_seconds"`
	CPUSeconds  float64           `json:"cpu_seconds"`
	SlotSeconds float64           `json:"slot_seconds"`
	MaxRSSKiB   int64             `json:"max_rss_kib"`
}

func newUsageAttempt(a *hodeipb.UsageAttempt) usageAttempt {
	v := usageAttempt{Job: a.GetJobId(), Attempt: a.GetAttempt(), Name: a.GetName(), Tenant: a.GetTenant(), User: a.GetUser(),
		Labels: a.GetLabels(), Worker: a.GetWorker(), Slots: a.GetSlots(), State: stateName(a.GetState()), ExitCode: a.GetExitCode(),
		Finished: time.Unix(0, a.GetFinishedUnixNano()).UTC(), WallSeconds: seconds(a.GetWallMicros()),
		CPUSeconds: seconds(a.GetCpuMicros()), SlotSeconds: seconds(a.GetSlotMicros()), MaxRSSKiB: a.GetMaxRssKib()}
	if n := a.GetStartedUnixNano(); n != 0 {
		t := time.Unix(0, n).UTC()
		v.Started = &t
	}
	return v
}

// stateName is a job state as the CLI shows it (COMPLETED).
func stateName(s hodeipb.JobState) string { return job.State(s).String() }

// writeUsageAttempts lists every page of attempts, each as it arrives
// (table and CSV) or all at once (JSON).
func writeUsageAttempts(c *ucli.Context, cl *client.Client, req *hodeipb.GetUsageRequest, format string) error {
	w := c.App.Writer
	var t *table
	var cw *csv.Writer
	var all []usageAttempt
	switch format {
	case "table":
		t = newTable(w, "JOB", "ATTEMPT", "TENANT", "USER", "NAME", "STATE", "EXIT", "FINISHED", "WALL", "CPU", "SLOTS", "MAX RSS")
	case "csv":
		cw = csv.NewWriter(w)
		_ = cw.Write([]string{"job", "attempt", "tenant", "user", "name", "worker", "slots", "state", "exit_code",
			"started", "finished", "wall_seconds", "cpu_seconds", "slot_seconds", "max_rss_kib", "labels"})
	default:
		all = make([]usageAttempt, 0)
	}
	req.Limit = 1000
	n := 0
	var from, to string
	for {
		resp, err := cl.GetUsage(c.Context, req)
		if err != nil {
			return err
		}
		n, from, to = n+len(resp.GetAttempts()), resp.GetFrom(), resp.GetTo()
		for _, a := range resp.GetAttempts() {
			finished := time.Unix(0, a.GetFinishedUnixNano()).UTC()
			switch {
			case t != nil:
				t.row(a.GetJobId(), strconv.Itoa(int(a.GetAttempt())), a.GetTenant(), a.GetUser(), a.GetName(), stateName(a.GetState()),
					strconv.Itoa(int(a.GetExitCode())), finished.Format(time.RFC3339), spanText(a.GetWallMicros()),
					spanText(a.GetCpuMicros()), strconv.FormatInt(a.GetSlots(), 10), kibText(a.GetMaxRssKib()))
			case cw != nil:
				started := ""
				if n := a.GetStartedUnixNano(); n != 0 {
					started = time.Unix(0, n).UTC().Format(time.RFC3339Nano)
				}
				labels := make([]string, 0, len(a.GetLabels()))
				for _, k := range slices.Sorted(maps.Keys(a.GetLabels())) {
					labels = append(labels, k+"="+a.GetLabels()[k])
				}
				_ = cw.Write([]string{a.GetJobId(), strconv.Itoa(int(a.GetAttempt())), a.GetTenant(), a.GetUser(), a.GetName(),
					a.GetWorker(), strconv.FormatInt(a.GetSlots(), 10), stateName(a.GetState()), strconv.Itoa(int(a.GetExitCode())),
					started, finished.Format(time.RFC3339Nano), secondsText(a.GetWallMicros()), secondsText(a.GetCpuMicros()),
					secondsText(a.GetSlotMicros()), strconv.FormatInt(a.GetMaxRssKib(), 10), strings.Join(labels, ",")})
			default:
				all = append(all, newUsageAttempt(a))
			}
		}
		switch {
		case t != nil:
			if err := t.flushPage(); err != nil {
				return err
			}
		case cw != nil:
			cw.Flush()
			if err := cw.Error(); err != nil {
				return err
			}
		}
		if resp.GetNextCursor() == "" {
			break
		}
		req.Cursor = resp.GetNextCursor()
	}
	if t == nil && cw == nil {
		return writeJSON(w, all)
	}
	if t != nil && n == 0 {
		_, err := fmt.Fprintln(c.App.ErrWriter, noUsage(req, from, to))
		return err
	}
	return nil
}
