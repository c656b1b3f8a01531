package cli

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

func pipelineCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:  "pipeline",
		Usage: "run pipelines: DAGs of jobs with fan-out and fan-in",
		Subcommands: []*ucli.Command{
			{
				Name:      "run",
				Usage:     "run the pipeline a YAML file describes and print its id",
				ArgsUsage: "FILE",
				Description: "Reads the pipeline from FILE (the format is in README.md), sends it to the server,\n" +
					"which stores it with all its jobs or, when a rule is broken, nothing, and prints\n" +
					"its id. With --wait it then shows the state of each step as it changes and exits\n" +
					"0 when the pipeline completed, 1 when it failed or was cancelled:\n\n" +
					"   hodei pipeline run release.yaml --wait",
				Flags: withFlags(true,
					&ucli.BoolFlag{Name: "wait", Usage: "show the steps' progress until the pipeline ends; exit 0 only if it completed"},
				),
				Action: func(c *ucli.Context) error { return pipelineRun(c, e) },
			},
			{
				Name:  "ls",
				Usage: "list pipelines, newest first",
				Description: "Lists the newest pipelines first, at most --limit of them (50), with a line on stderr\n" +
					"when more are kept; --all lists every one, page by page as they arrive.\n\n" +
					"   hodei pipeline ls --tenant lab --limit 10",
				Flags: withFlags(true,
					&ucli.StringFlag{Name: "tenant", Usage: "only pipelines of this `TENANT`"},
					&ucli.IntFlag{Name: "limit", Value: defaultLimit, Usage: "show at most `N` pipelines"},
					&ucli.BoolFlag{Name: "all", Usage: "show every pipeline, however many (ignores --limit)"},
				),
				Action: func(c *ucli.Context) error { return pipelineList(c, e) },
			},
			{
				Name:      "get",
				Usage:     "show a pipeline: its steps and their jobs",
				ArgsUsage: "ID",
				Flags:     withFlags(true),
				Action: func(c *ucli.Context) error {
					a, err := args(c, "pipeline ID")
					if err != nil {
						return err
					}
					asJSON, err := jsonOutput(c)
					if err != nil {
						return err
					}
					var st *hodeipb.PipelineStatus
					err = withClient(c, func(cl *client.Client) error {
						id, err := resolveID(c, cl, hodeipb.IdKind_ID_KIND_PIPELINE, a[0], "ID")
						if err != nil {
							return err
						}
						st, err = cl.GetPipeline(c.Context, id)
						return err
					})
					switch {
					case err != nil:
						return err
					case asJSON:
						return writeJSON(c.App.Writer, newPipelineView(st))
					}
					return writePipelineDetail(c.App.Writer, e.now(), st)
				},
			},
			{
				Name:      "cancel",
				Usage:     "cancel every job of a pipeline that has not ended",
				ArgsUsage: "ID",
				Flags: withFlags(true,
					&ucli.StringFlag{Name: "reason", DefaultText: "pipeline cancelled", Usage: "`REASON` recorded on the jobs"},
				),
				Action: func(c *ucli.Context) error {
					a, err := args(c, "pipeline ID")
					if err != nil {
						return err
					}
					return pipelinesCall(c, e, func(cl *client.Client) ([]*hodeipb.PipelineStatus, error) {
						id, err := resolveID(c, cl, hodeipb.IdKind_ID_KIND_PIPELINE, a[0], "ID")
						if err != nil {
							return nil, err
						}
						// One that had ended is left as it is, as by jobs cancel.
						if cur, err := cl.GetPipeline(c.Context, id); err == nil && job.PipelineState(cur.GetState()).Terminal() {
							fmt.Fprintf(c.App.ErrWriter, "nothing to cancel: pipeline %s had ended (%s)\n", id, hodeipb.PipelineStateName(cur.GetState()))
							return []*hodeipb.PipelineStatus{cur}, nil
						}
						st, err := cl.CancelPipeline(c.Context, id, c.String("reason"))
						return []*hodeipb.PipelineStatus{st}, err
					})
				},
			},
		},
	}
}

