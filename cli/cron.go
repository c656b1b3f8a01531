package cli

import (
	"fmt"
	"io"
	"strconv"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/client"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// cronFlagsOf names the fields of a schedule's rules as `cron add`'s
// flags; the fields of its job ("job.timeout") as submit's.
var cronFlagsOf = func() flagsOfFields {
	m := flagsOfFields{
		"name": "NAME", "tenant": "--tenant", "schedule": "--schedule", "timezone": "--timezone",
		"overlap": "--overlap", "catch_up": "--catch-up", "starting_deadline": "--starting-deadline",
		"pipeline": "--pipeline",
	}
	for k, v := range specFlagsOf {
		m["job."+k] = v
	}
	return m
}()

func cronCommand(e *env) *ucli.Command {
	ref := func(usage string, call func(c *ucli.Context, cl *client.Client, tenant, name string) (*hodeipb.CronSchedule, error)) *ucli.Command {
		return &ucli.Command{
			Usage: usage, ArgsUsage: "NAME",
			Flags: withFlags(true, &ucli.StringFlag{Name: "tenant", Usage: "`TENANT` of the schedule (default: the token's only tenant, or default)"}),
			Action: func(c *ucli.Context) error {
				a, err := args(c, "NAME")
				if err != nil {
					return err
				}
				asJSON, err := jsonOutput(c)
				if err != nil {
					return err
				}
				return withClient(c, func(cl *client.Client) error {
					sc, err := call(c, cl, c.String("tenant"), a[0])
					if err != nil || sc == nil {
						return err
					}
					if asJSON {
						return writeJSON(c.App.Writer, newCronView(sc))
					}
					return writeCronDetail(c.App.Writer, sc)
				})
			},
		}
	}
	get := ref("show a schedule", func(c *ucli.Context, cl *client.Client, t, n string) (*hodeipb.CronSchedule, error) {
		return cl.CronGet(c.Context, t, n)
	})
	get.Name = "get"
	pause := ref("stop a schedule's ticks until resume", func(c *ucli.Context, cl *client.Client, t, n string) (*hodeipb.CronSchedule, error) {
		return cl.CronPause(c.Context, t, n)
	})
	pause.Name = "pause"
	resume := ref("start a paused schedule again from its next tick after now", func(c *ucli.Context, cl *client.Client, t, n string) (*hodeipb.CronSchedule, error) {
		return cl.CronResume(c.Context, t, n)
	})
	resume.Name = "resume"
	rm := ref("delete a schedule (not the jobs it submitted)", func(c *ucli.Context, cl *client.Client, t, n string) (*hodeipb.CronSchedule, error) {
		return nil, cl.CronRemove(c.Context, t, n)
	})
	rm.Name = "rm"
	run := ref("submit a schedule's job (or pipeline) now, and print its id", func(c *ucli.Context, cl *client.Client, t, n string) (*hodeipb.CronSchedule, error) {
		id, err := cl.CronRun(c.Context, t, n)
		if err != nil {
			return nil, err
		}
		if asJSON, _ := jsonOutput(c); asJSON {
			return nil, writeJSON(c.App.Writer, struct {
				ID string `json:"id"`
			}{id})
		}
		_, err = fmt.Fprintln(c.App.Writer, id)
		return nil, err
	})
	run.Name = "run"
	return &ucli.Command{
		Name:  "cron",
		Usage: "run jobs on a schedule",
		Description: "A schedule submits a job (or runs a pipeline) at each tick of a cron expression, in a time zone.\n" +
			"Each job has the label hodei.cron=NAME (jobs ls --label hodei.cron=NAME) and HODEI_CRON_TIME (its\n" +
			"tick, RFC 3339) and HODEI_CRON_NAME in its environment.",
		Subcommands: []*ucli.Command{cronAddCommand(e), cronListCommand(), get, pause, resume, rm, run},
	}
}

func cronAddCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:      "add",
		Usage:     "add a schedule",
		ArgsUsage: "NAME --schedule EXPR [flags] -- CMD [ARG…] | --file FILE | --pipeline FILE",
		Description: "EXPR has 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first,\n" +
			"or is a descriptor: @hourly, @daily, @weekly, @monthly, @yearly, @every DURATION. Its wall times are\n" +
			"read in --timezone (default UTC). In a daylight-saving change, a schedule with fixed hours fires\n" +
			"once a day: a time the clocks skip fires when they land (\"30 2 * * *\" at 03:00), a time they repeat\n" +
			"fires the first time only; \"0 * * * *\" fires every real hour.\n\n" +
			"   hodei cron add backup --schedule \"30 2 * * *\" --timezone Europe/Madrid --overlap forbid -- /usr/local/bin/backup\n\n" +
			"--overlap says what a tick does while the previous job has not ended: allow (run both), forbid (skip\n" +
			"the tick) or replace (cancel the previous job). --catch-up says what to do with the ticks missed while\n" +
			"the server was down: none (skip them), one (run once, for the latest), all (run each, at most 100).\n" +
			"A tick fires at most once, across restarts and crashes of the server.",
		Flags: withFlags(true, append(specFlags(),
			&ucli.StringFlag{Name: "schedule", Usage: "cron `EXPR` (required), e.g. \"*/5 * * * *\", \"0 30 2 * * *\", @hourly, \"@every 10m\""},
			&ucli.StringFlag{Name: "timezone", Usage: "IANA time `ZONE` the expression is read in, e.g. Europe/Madrid (default UTC)"},
			&ucli.StringFlag{Name: "overlap", Value: "allow", Usage: "`POLICY` while the previous job runs: allow, forbid or replace"},
			&ucli.StringFlag{Name: "catch-up", Value: "none", Usage: "`POLICY` for the ticks missed while the server was down: none, one or all (at most 100)"},
			&ucli.StringFlag{Name: "starting-deadline", Usage: "skip a tick that would start more than `DURATION` late (e.g. 5m); default none"},
			&ucli.StringFlag{Name: "file", Usage: "the job of each tick from `FILE`: one JSON job line, as submit --file takes"},
			&ucli.StringFlag{Name: "pipeline", Usage: "run the pipeline of `FILE` (YAML, as pipeline run takes) at each tick"},
		)...),
		Action: func(c *ucli.Context) error { return cronAdd(c, e) },
	}
}

