package cli

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/client"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

func tenantsCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:  "tenants",
		Usage: "manage tenants: fair-share weights and quotas",
		Subcommands: []*ucli.Command{
			{
				Name:      "set",
				Usage:     "create a tenant or change the settings given as flags",
				ArgsUsage: "NAME",
				Description: "Only the flags given change; the others keep their stored values (their defaults\n" +
					"on a new tenant). A limit of 0 is unlimited. Without flags an existing tenant is\n" +
					"left as it is:\n\n" +
					"   hodei tenants set ml --weight 3 --max-running 8 --burst 2 --burst-for 10m --cooldown 30m",
				Flags: withFlags(true, tenantSetFlags()...),
				Action: func(c *ucli.Context) error {
					a, err := args(c, "tenant NAME")
					if err != nil {
						return err
					}
					return tenantsCall(c, e, true, func(cl *client.Client) ([]*hodeipb.TenantStatus, error) {
						st, err := setTenant(c, cl, a[0])
						if err != nil {
							return nil, tenantFlagsOf.named(c, err)
						}
						return []*hodeipb.TenantStatus{st}, nil
					})
				},
			},
			{
				Name:  "ls",
				Usage: "list tenants with their shares and usage",
				Flags: withFlags(true),
				Action: func(c *ucli.Context) error {
					if _, err := args(c); err != nil {
						return err
					}
					return tenantsCall(c, e, false, func(cl *client.Client) ([]*hodeipb.TenantStatus, error) {
						return cl.ListTenants(c.Context)
					})
				},
			},
			{
				Name:      "get",
				Usage:     "show one tenant",
				ArgsUsage: "NAME",
				Flags:     withFlags(true),
				Action: func(c *ucli.Context) error {
					a, err := args(c, "tenant NAME")
					if err != nil {
						return err
					}
					asJSON, err := jsonOutput(c)
					if err != nil {
						return err
					}
					var st *hodeipb.TenantStatus
					err = withClient(c, func(cl *client.Client) error {
						st, err = cl.GetTenant(c.Context, a[0])
						return err
					})
					switch {
					case err != nil:
						return err
					case asJSON:
						return writeJSON(c.App.Writer, newTenantView(st))
					}
					return writeTenantDetail(c.App.Writer, e.now(), st)
				},
			},
			{
				Name:      "rm",
				Usage:     "delete a tenant that has no unfinished jobs",
				ArgsUsage: "NAME",
				Flags:     withFlags(true),
				Action: func(c *ucli.Context) error {
					a, err := args(c, "tenant NAME")
					if err != nil {
						return err
					}
					asJSON, err := jsonOutput(c)
					if err != nil {
						return err
					}
					err = withClient(c, func(cl *client.Client) error {
						return cl.DeleteTenant(c.Context, a[0])
					})
					switch {
					case err != nil:
						return err
					case asJSON:
						return writeJSON(c.App.Writer, struct {
							Name    string `json:"name"`
							Deleted bool   `json:"deleted"`
						}{a[0], true})
					}
					_, err = fmt.Fprintf(c.App.Writer, "tenant %s deleted\n", a[0])
					return err
				},
			},
		},
	}
}