// pipelineRun is `pipeline run FILE [--wait]`. A bad file is reported with
// its name and line and exits 1; nothing is sent then.
func pipelineRun(c *ucli.Context, e *env) error {
	a, err := args(c, "FILE")
	if err != nil {
		return err
	}
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	spec, ix, err := readPipelineFile(a[0])
	if err != nil {
		return err
	}
	return withClient(c, func(cl *client.Client) error {
		st, err := cl.RunPipeline(c.Context, spec)
		if err != nil {
			return pipelineFileError(a[0], ix, err)
		}
		switch {
		case c.Bool("wait"):
			return waitPipeline(c, e, cl, st, asJSON)
		case asJSON:
			return writeJSON(c.App.Writer, newPipelineView(st))
		}
		_, err = fmt.Fprintln(c.App.Writer, st.GetPipeline().GetId())
		return err
	})
}

// pipelinesCall runs a call that returns pipelines and prints them as a
// table or as JSON: the first one as an object.
func pipelinesCall(c *ucli.Context, e *env, call func(*client.Client) ([]*hodeipb.PipelineStatus, error)) error {
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	var got []*hodeipb.PipelineStatus
	err = withClient(c, func(cl *client.Client) error {
		got, err = call(cl)
		return err
	})
	switch {
	case err != nil:
		return err
	case asJSON:
		return writeJSON(c.App.Writer, newPipelineView(got[0]))
	}
	t := newTable(c.App.Writer, "ID", "NAME", "TENANT", "STATE", "STEPS", "AGE")
	for _, st := range got {
		p := st.GetPipeline()
		t.row(p.GetId(), p.GetName(), p.GetTenant(), hodeipb.PipelineStateName(st.GetState()),
			strconv.Itoa(len(p.GetSteps())), age(e.now(), unixNano(p.GetCreatedUnixNano())))
	}
	return t.flush()
}

