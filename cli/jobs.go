package cli

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// defaultLimit is how many jobs `jobs ls` shows without --limit or --all.
const defaultLimit = 100

func jobsCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:  "jobs",
		Usage: "list, inspect and cancel jobs",
		Subcommands: []*ucli.Command{
			{
				Name:  "ls",
				Usage: "list jobs in submission order",
				Flags: withFlags(true,
					&ucli.StringFlag{Name: "state", Usage: "only jobs in this `STATE` (pending, scheduled, running, completed, failed, cancelled)"},
					&ucli.StringFlag{Name: "tenant", Usage: "only jobs of this `TENANT`"},
					&ucli.StringSliceFlag{Name: "label", KeepSpace: true, Usage: "only jobs with this label, `KEY=VALUE` (repeatable; all must match)"},
					&ucli.StringFlag{Name: "array", Usage: "only the jobs of the job array `ID`"},
					&ucli.StringFlag{Name: "pipeline", Usage: "only the jobs of the pipeline `ID`"},
					&ucli.StringFlag{Name: "name", Usage: "only the jobs named exactly `NAME`"},
					&ucli.IntFlag{Name: "limit", Value: defaultLimit, Usage: "show at most `N` jobs"},
					&ucli.BoolFlag{Name: "all", Usage: "show every matching job, however many, page by page as they arrive (ignores --limit)"},
				),
				Action: func(c *ucli.Context) error { return jobsList(c, e) },
			},
			{
				Name:      "get",
				Usage:     "show one job",
				ArgsUsage: "ID",
				Flags:     withFlags(true),
				Action: func(c *ucli.Context) error {
					a, err := args(c, "job ID")
					if err != nil {
						return err
					}
					return jobCall(c, e, false, func(cl *client.Client) (*hodeipb.Job, error) {
						return cl.Get(c.Context, a[0])
					})
				},
			},
			{
				Name:      "cancel",
				Usage:     "cancel a job that has not ended, or every job of an array",
				ArgsUsage: "ID | --array ID",
				Description: "Cancels one job, or with --array every job of a job array that has not ended\n" +
					"(and then prints the ids of the jobs it cancelled).",
				Flags: withFlags(true,
					&ucli.StringFlag{Name: "reason", DefaultText: "cancelled by user", Usage: "`REASON` recorded on the job"},
					&ucli.StringFlag{Name: "array", Usage: "cancel every job of the job array `ID` instead of one job"},
				),
				Action: func(c *ucli.Context) error {
					if c.IsSet("array") {
						return cancelArray(c)
					}
					a, err := args(c, "job ID (or --array ID)")
					if err != nil {
						return err
					}
					return jobCall(c, e, true, func(cl *client.Client) (*hodeipb.Job, error) {
						return cl.Cancel(c.Context, a[0], c.String("reason"))
					})
				},
			},
		},
	}
}