// tenantSetFlags are the flags of `tenants set`; each maps to one field of
// the request (tenantFieldOf).
func tenantSetFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.Float64Flag{Name: "weight", DefaultText: "1", Usage: "fair-share `W`eight relative to the other tenants with work"},
		&ucli.Int64Flag{Name: "max-running", DefaultText: "unlimited", Usage: "most job `SLOTS` its scheduled and running jobs may hold; 0: unlimited"},
		&ucli.Int64Flag{Name: "cpu", DefaultText: "unlimited", Usage: "most CPU, in `MILLIS`, its scheduled and running jobs may hold; 0: unlimited"},
		&ucli.Int64Flag{Name: "memory", DefaultText: "unlimited", Usage: "most memory, in `MiB`, its scheduled and running jobs may hold; 0: unlimited"},
		&ucli.Int64Flag{Name: "max-queued", DefaultText: "unlimited", Usage: "most unfinished jobs, `N`; a submit past it is refused; 0: unlimited"},
		&ucli.Float64Flag{Name: "burst", DefaultText: "none", Usage: "let it run up to `MULT` × its running limits for --burst-for; 0: no bursts"},
		&ucli.StringFlag{Name: "burst-for", Usage: "longest burst, a `DURATION` (e.g. 10m)"},
		&ucli.StringFlag{Name: "cooldown", Usage: "`DURATION` it is held at its limits after a burst"},
		&ucli.BoolFlag{Name: "preemptible", Usage: "its running jobs may be stopped and requeued for tenants below their share (--preemptible=false to turn off)"},
		&ucli.StringFlag{Name: "run-as", DefaultText: "the agent's --default-user", Usage: "`USER` (name or uid) its jobs run as on agents running as root; \"root\" also needs the agent's --allow-root; \"\": the agent's default"},
	}
}

// tenantFieldOf maps the flags of `tenants set` to the request field they
// set; each running limit is set alone, and the server keeps the others.
var tenantFieldOf = []struct{ flag, field string }{
	{"weight", "weight"},
	{"max-queued", "max_queued"},
	{"max-running", "max_running.slots"},
	{"cpu", "max_running.cpu_millis"},
	{"memory", "max_running.memory_mib"},
	{"burst", "burst"},
	{"burst-for", "burst_for_ms"},
	{"cooldown", "cooldown_ms"},
	{"preemptible", "preemptible"},
	{"run-as", "run_as"},
}

// setTenant sends `tenants set`: only the fields whose flags were given.
// Without flags it creates a missing tenant and leaves an existing one
// untouched (an empty field list would mean "set every field").
func setTenant(c *ucli.Context, cl *client.Client, name string) (*hodeipb.TenantStatus, error) {
	t, fields, err := tenantFromFlags(c, name)
	if err != nil {
		return nil, err
	}
	if len(fields) == 0 {
		cur, err := cl.GetTenant(c.Context, name)
		switch {
		case status.Code(err) == codes.NotFound:
		case err != nil:
			return nil, err
		default:
			return cur, nil
		}
	}
	return cl.SetTenant(c.Context, t, fields)
}

// tenantFromFlags reads the flags of `tenants set` into a tenant and the
// list of fields they set.
func tenantFromFlags(c *ucli.Context, name string) (*hodeipb.Tenant, []string, error) {
	t := &hodeipb.Tenant{
		Name:        name,
		Weight:      c.Float64("weight"),
		MaxQueued:   c.Int64("max-queued"),
		Burst:       c.Float64("burst"),
		Preemptible: c.Bool("preemptible"),
		RunAs:       c.String("run-as"),
	}
	var err error
	if t.BurstForMs, err = millisFlag(c, "burst-for"); err != nil {
		return nil, nil, err
	}
	if t.CooldownMs, err = millisFlag(c, "cooldown"); err != nil {
		return nil, nil, err
	}
	if c.IsSet("max-running") || c.IsSet("cpu") || c.IsSet("memory") {
		t.MaxRunning = &hodeipb.Resources{Slots: c.Int64("max-running"), CpuMillis: c.Int64("cpu"), MemoryMib: c.Int64("memory")}
	}
	var fields []string
	for _, f := range tenantFieldOf {
		if c.IsSet(f.flag) && !slices.Contains(fields, f.field) {
			fields = append(fields, f.field)
		}
	}
	return t, fields, nil
}