// cronArgs reads `cron add`'s NAME, the flags after it, and the command
// after NAME (after -- or the first argument that is not a flag).
func cronArgs(c *ucli.Context) (string, []string, error) {
	rest := c.Args().Slice()
	var name string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			if name == "" {
				return "", nil, usagef(c, "missing NAME")
			}
			return name, rest[i+1:], nil
		case len(a) < 2 || a[0] != '-':
			if name == "" {
				name = a
				continue
			}
			return name, rest[i:], nil
		}
		n, err := setTrailingFlag(c, a, rest[i+1:])
		if err != nil {
			return "", nil, err
		}
		i += n
	}
	if name == "" {
		return "", nil, usagef(c, "missing NAME")
	}
	return name, nil, nil
}

func cronAdd(c *ucli.Context, e *env) error {
	name, argv, err := cronArgs(c)
	if err != nil {
		return err
	}
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	if !c.IsSet("schedule") {
		return usagef(c, "missing --schedule EXPR, e.g. \"*/5 * * * *\"")
	}
	if c.IsSet("timezone") && c.String("timezone") == "" {
		return usagef(c, "--timezone: empty; leave it out for UTC, or give an IANA zone such as Europe/Madrid")
	}
	sc := &hodeipb.CronSchedule{
		Name: name, Tenant: c.String("tenant"), Schedule: c.String("schedule"), Timezone: c.String("timezone"),
		Overlap: c.String("overlap"), CatchUp: c.String("catch-up"),
	}
	if sc.StartingDeadlineMs, err = millisFlag(c, "starting-deadline"); err != nil {
		return err
	}
	var ix *fileIndex
	switch {
	case c.IsSet("pipeline") && (c.IsSet("file") || len(argv) > 0):
		return usagef(c, "give one of a command, --file or --pipeline")
	case c.IsSet("file") && len(argv) > 0:
		return usagef(c, "give either --file or a command, not both")
	case c.IsSet("pipeline"):
		if sc.Pipeline, ix, err = readPipelineFile(c.String("pipeline")); err != nil {
			return err
		}
		sc.Pipeline.Tenant = sc.Tenant
	case c.IsSet("file"):
		r, fname, err := openJobsFile(c, c.String("file"))
		if err != nil {
			return err
		}
		jobs, err := readJobsFile(r, fname, e.now())
		r.Close()
		if err != nil {
			return err
		}
		if len(jobs) != 1 {
			return usagef(c, "--file: %s has %d jobs; a schedule runs one (or a --pipeline)", fname, len(jobs))
		}
		sc.Job = jobs[0].spec
		if sc.Job.Tenant == "" {
			sc.Job.Tenant = sc.Tenant
		}
	default:
		if sc.Job, err = specFromFlagsArgs(c, e.now(), argv); err != nil {
			return err
		}
	}
	return withClient(c, func(cl *client.Client) error {
		added, err := cl.CronAdd(c.Context, sc)
		if err != nil {
			if ix != nil {
				return pipelineFileError(c.String("pipeline"), ix, err)
			}
			return cronFlagsOf.named(c, err)
		}
		if asJSON {
			return writeJSON(c.App.Writer, newCronView(added))
		}
		_, err = fmt.Fprintf(c.App.Writer, "%s: next run %s\n", added.GetName(), cronTime(added, added.GetNextRunUnixNano()))
		return err
	})
}

func cronListCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "ls",
		Usage: "list schedules: their expression, zone, next and last run, and the last job's state",
		Flags: withFlags(true, &ucli.StringFlag{Name: "tenant", Usage: "only the schedules of `TENANT`"}),
		Action: func(c *ucli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			asJSON, err := jsonOutput(c)
			if err != nil {
				return err
			}
			return withClient(c, func(cl *client.Client) error {
				list, err := cl.CronList(c.Context, c.String("tenant"))
				if err != nil {
					return err
				}
				if asJSON {
					views := make([]cronView, len(list))
					for i, sc := range list {
						views[i] = newCronView(sc)
					}
					return writeJSON(c.App.Writer, views)
				}
				t := newTable(c.App.Writer, "NAME", "TENANT", "SCHEDULE", "TZ", "NEXT RUN", "LAST RUN", "LAST STATE")
				for _, sc := range list {
					next := cronTime(sc, sc.GetNextRunUnixNano())
					if sc.GetPaused() {
						next = "paused"
					}
					t.row(sc.GetName(), sc.GetTenant(), sc.GetSchedule(), zoneName(sc), next,
						cronTime(sc, sc.GetLastRunUnixNano()), lastState(sc))
				}
				return t.flush()
			})
		},
	}
}

// cronView is a schedule as `-o json` prints it.
type cronView struct {
	Name             string                `json:"name"`
	Tenant           string                `json:"tenant"`
	Schedule         string                `json:"schedule"`
	Timezone         string                `json:"timezone"`
	Overlap          string                `json:"overlap"`
	CatchUp          string                `json:"catch_up"`
	StartingDeadline string                `json:"starting_deadline,omitempty"`
	Paused           bool                  `json:"paused"`
	NextRun          *time.Time            `json:"next_run,omitempty"`
	LastTick         *time.Time            `json:"last_tick,omitempty"`
	LastRun          *time.Time            `json:"last_run,omitempty"`
	LastJob          string                `json:"last_job,omitempty"`
	LastState        string                `json:"last_state,omitempty"`
	Skipped          int64                 `json:"skipped"`
	LastSkip         string                `json:"last_skip,omitempty"`
	Job              *hodeipb.JobSpec      `json:"job,omitempty"`
	Pipeline         *hodeipb.PipelineSpec `json:"pipeline,omitempty"`
}

