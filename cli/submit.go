package cli

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

func submitCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:      "submit",
		Usage:     "submit a job and print its id",
		ArgsUsage: "[--] CMD [ARG…] | --file FILE",
		Description: "Runs CMD with its arguments on a worker, or --script with /bin/sh -c.\n" +
			"Put -- before CMD when it has flags of its own:\n\n" +
			"   hodei submit --name build --label team=ci --timeout 10m -- make -j8 all\n\n" +
			"With --array FIRST-LAST[%MAX] it submits an array, one task per index, each with\n" +
			"HODEI_ARRAY_INDEX in its environment, at most MAX of them running at once, and prints\n" +
			"the array id (with -o json, the number of tasks and, up to 10,000, their ids); a task\n" +
			"is ARRAY-ID[INDEX] to jobs get, logs and cancel:\n\n" +
			"   hodei submit --array 0-99%10 -- ./render.sh\n\n" +
			"With --file FILE (- for stdin) it submits one job per line of FILE, each a JSON object with\n" +
			"the fields of a pipeline step plus tenant and after; blank lines and lines starting with #\n" +
			"are skipped. It prints the job ids in line order (with -o json, {\"ids\": […]}):\n\n" +
			"   {\"name\": \"render-1\", \"command\": [\"./render.sh\", \"1\"], \"timeout\": \"10m\", \"labels\": {\"team\": \"vfx\"}}\n\n" +
			"Every line is checked before anything is sent: a bad line fails the command, naming its\n" +
			"line, with nothing submitted. The jobs then go in batches of up to 10,000, each stored\n" +
			"all or nothing; if the server refuses a later batch (a tenant's max-queued limit, say),\n" +
			"the earlier batches stay submitted and their ids printed.",
		Flags: withFlags(true, append(specFlags(),
			&ucli.StringFlag{Name: "array", Usage: "submit one job per index of `FIRST-LAST[%MAX]` (e.g. 0-99%10: 100 jobs, at most 10 running at once)"},
			&ucli.StringFlag{Name: "file", Usage: "submit the jobs of `FILE`, one JSON object per line (- for stdin)"},
			requireFitFlag(),
		)...),
		Action: func(c *ucli.Context) error {
			asJSON, err := jsonOutput(c)
			if err != nil {
				return err
			}
			if c.IsSet("file") {
				return submitFile(c, e, asJSON)
			}
			spec, err := specFromFlags(c, e.now())
			if err != nil {
				return err
			}
			if c.IsSet("array") {
				return submitArray(c, spec, asJSON)
			}
			return withClient(c, func(cl *client.Client) error {
				id, err := cl.Submit(c.Context, spec, client.RequireFit(c.Bool("require-fit")))
				if err != nil {
					return specFlagsOf.named(c, err)
				}
				if asJSON {
					return writeJSON(c.App.Writer, struct {
						ID string `json:"id"`
					}{id})
				}
				_, err = fmt.Fprintln(c.App.Writer, id)
				return err
			})
		},
	}
}

// submitArray submits spec as the job array --array describes and prints
// the array id, or with asJSON the array id and the job ids. A malformed
// --array is a usage error; its bounds are checked here too, by the same
// rules as the server's.
func submitArray(c *ucli.Context, spec *hodeipb.JobSpec, asJSON bool) error {
	arr := c.String("array")
	if _, err := job.ParseArray(arr); err != nil {
		return fieldUsage(c, err)
	}
	return withClient(c, func(cl *client.Client) error {
		id, tasks, ids, err := cl.SubmitArray(c.Context, spec, arr, client.RequireFit(c.Bool("require-fit")))
		if err != nil {
			return specFlagsOf.named(c, err)
		}
		if asJSON {
			return writeJSON(c.App.Writer, struct {
				ID    string   `json:"id"`
				Tasks int64    `json:"tasks"`
				IDs   []string `json:"ids,omitempty"`
			}{id, tasks, ids})
		}
		_, err = fmt.Fprintln(c.App.Writer, id)
		return err
	})
}

// requireFitFlag is submit's and run's --require-fit.
func requireFitFlag() ucli.Flag {
	return &ucli.BoolFlag{Name: "require-fit", Usage: "refuse the job when no registered worker could ever take it " +
		"(its slots, --cpu, --memory and --selector against each worker's capacity and labels, whatever it runs now and even if draining), " +
		"instead of leaving it pending"}
}