// tenantsCall runs a call and prints the tenants it returns: a table, or
// JSON: an array, or one object if single.
func tenantsCall(c *ucli.Context, e *env, single bool, call func(*client.Client) ([]*hodeipb.TenantStatus, error)) error {
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	var sts []*hodeipb.TenantStatus
	err = withClient(c, func(cl *client.Client) error {
		sts, err = call(cl)
		return err
	})
	switch {
	case err != nil:
		return err
	case asJSON && single && len(sts) == 1:
		return writeJSON(c.App.Writer, newTenantView(sts[0]))
	case asJSON:
		views := make([]tenantView, 0, len(sts))
		for _, st := range sts {
			views = append(views, newTenantView(st))
		}
		return writeJSON(c.App.Writer, views)
	}
	return writeTenantTable(c.App.Writer, e.now(), sts)
}

// tenantView is a tenant as `--output json` shows it.
type tenantView struct {
	Name        string        `json:"name"`
	Weight      float64       `json:"weight"`
	MaxQueued   int64         `json:"max_queued"`
	MaxRunning  resourcesView `json:"max_running"`
	Burst       float64       `json:"burst"`
	BurstForMs  int64         `json:"burst_for_ms"`
	CooldownMs  int64         `json:"cooldown_ms"`
	Preemptible bool          `json:"preemptible"`
	RunAs       string        `json:"run_as"` // "": the agent's default user
	Queued      int64         `json:"queued"`
	PendingJobs int64         `json:"pending_jobs"`
	Pending     resourcesView `json:"pending"`
	Running     resourcesView `json:"running"`
	Share       float64       `json:"share"`
	FairShare   float64       `json:"fair_share"`
	BurstState  string        `json:"burst_state"` // none, bursting or cooldown
	BurstUntil  time.Time     `json:"burst_until,omitzero"`
	Created     time.Time     `json:"created,omitzero"`
	Updated     time.Time     `json:"updated,omitzero"`
}

func newTenantView(st *hodeipb.TenantStatus) tenantView {
	t := st.GetTenant()
	return tenantView{
		Name:        t.GetName(),
		Weight:      t.GetWeight(),
		MaxQueued:   t.GetMaxQueued(),
		MaxRunning:  newResourcesView(t.GetMaxRunning()),
		Burst:       t.GetBurst(),
		BurstForMs:  t.GetBurstForMs(),
		CooldownMs:  t.GetCooldownMs(),
		Preemptible: t.GetPreemptible(),
		RunAs:       t.GetRunAs(),
		Queued:      st.GetQueued(),
		PendingJobs: st.GetPendingJobs(),
		Pending:     newResourcesView(st.GetPending()),
		Running:     newResourcesView(st.GetRunning()),
		Share:       st.GetShare(),
		FairShare:   st.GetFairShare(),
		BurstState:  burstStateName(st.GetBurstState()),
		BurstUntil:  unixNano(st.GetBurstUntilUnixNano()),
		Created:     unixNano(t.GetCreatedUnixNano()),
		Updated:     unixNano(t.GetUpdatedUnixNano()),
	}
}

func burstStateName(s hodeipb.BurstState) string {
	switch s {
	case hodeipb.BurstState_BURST_STATE_BURSTING:
		return "bursting"
	case hodeipb.BurstState_BURST_STATE_COOLDOWN:
		return "cooldown"
	}
	return "none"
}

func writeTenantTable(w io.Writer, now time.Time, sts []*hodeipb.TenantStatus) error {
	t := newTable(w, "NAME", "WEIGHT", "MAX-RUNNING", "MAX-QUEUED", "QUEUED", "PENDING", "RUNNING", "SHARE", "FAIR-SHARE", "BURST", "RUN-AS")
	for _, st := range sts {
		v := newTenantView(st)
		t.row(v.Name, strconv.FormatFloat(v.Weight, 'g', -1, 64), limitCell(v.MaxRunning), countCell(v.MaxQueued),
			strconv.FormatInt(v.Queued, 10), strconv.FormatInt(v.Pending.Slots, 10), strconv.FormatInt(v.Running.Slots, 10),
			percent(v.Share), fairShareCell(v), burstCell(now, v), v.RunAs)
	}
	return t.flush()
}