// pipelineList is `pipeline ls`: the newest pipelines first, page by page
// as they arrive, so that memory holds one page however many are kept.
func pipelineList(c *ucli.Context, e *env) error {
	if _, err := args(c); err != nil {
		return err
	}
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	req := &hodeipb.ListPipelinesRequest{Tenant: c.String("tenant")}
	limit := c.Int("limit")
	switch {
	case c.Bool("all"):
		limit = 0
		req.PageSize = cluster.MaxPipelinePage
	case limit < 1:
		return usagef(c, "--limit: %d must be at least 1 (use --all for every pipeline)", limit)
	default:
		req.PageSize = int32(min(limit, cluster.MaxPipelinePage))
	}
	w := bufio.NewWriter(c.App.Writer)
	var (
		t        *table
		arr      *jsonArray
		n        int
		cutShort bool
	)
	if asJSON {
		arr = newJSONArray(w)
	} else {
		t = newTable(w, "ID", "NAME", "TENANT", "STATE", "STEPS", "AGE")
	}
	now := e.now()
	err = withClient(c, func(cl *client.Client) error {
		for resp, err := range cl.PipelinePages(c.Context, req) {
			if err != nil {
				return err
			}
			page := resp.GetPipelines()
			if limit > 0 {
				page = page[:min(len(page), limit-n)]
			}
			for _, st := range page {
				if arr != nil {
					if err := arr.add(newPipelineView(st)); err != nil {
						return err
					}
					continue
				}
				p := st.GetPipeline()
				t.row(p.GetId(), p.GetName(), p.GetTenant(), hodeipb.PipelineStateName(st.GetState()),
					strconv.Itoa(len(p.GetSteps())), age(now, unixNano(p.GetCreatedUnixNano())))
			}
			n += len(page)
			if t != nil {
				if err := t.flushPage(); err != nil {
					return err
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if limit > 0 && n >= limit {
				cutShort = resp.GetNextPageToken() != "" || len(page) < len(resp.GetPipelines())
				break
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if arr != nil {
		err = arr.close()
	} else {
		err = t.flush()
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil && cutShort {
		_, err = fmt.Fprintf(c.App.ErrWriter, "%s shown; more are kept (--all, --limit N, --tenant T)\n", job.Thousands(int64(n)))
	}
	return err
}

// pipelineView is a pipeline as `--output json` shows it.
type pipelineView struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Tenant    string     `json:"tenant"`
	State     string     `json:"state"`
	Cancelled bool       `json:"cancelled,omitempty"`
	Created   time.Time  `json:"created,omitzero"`
	Steps     []stepView `json:"steps"`
}

// stepView is one step of a pipelineView. State and Jobs are there when
// the answer had the jobs (run, get), not in ls.
type stepView struct {
	Name              string    `json:"name"`
	Needs             []string  `json:"needs"`
	ContinueOnFailure bool      `json:"continue_on_failure,omitempty"`
	State             string    `json:"state,omitempty"`
	JobIDs            []string  `json:"job_ids"`
	Jobs              []jobView `json:"jobs,omitempty"`
}

func newPipelineView(st *hodeipb.PipelineStatus) pipelineView {
	p := st.GetPipeline()
	v := pipelineView{
		ID:        p.GetId(),
		Name:      p.GetName(),
		Tenant:    p.GetTenant(),
		State:     hodeipb.PipelineStateName(st.GetState()),
		Cancelled: p.GetCancelled(),
		Created:   unixNano(p.GetCreatedUnixNano()),
		Steps:     []stepView{},
	}
	jobs := jobsByID(st)
	for _, s := range p.GetSteps() {
		sv := stepView{
			Name:              s.GetName(),
			Needs:             nonNilSlice(s.GetNeeds()),
			ContinueOnFailure: s.GetContinueOnFailure(),
			JobIDs:            nonNilSlice(s.GetJobs()),
		}
		if len(jobs) > 0 {
			sv.State = progressOf(s, jobs).state()
			for _, id := range s.GetJobs() {
				if j := jobs[id]; j != nil {
					sv.Jobs = append(sv.Jobs, newJobView(j))
				}
			}
		}
		v.Steps = append(v.Steps, sv)
	}
	return v
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func jobsByID(st *hodeipb.PipelineStatus) map[string]*hodeipb.Job {
	m := make(map[string]*hodeipb.Job, len(st.GetJobs()))
	for _, j := range st.GetJobs() {
		m[j.GetId()] = j
	}
	return m
}

// progress counts the jobs of one step by state.
type progress struct {
	total   int
	byState [job.Cancelled + 1]int // Cancelled is the last state
	waiting int                    // pending in their first attempt: not started at all
	gone    int                    // deleted by retention
	// why is what keeps the first of its pending jobs that waits for more
	// than its dependencies or its turn (a worker with its labels, room
	// under its tenant's limit …), as the server said; "" for none.
	why     string
	whyKind hodeipb.PendingKind // the kind of wait why tells
}

func progressOf(s *hodeipb.Pipeline_Step, jobs map[string]*hodeipb.Job) progress {
	p := progress{total: len(s.GetJobs())}
	for _, id := range s.GetJobs() {
		j := jobs[id]
		if j == nil {
			p.gone++
			continue
		}
		st := job.State(j.GetState())
		if st.Valid() {
			p.byState[st]++
		}
		if st == job.Pending && j.GetAttempt() <= 1 {
			p.waiting++
		}
		if st == job.Pending && p.why == "" {
			switch j.GetPending().GetKind() {
			case hodeipb.PendingKind_PENDING_KIND_UNSPECIFIED, hodeipb.PendingKind_PENDING_KIND_DEPENDENCY,
				hodeipb.PendingKind_PENDING_KIND_QUEUED:
			default:
				p.why, p.whyKind = j.GetPending().GetMessage(), j.GetPending().GetKind()
			}
		}
	}
	return p
}

// state sums the step up: COMPLETED when every job completed, FAILED or
// CANCELLED when every job ended and one did not complete, PENDING while
// no job started, RUNNING otherwise.
func (p progress) state() string {
	ended := p.gone + p.byState[job.Completed] + p.byState[job.Failed] + p.byState[job.Cancelled]
	switch {
	case p.total > 0 && p.byState[job.Completed] == p.total:
		return "COMPLETED"
	case ended == p.total && p.byState[job.Failed] > 0:
		return "FAILED"
	case ended == p.total && p.byState[job.Cancelled] > 0:
		return "CANCELLED"
	case ended == p.total:
		return "COMPLETED" // the rest was deleted by retention
	case p.waiting == p.total:
		return "PENDING"
	}
	return "RUNNING"
}

// String is "2/6 completed, 1 running, 3 pending": the completed share,
// then the other states that have jobs; then, when a pending job waits
// for more than its turn, why: "0/1 completed, 1 pending; no ready worker
// has label os=linux (0 of 1)".
func (p progress) String() string {
	if p.why != "" {
		return p.counts() + "; " + p.why
	}
	return p.counts()
}

// counts is String without why: "2/6 completed, 1 running, 3 pending".
func (p progress) counts() string {
	parts := []string{fmt.Sprintf("%d/%d completed", p.byState[job.Completed], p.total)}
	for _, st := range []job.State{job.Pending, job.Scheduled, job.Running, job.Failed, job.Cancelled} {
		if n := p.byState[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, strings.ToLower(st.String())))
		}
	}
	if p.gone > 0 {
		parts = append(parts, fmt.Sprintf("%d deleted", p.gone))
	}
	return strings.Join(parts, ", ")
}

// writePipelineDetail writes a pipeline as "Field: value" lines, then a
// table of its steps and one of their jobs.
func writePipelineDetail(w io.Writer, now time.Time, st *hodeipb.PipelineStatus) error {
	v := newPipelineView(st)
	d := newDetail(w, now)
	d.line("ID", v.ID)
	d.line("Name", v.Name)
	d.line("Tenant", v.Tenant)
	d.line("State", v.State)
	d.line("Created", d.when(v.Created))
	if err := d.flush(); err != nil {
		return err
	}
	jobs := jobsByID(st)
	io.WriteString(w, "\n")
	// ON-FAILURE "continue": the steps that need this one run even when
	// it fails.
	steps := newTable(w, "STEP", "NEEDS", "ON-FAILURE", "STATE", "JOBS")
	for _, s := range st.GetPipeline().GetSteps() {
		p := progressOf(s, jobs)
		onFailure := ""
		if s.GetContinueOnFailure() {
			onFailure = "continue"
		}
		steps.row(s.GetName(), strings.Join(s.GetNeeds(), ","), onFailure, p.state(), p.String())
	}
	if err := steps.flush(); err != nil {
		return err
	}
	io.WriteString(w, "\n")
	t := newTable(w, "STEP", "JOB", "NAME", "STATE", "ATTEMPT", "DURATION", "REASON")
	for _, s := range st.GetPipeline().GetSteps() {
		for _, id := range s.GetJobs() {
			j := jobs[id]
			if j == nil {
				t.row(s.GetName(), id, "", "deleted", "", "", "")
				continue
			}
			t.row(s.GetName(), id, j.GetSpec().GetName(), hodeipb.StateName(j.GetState()),
				strconv.Itoa(int(j.GetAttempt())), jobDuration(now, j), reasonCell(j))
		}
	}
	return t.flush()
}

// jobDuration is how long a job's current attempt ran, or has run so far;
// "" before it started.
func jobDuration(now time.Time, j *hodeipb.Job) string {
	start := unixNano(j.GetStartedUnixNano())
	if start.IsZero() {
		return ""
	}
	end := unixNano(j.GetFinishedUnixNano())
	if end.IsZero() || !job.State(j.GetState()).Terminal() {
		end = now
	}
	d := max(end.Sub(start), 0)
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