func jobsList(c *ucli.Context, e *env) error {
	if _, err := args(c); err != nil {
		return err
	}
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	req := &hodeipb.ListJobsRequest{Tenant: c.String("tenant"), Array: c.String("array"),
		Pipeline: c.String("pipeline"), Name: c.String("name")}
	if s := c.String("state"); s != "" {
		if req.State, err = hodeipb.ParseJobState(s); err != nil {
			return fieldUsage(c, err)
		}
	}
	if req.Labels, err = pairsFlag(c, "label"); err != nil {
		return err
	}
	limit := c.Int("limit")
	switch {
	case c.Bool("all"):
		limit = 0
		req.PageSize = job.MaxPageSize
	case limit < 1:
		return usagef(c, "--limit: %d must be at least 1 (use --all for every job)", limit)
	default:
		req.PageSize = int32(min(limit, job.MaxPageSize))
	}

	out := newJobStream(c.App.Writer, asJSON, e.now())
	err = withClient(c, func(cl *client.Client) error {
		for page, err := range cl.ListPages(c.Context, req) {
			if err != nil {
				return err
			}
			if limit > 0 {
				page = page[:min(len(page), limit-out.n)]
			}
			if err := out.page(page); err != nil {
				return err
			}
			if limit > 0 && out.n >= limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return out.close()
}

// jobStream prints a job listing page by page, as the pages arrive, so that
// the first rows show at once and memory holds one page however long the
// listing: a table whose columns are aligned page by page (see table), or
// one JSON array written element by element. After an error the output is
// left as it is: a JSON array stays open, so that it does not parse as a
// whole listing.
type jobStream struct {
	w     *bufio.Writer // flushed after every page
	now   time.Time
	table *table     // table output
	json  *jsonArray // JSON output
	n     int        // jobs written
}

func newJobStream(w io.Writer, asJSON bool, now time.Time) *jobStream {
	s := &jobStream{w: bufio.NewWriter(w), now: now}
	if asJSON {
		s.json = newJSONArray(s.w)
	} else {
		s.table = newJobTable(s.w)
	}
	return s
}

// page writes one page of jobs and flushes it to the terminal.
func (s *jobStream) page(jobs []*hodeipb.Job) error {
	if s.json != nil {
		views := make([]any, len(jobs))
		for i, j := range jobs {
			views[i] = newJobView(j)
		}
		if err := s.json.add(views...); err != nil {
			return err
		}
	} else {
		for _, j := range jobs {
			jobRow(s.table, s.now, j)
		}
		if err := s.table.flushPage(); err != nil {
			return err
		}
	}
	s.n += len(jobs)
	return s.w.Flush()
}

// close ends the listing: the table's header when no page had a row, the
// JSON array's end.
func (s *jobStream) close() error {
	var err error
	if s.json != nil {
		err = s.json.close()
	} else {
		err = s.table.flush()
	}
	if err != nil {
		return err
	}
	return s.w.Flush()
}

// cancelArray is `jobs cancel --array ID`: it cancels the array's tasks in
// one commit and prints the ids of those it cancelled, one a line, or for
// more than 10,000 their count on stderr; on stderr too that there was
// nothing left to cancel.
func cancelArray(c *ucli.Context) error {
	if a := c.Args().First(); a != "" && a[0] != '-' {
		return usagef(c, "give either a job ID or --array ID, not both")
	}
	if _, err := args(c); err != nil {
		return err
	}
	id := c.String("array")
	if id == "" {
		return usagef(c, "--array: must not be empty")
	}
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	var ids []string
	var n int64
	err = withClient(c, func(cl *client.Client) error {
		n, ids, err = cl.CancelArray(c.Context, id, c.String("reason"))
		return err
	})
	switch {
	case err != nil:
		return err
	case asJSON:
		if ids == nil && n == 0 {
			ids = []string{}
		}
		return writeJSON(c.App.Writer, struct {
			Array     string   `json:"array"`
			Count     int64    `json:"count"`
			Cancelled []string `json:"cancelled,omitempty"` // left out past 10,000
		}{id, n, ids})
	}
	switch {
	case n == 0 && len(ids) == 0:
		_, err := fmt.Fprintf(c.App.ErrWriter, "nothing to cancel: every task of array %s has ended\n", id)
		return err
	case int64(len(ids)) < n:
		// Too many to list: the count says it.
		_, err := fmt.Fprintf(c.App.ErrWriter, "cancelled %d tasks of array %s\n", n, id)
		return err
	}
	for _, jid := range ids {
		if _, err := fmt.Fprintln(c.App.Writer, jid); err != nil {
			return err
		}
	}
	return nil
}

// jobCall runs a call that returns one job and prints it: as a one-row table
// if row, else as a detail view, or as JSON.
func jobCall(c *ucli.Context, e *env, row bool, call func(*client.Client) (*hodeipb.Job, error)) error {
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	var j *hodeipb.Job
	err = withClient(c, func(cl *client.Client) error {
		j, err = call(cl)
		return err
	})
	switch {
	case err != nil:
		return err
	case asJSON:
		return writeJSON(c.App.Writer, newJobView(j))
	case row:
		return writeJobTable(c.App.Writer, e.now(), []*hodeipb.Job{j})
	default:
		return writeJobDetail(c.App.Writer, e.now(), j)
	}
}

// jobView is a job as `--output json` shows it: stable keys, names instead
// of enum numbers, RFC 3339 times omitted when unset.
type jobView struct {
	ID                string            `json:"id"`
	Name              string            `json:"name"`
	Tenant            string            `json:"tenant"`
	State             string            `json:"state"`
	Attempt           int32             `json:"attempt"`
	ExitCode          int32             `json:"exit_code"`
	Signal            int32             `json:"signal,omitempty"` // that ended the process; exit_code is then -1
	Reason            string            `json:"reason"`
	PendingReason     string            `json:"pending_reason,omitempty"` // why a pending job waits
	PendingKind       string            `json:"pending_kind,omitempty"`   // which kind of reason: labels, slots, queued …
	Worker            string            `json:"worker"`
	Priority          int32             `json:"priority"`
	EffectivePriority float64           `json:"effective_priority,omitempty"` // pending jobs only
	Preemptible       bool              `json:"preemptible"`
	Deadline          time.Time         `json:"deadline,omitzero"`
	DeadlineMissed    bool              `json:"deadline_missed,omitempty"`
	Preemptions       int32             `json:"preemptions,omitempty"`
	Labels            map[string]string `json:"labels"`
	Command           []string          `json:"command"`
	Script            string            `json:"script,omitempty"`
	DependsOn         []string          `json:"depends_on,omitempty"`
	Pipeline          string            `json:"pipeline,omitempty"`
	Step              string            `json:"step,omitempty"`
	Array             string            `json:"array,omitempty"`
	ArrayIndex        *int32            `json:"array_index,omitempty"` // with array only
	CancelRequested   string            `json:"cancel_requested,omitempty"`
	Created           time.Time         `json:"created,omitzero"`
	Scheduled         time.Time         `json:"scheduled,omitzero"`
	Started           time.Time         `json:"started,omitzero"`
	Finished          time.Time         `json:"finished,omitzero"`
}

func newJobView(j *hodeipb.Job) jobView {
	s := j.GetSpec()
	prio := int32(job.DefaultPriority)
	if s.Priority != nil {
		prio = s.GetPriority()
	}
	cmd := s.GetCommand()
	if cmd == nil {
		cmd = []string{}
	}
	var eff float64
	if j.GetState() == hodeipb.JobState_JOB_STATE_PENDING {
		eff = j.GetEffectivePriority()
	}
	var index *int32
	if s.GetArray() != "" {
		index = proto.Int32(s.GetArrayIndex())
	}
	return jobView{
		Pipeline:          s.GetPipeline(),
		Step:              s.GetStep(),
		Array:             s.GetArray(),
		ArrayIndex:        index,
		EffectivePriority: eff,
		ID:                j.GetId(),
		Name:              s.GetName(),
		Tenant:            s.GetTenant(),
		State:             hodeipb.StateName(j.GetState()),
		Attempt:           j.GetAttempt(),
		ExitCode:          j.GetExitCode(),
		Signal:            j.GetSignal(),
		Reason:            j.GetReason(),
		PendingReason:     j.GetPending().GetMessage(),
		PendingKind:       pendingKindName(j.GetPending().GetKind()),
		Worker:            j.GetWorker(),
		Priority:          prio,
		Preemptible:       s.GetPreemptible(),
		Deadline:          unixNano(s.GetDeadlineUnixNano()),
		DeadlineMissed:    j.GetDeadlineMissed(),
		Preemptions:       j.GetPreemptions(),
		Labels:            nonNil(s.GetLabels()),
		Command:           cmd,
		Script:            s.GetScript(),
		DependsOn:         s.GetDependsOn(),
		CancelRequested:   j.GetCancelRequested(),
		Created:           unixNano(j.GetCreatedUnixNano()),
		Scheduled:         unixNano(j.GetScheduledUnixNano()),
		Started:           unixNano(j.GetStartedUnixNano()),
		Finished:          unixNano(j.GetFinishedUnixNano()),
	}
}

func writeJobTable(w io.Writer, now time.Time, jobs []*hodeipb.Job) error {
	t := newJobTable(w)
	for _, j := range jobs {
		jobRow(t, now, j)
	}
	return t.flush()
}

// newJobTable starts a table of jobs with its header.
func newJobTable(w io.Writer) *table {
	return newTable(w, "ID", "NAME", "TENANT", "STATE", "PRIO", "EFF-PRIO", "ATTEMPT", "EXIT", "WORKER", "AGE", "REASON")
}

// jobRow adds j to a table of jobs.
func jobRow(t *table, now time.Time, j *hodeipb.Job) {
	v := newJobView(j)
	t.row(v.ID, v.Name, v.Tenant, v.State, strconv.Itoa(int(v.Priority)), effPrioCell(v), strconv.Itoa(int(v.Attempt)),
		exitCell(j), v.Worker, age(now, v.Created), reasonCell(v))
}

// reasonCell is why a pending job waits, when the server said, else the
// job's recorded reason.
func reasonCell(v jobView) string {
	if v.PendingReason != "" {
		return v.PendingReason
	}
	return v.Reason
}

// pendingKindName is a PendingKind as JSON shows it: "labels",
// "tenant-limit"; "" for none.
func pendingKindName(k hodeipb.PendingKind) string {
	if k == hodeipb.PendingKind_PENDING_KIND_UNSPECIFIED {
		return ""
	}
	name := strings.TrimPrefix(k.String(), "PENDING_KIND_")
	return strings.ToLower(strings.ReplaceAll(name, "_", "-"))
}

// effPrioCell is the effective priority of a pending job, to one decimal;
// other jobs do not rank, and show "-".
func effPrioCell(v jobView) string {
	if v.State != job.Pending.String() {
		return ""
	}
	return strconv.FormatFloat(v.EffectivePriority, 'f', 1, 64)
}

// exitCell is the exit code of a job that ended after it started; a code
// is not shown while a retry may still replace it.
func exitCell(j *hodeipb.Job) string {
	st := job.State(j.GetState())
	if !st.Terminal() || (st == job.Cancelled && j.GetStartedUnixNano() == 0) {
		return ""
	}
	return strconv.Itoa(int(j.GetExitCode()))
}

// writeJobDetail writes one job as "Field: value" lines.
func writeJobDetail(w io.Writer, now time.Time, j *hodeipb.Job) error {
	v := newJobView(j)
	s := j.GetSpec()
	d := newDetail(w, now)
	line, when := d.line, d.when
	line("ID", v.ID)
	line("Name", v.Name)
	line("Tenant", v.Tenant)
	line("State", v.State)
	line("Attempt", strconv.Itoa(int(v.Attempt)))
	line("Exit code", exitCell(j))
	line("Reason", reasonCell(v))
	if v.PendingReason != "" && v.Reason != "" {
		line("Last attempt", v.Reason) // why it is pending again
	}
	if v.CancelRequested != "" {
		line("Cancel requested", v.CancelRequested)
	}
	line("Worker", v.Worker)
	line("Priority", strconv.Itoa(int(v.Priority)))
	if eff := effPrioCell(v); eff != "" {
		line("Effective priority", eff)
	}
	if !v.Deadline.IsZero() {
		dl := v.Deadline.Format(time.RFC3339)
		if v.DeadlineMissed {
			dl += " (missed)"
		}
		line("Deadline", dl)
	}
	if v.Preemptible {
		line("Preemptible", "true")
	}
	if v.Preemptions > 0 {
		line("Preemptions", strconv.Itoa(int(v.Preemptions)))
	}
	line("Labels", pairs(v.Labels))
	if v.Script != "" {
		line("Script", v.Script)
	} else {
		line("Command", quoteArgv(v.Command))
	}
	if len(v.DependsOn) > 0 {
		line("After", strings.Join(v.DependsOn, ","))
	}
	if v.Pipeline != "" {
		line("Pipeline", v.Pipeline+", step "+v.Step)
	}
	if v.Array != "" {
		line("Array", fmt.Sprintf("%s, index %d", v.Array, *v.ArrayIndex))
	}
	if r := s.GetResources(); r != nil {
		line("Resources", fmt.Sprintf("cpu=%dm memory=%s slots=%d", r.GetCpuMillis(), mib(r.GetMemoryMib()), r.GetSlots()))
	}
	if ms := s.GetTimeoutMs(); ms > 0 {
		line("Timeout", (time.Duration(ms) * time.Millisecond).String())
	}
	if n := s.GetRetries(); n > 0 {
		line("Retries", fmt.Sprintf("%d (backoff %s)", n, time.Duration(s.GetBackoffMs())*time.Millisecond))
	}
	line("Created", when(v.Created))
	line("Scheduled", when(v.Scheduled))
	line("Started", when(v.Started))
	line("Finished", when(v.Finished))
	return d.flush()
}

// quoteArgv joins argv for display, quoting the words a shell would split.
func quoteArgv(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`*?[]{}()<>|&;#~") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