// writeTenantDetail writes one tenant as "Field: value" lines.
func writeTenantDetail(w io.Writer, now time.Time, st *hodeipb.TenantStatus) error {
	v := newTenantView(st)
	d := newDetail(w, now)
	line, when := d.line, d.when
	line("Name", v.Name)
	line("Weight", strconv.FormatFloat(v.Weight, 'g', -1, 64))
	line("Max running", limitCell(v.MaxRunning))
	line("Max queued", countCell(v.MaxQueued))
	if v.Burst > 1 {
		line("Burst", fmt.Sprintf("%g× for %s, then cooldown %s", v.Burst, millis(v.BurstForMs), millis(v.CooldownMs)))
	} else {
		line("Burst", "none")
	}
	line("Preemptible", strconv.FormatBool(v.Preemptible))
	line("Run as", runAsCell(v.RunAs))
	line("Queued", jobCount(v.Queued))
	line("Pending", jobCount(v.PendingJobs)+", "+usageCell(v.Pending))
	line("Running", usageCell(v.Running))
	line("Share", percent(v.Share))
	line("Fair share", fairShareCell(v))
	line("Burst state", burstCell(now, v))
	line("Created", when(v.Created))
	line("Updated", when(v.Updated))
	return d.flush()
}

// runAsCell shows a tenant's run-as user, or what an empty one means.
func runAsCell(u string) string {
	if u == "" {
		return "the agent's default user"
	}
	return u
}

// limitCell shows running limits: the slots alone when only they are set,
// else slots=…,cpu=…,mem=…; "" (shown "-") when unlimited.
func limitCell(r resourcesView) string {
	if r.CPUMillis == 0 && r.MemoryMiB == 0 {
		return countCell(r.Slots)
	}
	var parts []string
	if r.Slots > 0 {
		parts = append(parts, fmt.Sprintf("slots=%d", r.Slots))
	}
	if r.CPUMillis > 0 {
		parts = append(parts, fmt.Sprintf("cpu=%dm", r.CPUMillis))
	}
	if r.MemoryMiB > 0 {
		parts = append(parts, "mem="+mib(r.MemoryMiB))
	}
	return strings.Join(parts, ",")
}

// usageCell shows resources in use.
func usageCell(r resourcesView) string {
	return fmt.Sprintf("slots=%d cpu=%dm memory=%s", r.Slots, r.CPUMillis, mib(r.MemoryMiB))
}

// jobCount is "1 job", "3 jobs".
func jobCount(n int64) string {
	if n == 1 {
		return "1 job"
	}
	return strconv.FormatInt(n, 10) + " jobs"
}

// countCell shows a limit where 0 is unlimited.
func countCell(n int64) string {
	if n == 0 {
		return ""
	}
	return strconv.FormatInt(n, 10)
}

func percent(f float64) string { return strconv.FormatFloat(f*100, 'f', 1, 64) + "%" }

// fairShareCell is "" (shown "-") for a tenant without work, which takes
// no part in the sharing.
func fairShareCell(v tenantView) string {
	if v.Queued == 0 {
		return ""
	}
	return percent(v.FairShare)
}

// burstCell is the burst state with the time it ends: "none", "bursting
// until 15:04:05". Times are in now's location, with the date when it is
// not today.
func burstCell(now time.Time, v tenantView) string {
	if v.BurstState == "none" || v.BurstUntil.IsZero() {
		return v.BurstState
	}
	until := v.BurstUntil.In(now.Location())
	layout := "15:04:05"
	if y, m, d := until.Date(); y != now.Year() || m != now.Month() || d != now.Day() {
		layout = "Jan 2 15:04:05"
	}
	return v.BurstState + " until " + until.Format(layout)
}

// millis shows a duration in milliseconds without zero trailing units:
// 10m, 1h30m, 12h, 1m30.5s.
func millis(ms int64) string {
	s := (time.Duration(ms) * time.Millisecond).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
