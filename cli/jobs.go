package cli

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// Defaults of `jobs ls`: how many jobs it shows without --limit or --all,
// and, without --state, --since, --array, --pipeline or --all, how long
// after they finished jobs are still listed.
const (
	defaultLimit  = 50
	defaultWindow = time.Hour
)

func jobsCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:  "jobs",
		Usage: "list, inspect and cancel jobs",
		Subcommands: []*ucli.Command{
			{
				Name:  "ls",
				Usage: "list jobs, newest first: those not finished and those finished in the last hour",
				Description: "Lists the newest jobs first (the jobs of an --array or a --pipeline in submission order).\n" +
					"Without --state, --since, --array, --pipeline or --all it shows the jobs that have not\n" +
					"finished and those that finished in the last hour; at most --limit of them (50), with a line\n" +
					"on stderr saying how many more match.\n\n" +
					"   hodei jobs ls --state failed --since 24h\n" +
					"   hodei jobs ls --name 'nightly-*' --all\n\n" +
					"Every ID argument of hodei takes any unique start of an id, in any case.",
				Flags: withFlags(true,
					&ucli.StringFlag{Name: "state", Usage: "only jobs in this `STATE` (pending, scheduled, running, completed, failed, cancelled), whenever they finished"},
					&ucli.StringFlag{Name: "tenant", Usage: "only jobs of this `TENANT`"},
					&ucli.StringSliceFlag{Name: "label", KeepSpace: true, Usage: "only jobs with these labels, `KEY=VALUE[,KEY=VALUE…]` (repeatable; all must match)"},
					&ucli.StringFlag{Name: "array", Usage: "only the jobs of the job array `ID`"},
					&ucli.StringFlag{Name: "pipeline", Usage: "only the jobs of the pipeline `ID`"},
					&ucli.StringFlag{Name: "name", Usage: "only the jobs named `GLOB`: a name, or a shell pattern (*, ?, [a-z], [!a-z]; * stops at /)"},
					&ucli.StringFlag{Name: "since", Usage: "only the jobs created within `DURATION` (30m, 24h, 7d) or since an RFC 3339 time, whenever they finished"},
					&ucli.IntFlag{Name: "limit", Value: defaultLimit, Usage: "show at most `N` jobs"},
					&ucli.BoolFlag{Name: "all", Usage: "show every matching job, whenever it finished, however many, page by page as they arrive (ignores --limit)"},
					&ucli.BoolFlag{Name: "oldest-first", Usage: "in submission order, as with --array (tasks by index) and --pipeline"},
				),
				Action: func(c *ucli.Context) error { return jobsList(c, e) },
			},
			{
				Name:      "get",
				Usage:     "show one job: its state and its whole spec (environment names, never secret values)",
				ArgsUsage: "ID",
				Flags:     withFlags(true),
				Action: func(c *ucli.Context) error {
					a, err := args(c, "job ID")
					if err != nil {
						return err
					}
					return jobCall(c, a[0], func(cl *client.Client, id string) (*hodeipb.Job, error) {
						return cl.Get(c.Context, id)
					}, func(w io.Writer, j *hodeipb.Job) error {
						return writeJobDetail(w, e.now(), j)
					})
				},
			},
			{
				Name:      "cancel",
				Usage:     "cancel a job that has not ended, or every job of an array",
				ArgsUsage: "ID | --array ID",
				Description: "Cancels one job and prints the state it is left in: CANCELLED, or CANCELLING while its agent\n" +
					"stops it (SIGTERM, then SIGKILL after the kill grace). A job that has already ended is left as\n" +
					"it is, and its state printed: that is no error. With --array it cancels every job of a job array\n" +
					"that has not ended (and then prints the ids of the jobs it cancelled).",
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
					return cancelJob(c, a[0])
				},
			},
		},
	}
}