// specFlags are the flags that describe a job, shared by submit and run.
// specFromFlags reads them back.
func specFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "name", Usage: "job `NAME`, for people"},
		&ucli.StringFlag{Name: "tenant", DefaultText: "default", Usage: "`TENANT` the job is accounted to"},
		&ucli.IntFlag{Name: "priority", DefaultText: "500", Usage: "`P` from 0 to 1000, higher first"},
		&ucli.StringFlag{Name: "deadline", Usage: "start the job by this `TIME`: a duration from now (30m, 2h) or an RFC 3339 time (2026-11-28T10:00:00Z); its priority rises as the time nears"},
		&ucli.BoolFlag{Name: "preemptible", Usage: "the job may be stopped and requeued for a tenant below its share"},
		&ucli.StringFlag{Name: "timeout", Usage: "stop the job after this `DURATION` (e.g. 90s, 10m, 1h30m); 0: none"},
		&ucli.IntFlag{Name: "retries", Usage: "`N` extra attempts after a failed one"},
		&ucli.StringFlag{Name: "backoff", DefaultText: "1s", Usage: "`DURATION` before the first retry, doubled for each next"},
		&ucli.StringSliceFlag{Name: "label", KeepSpace: true, Usage: "label the job, `KEY=VALUE[,KEY=VALUE…]` (repeatable)"},
		&ucli.StringSliceFlag{Name: "env", KeepSpace: true, Usage: "environment variable, `KEY=VALUE` (repeatable)"},
		&ucli.StringSliceFlag{Name: "secret-env", KeepSpace: true, Usage: "environment variable whose value is masked in logs and answers, `KEY=VALUE` (repeatable)"},
		&ucli.StringSliceFlag{Name: "selector", KeepSpace: true, Usage: "run only on workers with these labels, `KEY=VALUE[,KEY=VALUE…]` (repeatable; all must match)"},
		&ucli.Int64Flag{Name: "cpu", DefaultText: "none", Usage: "CPU to reserve, in `MILLIS` (thousandths of a core)"},
		&ucli.Int64Flag{Name: "memory", DefaultText: "none", Usage: "memory to reserve, in `MiB`"},
		&ucli.Int64Flag{Name: "slots", DefaultText: "1", Usage: "`N` job slots to reserve"},
		&ucli.StringSliceFlag{Name: "after", Usage: "start only after job `ID` completed (repeatable, or comma-separated)"},
		&ucli.StringFlag{Name: "workdir", Usage: "working directory of the job, an absolute `DIR` on the worker"},
		&ucli.BoolFlag{Name: "no-pty", Usage: "capture stdout/stderr through pipes instead of a terminal"},
		&ucli.StringFlag{Name: "script", Usage: "shell `SCRIPT` to run with /bin/sh -c, instead of CMD"},
	}
}

// specFromFlags builds the spec the specFlags and the arguments describe;
// now is the time a --deadline duration counts from. Malformed values are
// usage errors naming the flag; rules the values must follow (ranges, key
// syntax) are left to the server, which names the field.
func specFromFlags(c *ucli.Context, now time.Time) (*hodeipb.JobSpec, error) {
	return specFromFlagsArgs(c, now, c.Args().Slice())
}

// specFromFlagsArgs is specFromFlags with the command given as argv.
func specFromFlagsArgs(c *ucli.Context, now time.Time, argv []string) (*hodeipb.JobSpec, error) {
	spec := &hodeipb.JobSpec{
		Name:        c.String("name"),
		Tenant:      c.String("tenant"),
		Script:      c.String("script"),
		Workdir:     c.String("workdir"),
		NoPty:       c.Bool("no-pty"),
		Preemptible: c.Bool("preemptible"),
	}
	if len(argv) > 0 {
		spec.Command = argv
	}
	switch {
	case spec.Script != "" && spec.Command != nil:
		return nil, usagef(c, "give either a command or --script, not both")
	case spec.Script == "" && spec.Command == nil:
		return nil, usagef(c, "missing command: give CMD [ARG…] after the flags (or after --), or --script")
	}

	var err error
	if c.IsSet("priority") {
		p, err := int32Flag(c, "priority")
		if err != nil {
			return nil, err
		}
		spec.Priority = &p
	}
	if spec.Retries, err = int32Flag(c, "retries"); err != nil {
		return nil, err
	}
	if spec.TimeoutMs, err = millisFlag(c, "timeout"); err != nil {
		return nil, err
	}
	if spec.BackoffMs, err = millisFlag(c, "backoff"); err != nil {
		return nil, err
	}
	if spec.DeadlineUnixNano, err = deadlineFlag(c, now); err != nil {
		return nil, err
	}
	for _, m := range []struct {
		flag string
		dst  *map[string]string
	}{
		{"label", &spec.Labels},
		{"env", &spec.Env},
		{"secret-env", &spec.SecretEnv},
		{"selector", &spec.Selector},
	} {
		if *m.dst, err = pairsFlag(c, m.flag); err != nil {
			return nil, err
		}
	}
	if n := c.Int64("slots"); c.IsSet("slots") && n < 1 {
		// The wire's 0 means "the default, 1": a --slots 0 typed is refused.
		return nil, usagef(c, "--slots: %d must be between 1 and %d", n, job.MaxSlots)
	}
	if c.IsSet("cpu") || c.IsSet("memory") || c.IsSet("slots") {
		spec.Resources = &hodeipb.Resources{
			CpuMillis: c.Int64("cpu"),
			MemoryMib: c.Int64("memory"),
			Slots:     c.Int64("slots"),
		}
	}
	for _, v := range c.StringSlice("after") {
		for id := range strings.SplitSeq(v, ",") {
			if id = strings.TrimSpace(id); id != "" {
				spec.DependsOn = append(spec.DependsOn, id)
			}
		}
	}
	return spec, nil
}

