package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/creack/pty"
	ucli "github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/client"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// defaultPoll is how often `pipeline run --wait` asks for the pipeline's
// state. JobService.Watch has no pipeline filter, so asking is simpler
// than watching every job of the tenant.
const defaultPoll = 300 * time.Millisecond

// waitThroughOutage is how long --wait keeps asking a server that does not
// answer, as while it restarts, before it gives up.
const waitThroughOutage = time.Minute

func (e *env) pollEvery() time.Duration {
	if e.poll > 0 {
		return e.poll
	}
	return defaultPoll
}

// waitPipeline shows a pipeline's progress until it ends, starting from
// st, and maps its end to the exit status: 0 for COMPLETED, 1 for FAILED
// or CANCELLED. On a terminal the step table is redrawn in place; on
// anything else each change of a step is one line. With asJSON nothing is
// shown until the end, and then the pipeline as `pipeline get -o json`
// shows it. An interrupt stops waiting, not the pipeline.
func waitPipeline(c *ucli.Context, e *env, cl *client.Client, st *hodeipb.PipelineStatus, asJSON bool) error {
	id := st.GetPipeline().GetId()
	var show func(*hodeipb.PipelineStatus) error
	switch cols, ok := terminalWidth(c.App.Writer); {
	case asJSON:
		show = func(*hodeipb.PipelineStatus) error { return nil }
	case ok:
		show = (&redrawView{w: c.App.Writer, cols: cols}).show
	default:
		if _, err := fmt.Fprintln(c.App.Writer, id); err != nil {
			return err
		}
		show = (&lineView{w: c.App.Writer, last: make(map[string]string)}).show
	}
	interrupted := func() error {
		fmt.Fprintf(c.App.ErrWriter, "hodei: pipeline %s keeps running; 'hodei pipeline cancel %s' stops it\n", id, id)
		return c.Context.Err()
	}
	tick := time.NewTicker(e.pollEvery())
	defer tick.Stop()
	var down time.Time // since when the server has been unavailable
	for {
		if err := show(st); err != nil {
			return err
		}
		if st.GetState() >= hodeipb.PipelineState_PIPELINE_STATE_COMPLETED {
			break
		}
		select {
		case <-c.Context.Done():
			return interrupted()
		case <-tick.C:
		}
		next, err := cl.GetPipeline(c.Context, id)
		switch {
		case err == nil:
			st, down = next, time.Time{}
		case c.Context.Err() != nil:
			return interrupted()
		case status.Code(err) == codes.Unavailable && (down.IsZero() || e.now().Sub(down) < waitThroughOutage):
			// The server may be restarting; the pipeline resumes with it.
			if down.IsZero() {
				down = e.now()
			}
		default:
			return err
		}
	}
	if asJSON {
		if err := writeJSON(c.App.Writer, newPipelineView(st)); err != nil {
			return err
		}
	}
	return pipelineExit(c, st)
}

// pipelineExit maps an ended pipeline to the exit status of `pipeline run
// --wait`, saying on stderr which steps failed.
func pipelineExit(c *ucli.Context, st *hodeipb.PipelineStatus) error {
	id := st.GetPipeline().GetId()
	switch st.GetState() {
	case hodeipb.PipelineState_PIPELINE_STATE_COMPLETED:
		return nil
	case hodeipb.PipelineState_PIPELINE_STATE_CANCELLED:
		fmt.Fprintf(c.App.ErrWriter, "hodei: pipeline %s was cancelled\n", id)
		return &exitStatus{code: exitFailure}
	}
	jobs := jobsByID(st)
	var failed []string
	for _, s := range st.GetPipeline().GetSteps() {
		if progressOf(s, jobs).state() == "FAILED" {
			failed = append(failed, s.GetName())
		}
	}
	msg := hodeipb.PipelineStateName(st.GetState())
	if len(failed) > 0 {
		msg = "failed in step " + strings.Join(failed, ", ")
	}
	fmt.Fprintf(c.App.ErrWriter, "hodei: pipeline %s %s\n", id, msg)
	return &exitStatus{code: exitFailure}
}

// terminalWidth reports whether w is a terminal, and its width.
func terminalWidth(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok {
		return 0, false
	}
	_, cols, err := pty.Getsize(f)
	switch {
	case err != nil:
		return 0, false
	case cols <= 0: // a terminal that does not know its size
		cols = 80
	}
	return cols, true
}

// stepRows returns one "name STATE progress" row per step of st.
func stepRows(st *hodeipb.PipelineStatus) [][3]string {
	jobs := jobsByID(st)
	var rows [][3]string
	for _, s := range st.GetPipeline().GetSteps() {
		p := progressOf(s, jobs)
		rows = append(rows, [3]string{s.GetName(), p.state(), p.String()})
	}
	return rows
}

// lineView writes one line per change of a step, for logs and pipes: a
// change of its jobs' states or of the kind of wait its reason tells, not
// of the reason's words alone (a backoff's countdown, a count of workers).
type lineView struct {
	w     io.Writer
	last  map[string]string // step → what its last line said, as key
	state hodeipb.PipelineState
}

func (v *lineView) show(st *hodeipb.PipelineStatus) error {
	jobs := jobsByID(st)
	for _, s := range st.GetPipeline().GetSteps() {
		p := progressOf(s, jobs)
		key := p.state() + "|" + p.counts() + "|" + p.whyKind.String()
		if v.last[s.GetName()] == key {
			continue
		}
		v.last[s.GetName()] = key
		if _, err := fmt.Fprintf(v.w, "%s: %s (%s)\n", cell(s.GetName()), p.state(), p); err != nil {
			return err
		}
	}
	if st.GetState() != v.state && st.GetState() >= hodeipb.PipelineState_PIPELINE_STATE_COMPLETED {
		v.state = st.GetState()
		_, err := fmt.Fprintf(v.w, "pipeline %s %s\n", st.GetPipeline().GetId(), hodeipb.PipelineStateName(st.GetState()))
		return err
	}
	return nil
}

// redrawView keeps a table of the steps on a terminal, redrawn in place
// when it changes.
type redrawView struct {
	w     io.Writer
	cols  int    // the terminal's width: longer lines are cut, so that each takes one row
	last  string // what is on screen
	lines int    // how many lines that is
}

func (v *redrawView) show(st *hodeipb.PipelineStatus) error {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "pipeline %s %s\n\n", st.GetPipeline().GetId(), hodeipb.PipelineStateName(st.GetState()))
	t := newTable(&buf, "STEP", "STATE", "JOBS")
	for _, r := range stepRows(st) {
		t.row(r[0], r[1], r[2])
	}
	t.flush()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	for i, l := range lines {
		if r := []rune(l); len(r) >= v.cols {
			lines[i] = string(r[:v.cols-1])
		}
	}
	out := strings.Join(lines, "\n") + "\n"
	if out == v.last {
		return nil
	}
	var b strings.Builder
	if v.lines > 0 {
		// Up to the first line of the last drawing, and clear to the end.
		fmt.Fprintf(&b, "\x1b[%dA\x1b[J", v.lines)
	}
	b.WriteString(out)
	v.last, v.lines = out, len(lines)
	_, err := io.WriteString(v.w, b.String())
	return err
}