// jobsList is `jobs ls`: it asks for the newest jobs first, and on the
// first page for the count of all that match, so that it can say on
// stderr how many it did not show.
func jobsList(c *ucli.Context, e *env) error {
	if _, err := args(c); err != nil {
		return err
	}
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	now := e.now()
	req := &hodeipb.ListJobsRequest{Tenant: c.String("tenant"), Array: c.String("array"),
		Pipeline: c.String("pipeline"), Name: c.String("name")}
	// One submission's jobs read best in its order; the rest newest first.
	req.NewestFirst = !c.Bool("oldest-first") && req.Array == "" && req.Pipeline == ""
	if s := c.String("state"); s != "" {
		if strings.EqualFold(s, cancellingState) {
			return usagef(c, "--state: %s is no state of its own: a job being cancelled is RUNNING (or SCHEDULED) "+
				"until its agent has stopped it; use --state running", cancellingState)
		}
		if req.State, err = hodeipb.ParseJobState(s); err != nil {
			return fieldUsage(c, err)
		}
	}
	if req.Labels, err = pairsFlag(c, "label"); err != nil {
		return err
	}
	if s := c.String("since"); s != "" {
		since, rule := parseSince(s, now)
		if rule != "" {
			return usagef(c, "--since: %s", rule)
		}
		req.CreatedSinceUnixNano = since.UnixNano()
	}
	all := c.Bool("all")
	if !all && req.State == 0 && req.CreatedSinceUnixNano == 0 && req.Array == "" && req.Pipeline == "" {
		req.NotFinishedBeforeUnixNano = now.Add(-defaultWindow).UnixNano()
	}
	limit := c.Int("limit")
	switch {
	case all:
		limit = 0
		req.PageSize = job.MaxPageSize
	case limit < 1:
		return usagef(c, "--limit: %d must be at least 1 (use --all for every job)", limit)
	default:
		req.PageSize = int32(min(limit, job.MaxPageSize))
		req.Count = true
	}

	out := newJobStream(c.App.Writer, asJSON, now)
	var (
		total    int64
		atLeast  bool
		cutShort bool // stopped at --limit with more pages to come
	)
	err = withClient(c, func(cl *client.Client) error {
		for _, ref := range []struct {
			kind hodeipb.IdKind
			id   *string
			flag string
		}{{hodeipb.IdKind_ID_KIND_ARRAY, &req.Array, "--array"}, {hodeipb.IdKind_ID_KIND_PIPELINE, &req.Pipeline, "--pipeline"}} {
			if *ref.id != "" {
				if *ref.id, err = resolveID(c, cl, ref.kind, *ref.id, ref.flag); err != nil {
					return err
				}
			}
		}
		first := true
		for resp, err := range cl.ListResponses(c.Context, req) {
			if err != nil {
				return err
			}
			if first {
				total, atLeast, first = resp.GetTotal(), resp.GetTotalIsLowerBound(), false
			}
			page := resp.GetJobs()
			if limit > 0 {
				page = page[:min(len(page), limit-out.n)]
			}
			if err := out.page(page); err != nil {
				return err
			}
			if limit > 0 && out.n >= limit {
				cutShort = resp.GetNextPageToken() != ""
				break
			}
		}
		return nil
	})
	if err != nil {
		return listFlagsOf.named(c, err)
	}
	if err := out.close(); err != nil {
		return err
	}
	if !all && (int64(out.n) < total || atLeast && cutShort) {
		_, err = fmt.Fprintln(c.App.ErrWriter, footer(out.n, total, atLeast))
	}
	return err
}

// footer is the line under a listing that did not show every match:
// "50 of 20,057 shown (--all, --limit N, --state …)".
func footer(shown int, total int64, atLeast bool) string {
	of := job.Thousands(total)
	switch {
	case atLeast && total > int64(shown):
		of = "more than " + of
	case atLeast:
		return fmt.Sprintf("%s shown; more match (--all, --limit N, --state …)", job.Thousands(int64(shown)))
	}
	return fmt.Sprintf("%s of %s shown (--all, --limit N, --state …)", job.Thousands(int64(shown)), of)
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

// cancelJob is `jobs cancel ID`: it prints the state the job is left in,
// one line (`-o json`: the job), and exits 0 also when the job had ended
// already, which it learns first, so that a job cancelled before is told
// as one that had ended like any other.
func cancelJob(c *ucli.Context, ref string) error {
	hadEnded := false
	return jobCall(c, ref, func(cl *client.Client, id string) (*hodeipb.Job, error) {
		if cur, err := cl.Get(c.Context, id); err == nil && job.State(cur.GetState()).Terminal() {
			hadEnded = true
			return cur, nil
		}
		return cl.Cancel(c.Context, id, c.String("reason"))
	}, func(w io.Writer, j *hodeipb.Job) error {
		_, err := fmt.Fprintln(w, j.GetId(), cancelState(j, hadEnded))
		return err
	})
}

// cancelState says where a cancel left a job: CANCELLED, CANCELLING while
// its agent stops it, or the state it had ended in (hadEnded: before the
// cancel, which then had nothing to do).
func cancelState(j *hodeipb.Job, hadEnded bool) string {
	switch st := j.GetState(); {
	case st == hodeipb.JobState_JOB_STATE_CANCELLED && !hadEnded:
		return "CANCELLED"
	case job.State(st).Terminal():
		return hodeipb.StateName(st) + " (it had ended; nothing to cancel)"
	case j.GetCancelRequested() != "":
		return cancellingState + " (its agent stops it; it ends CANCELLED)"
	}
	return hodeipb.StateName(j.GetState())
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
		if id, err = resolveID(c, cl, hodeipb.IdKind_ID_KIND_ARRAY, id, "--array"); err != nil {
			return err
		}
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

// jobCall runs a call about the job ref names (its whole id resolved
// first) that returns the job, and prints it: with text, or as JSON.
func jobCall(c *ucli.Context, ref string, call func(cl *client.Client, id string) (*hodeipb.Job, error),
	text func(io.Writer, *hodeipb.Job) error) error {
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	var j *hodeipb.Job
	err = withClient(c, func(cl *client.Client) error {
		id, err := resolveJobID(c, cl, ref, "ID")
		if err != nil {
			return err
		}
		j, err = call(cl, id)
		return err
	})
	switch {
	case err != nil:
		return jobFlagsOf.named(c, err)
	case asJSON:
		return writeJSON(c.App.Writer, newJobView(j))
	}
	return text(c.App.Writer, j)
}