// int32Flag reads an int flag that travels as int32.
func int32Flag(c *ucli.Context, name string) (int32, error) {
	v := c.Int(name)
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, usagef(c, "--%s: %d is out of range", name, v)
	}
	return int32(v), nil
}

// millisFlag reads a duration flag as whole milliseconds.
func millisFlag(c *ucli.Context, name string) (int64, error) {
	ms, rule := parseMillis(c.String(name))
	if rule != "" {
		return 0, usagef(c, "--%s: %s", name, rule)
	}
	return ms, nil
}

// parseMillis reads a duration ("90s", "10m") as whole milliseconds, "" as
// 0, or says what is wrong with it.
func parseMillis(s string) (int64, string) {
	if s == "" {
		return 0, ""
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Sprintf("%q is not a duration; use a number with a unit, e.g. 30s, 10m, 1h30m", s)
	case d < 0:
		return 0, fmt.Sprintf("%s must not be negative", s)
	case d > 0 && d < time.Millisecond:
		// It would round to 0, which means "none".
		return 0, fmt.Sprintf("%s is shorter than the resolution of 1ms", s)
	}
	return d.Milliseconds(), ""
}

// lastDeadline is the latest deadline Unix nanoseconds can hold.
var lastDeadline = time.Unix(0, math.MaxInt64)

// deadlineFlag reads --deadline, a duration from now or an RFC 3339 time,
// as Unix nanoseconds; 0 when it is not given. A deadline must lie ahead.
func deadlineFlag(c *ucli.Context, now time.Time) (int64, error) {
	s := c.String("deadline")
	if s == "" {
		return 0, nil
	}
	ns, rule := parseDeadline(s, now, "now", "30m, 2h")
	if rule != "" {
		return 0, usagef(c, "--deadline: %s", rule)
	}
	return ns, nil
}

// parseDeadline reads a deadline, a duration from now or an RFC 3339 time
// that lies ahead, as Unix nanoseconds, or says what is wrong with it;
// from names now and examples shows durations in the message.
func parseDeadline(s string, now time.Time, from, examples string) (int64, string) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return 0, fmt.Sprintf("%s must be more than 0 from %s", s, from)
		}
		return now.Add(d).UnixNano(), ""
	}
	t, err := time.Parse(time.RFC3339, s)
	switch {
	case err != nil:
		return 0, fmt.Sprintf("%q is neither a duration from %s (%s) nor an RFC 3339 time (2026-11-28T10:00:00Z)", s, from, examples)
	case !t.After(now):
		return 0, fmt.Sprintf("%s is in the past", s)
	case t.After(lastDeadline):
		return 0, fmt.Sprintf("%s is past %s, the latest time the API can carry", s, lastDeadline.Format(time.RFC3339))
	}
	return t.UnixNano(), ""
}

// pairsFlag reads a repeatable KEY=VALUE flag; a later key wins. No flag
// gives a nil map.
func pairsFlag(c *ucli.Context, name string) (map[string]string, error) {
	vals := c.StringSlice(name)
	if len(vals) == 0 {
		return nil, nil
	}
	// Labels and selectors take k=v,… as serve's and agent's --labels do;
	// an environment value may hold commas (PATH-like lists).
	split := name == "label" || name == "selector"
	m := make(map[string]string, len(vals))
	for _, val := range vals {
		kvs := []string{val}
		if split {
			kvs = strings.Split(val, ",")
		}
		for _, kv := range kvs {
			if split && strings.TrimSpace(kv) == "" {
				return nil, usagef(c, "--%s: %q has an empty item; want KEY=VALUE[,KEY=VALUE…]", name, val)
			}
			k, v, err := job.ParseLabel(name, kv)
			if err != nil {
				return nil, fieldUsage(c, err)
			}
			m[k] = v
		}
	}
	return m, nil
}

// fieldUsage turns a *job.FieldError whose field is a flag name into a
// usage error that names the flag as typed: "--label: …".
func fieldUsage(c *ucli.Context, err error) error {
	var fe *job.FieldError
	if errors.As(err, &fe) {
		return usagef(c, "%s: %s", dashes(fe.Field), fe.Rule)
	}
	return usagef(c, "%s", err)
}