func newCronView(sc *hodeipb.CronSchedule) cronView {
	at := func(n int64) *time.Time {
		if n == 0 {
			return nil
		}
		t := time.Unix(0, n).In(zoneOf(sc))
		return &t
	}
	v := cronView{
		Name: sc.GetName(), Tenant: sc.GetTenant(), Schedule: sc.GetSchedule(), Timezone: zoneName(sc),
		Overlap: sc.GetOverlap(), CatchUp: sc.GetCatchUp(), Paused: sc.GetPaused(),
		NextRun: at(sc.GetNextRunUnixNano()), LastTick: at(sc.GetLastTickUnixNano()), LastRun: at(sc.GetLastRunUnixNano()),
		LastJob: sc.GetLastJob(), LastState: sc.GetLastState(), Skipped: sc.GetSkipped(), LastSkip: sc.GetLastSkip(),
		Job: sc.GetJob(), Pipeline: sc.GetPipeline(),
	}
	if d := sc.GetStartingDeadlineMs(); d > 0 {
		v.StartingDeadline = (time.Duration(d) * time.Millisecond).String()
	}
	return v
}

func writeCronDetail(w io.Writer, sc *hodeipb.CronSchedule) error {
	d := newTable(w, "FIELD", "VALUE")
	d.row("name", sc.GetName())
	d.row("tenant", sc.GetTenant())
	d.row("schedule", sc.GetSchedule())
	d.row("timezone", zoneName(sc))
	d.row("overlap", sc.GetOverlap())
	d.row("catch-up", sc.GetCatchUp())
	if ms := sc.GetStartingDeadlineMs(); ms > 0 {
		d.row("starting deadline", (time.Duration(ms) * time.Millisecond).String())
	}
	d.row("paused", strconv.FormatBool(sc.GetPaused()))
	if p := sc.GetPipeline(); p != nil {
		d.row("runs", "pipeline "+p.GetName())
	} else if j := sc.GetJob(); j != nil {
		what := j.GetScript()
		if what == "" {
			what = fmt.Sprintf("%q", j.GetCommand())
		}
		d.row("runs", what)
	}
	d.row("next run", cronTime(sc, sc.GetNextRunUnixNano()))
	d.row("last tick", cronTime(sc, sc.GetLastTickUnixNano()))
	d.row("last run", cronTime(sc, sc.GetLastRunUnixNano()))
	d.row("last job", orDash(sc.GetLastJob()))
	d.row("last state", lastState(sc))
	d.row("skipped", strconv.FormatInt(sc.GetSkipped(), 10))
	if s := sc.GetLastSkip(); s != "" {
		d.row("last skip", s)
	}
	return d.flush()
}

func zoneOf(sc *hodeipb.CronSchedule) *time.Location {
	if loc, err := time.LoadLocation(sc.GetTimezone()); err == nil {
		return loc
	}
	return time.UTC
}

func zoneName(sc *hodeipb.CronSchedule) string {
	if sc.GetTimezone() == "" {
		return "UTC"
	}
	return sc.GetTimezone()
}

// cronTime shows a time of a schedule in its zone; "-" for none.
func cronTime(sc *hodeipb.CronSchedule, n int64) string {
	if n == 0 {
		return "-"
	}
	return time.Unix(0, n).In(zoneOf(sc)).Format("2006-01-02 15:04:05 MST")
}

func lastState(sc *hodeipb.CronSchedule) string {
	if s := sc.GetLastState(); s != "" {
		return s
	}
	if sc.GetLastSkip() != "" {
		return "skipped"
	}
	return "-"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
