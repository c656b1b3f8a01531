package cli

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// Shorthands for job states in testPipeline.
const (
	pending   = hodeipb.JobState_JOB_STATE_PENDING
	running   = hodeipb.JobState_JOB_STATE_RUNNING
	completed = hodeipb.JobState_JOB_STATE_COMPLETED
	failed    = hodeipb.JobState_JOB_STATE_FAILED
	cancelled = hodeipb.JobState_JOB_STATE_CANCELLED
)

// testPipeline is the pipeline build → test (a matrix of two) → publish
// in state st, its four jobs in the given states.
func testPipeline(st hodeipb.PipelineState, build, test1, test2, publish hodeipb.JobState) *hodeipb.PipelineStatus {
	ago := func(d time.Duration) int64 { return testNow.Add(-d).UnixNano() }
	ids := []string{"01JAAAAAAAAAAAAAAAAAAAAAB1", "01JAAAAAAAAAAAAAAAAAAAAAT1", "01JAAAAAAAAAAAAAAAAAAAAAT2", "01JAAAAAAAAAAAAAAAAAAAAAP1"}
	names := []string{"release/build", "release/test[os=linux]", "release/test[os=mac]", "release/publish"}
	p := &hodeipb.Pipeline{
		Id: testPipelineID, Name: "release", Tenant: "default", CreatedUnixNano: ago(10 * time.Minute),
		Cancelled: st == hodeipb.PipelineState_PIPELINE_STATE_CANCELLED,
		Steps: []*hodeipb.Pipeline_Step{
			{Name: "build", Jobs: ids[:1]},
			{Name: "test", Needs: []string{"build"}, Jobs: ids[1:3]},
			{Name: "publish", Needs: []string{"test"}, ContinueOnFailure: true, Jobs: ids[3:]},
		},
	}
	out := &hodeipb.PipelineStatus{Pipeline: p, State: st}
	for i, js := range []hodeipb.JobState{build, test1, test2, publish} {
		j := &hodeipb.Job{Id: ids[i], Spec: &hodeipb.JobSpec{Name: names[i], Tenant: "default", Pipeline: testPipelineID},
			State: js, Attempt: 1, CreatedUnixNano: ago(10 * time.Minute)}
		switch js {
		case running:
			j.StartedUnixNano = ago(90 * time.Second)
		case completed, failed:
			j.StartedUnixNano, j.FinishedUnixNano = ago(9*time.Minute), ago(8*time.Minute-1500*time.Millisecond)
		}
		if js == failed {
			j.ExitCode, j.Reason = 2, "exit code 2"
		}
		if js == cancelled {
			j.Reason = "dependency test failed"
		}
		out.Jobs = append(out.Jobs, j)
	}
	return out
}

func TestPipelineRunWait(t *testing.T) {
	const (
		pPending   = hodeipb.PipelineState_PIPELINE_STATE_PENDING
		pRunning   = hodeipb.PipelineState_PIPELINE_STATE_RUNNING
		pCompleted = hodeipb.PipelineState_PIPELINE_STATE_COMPLETED
		pFailed    = hodeipb.PipelineState_PIPELINE_STATE_FAILED
		pCancelled = hodeipb.PipelineState_PIPELINE_STATE_CANCELLED
	)
	for _, tc := range []struct {
		name       string
		progress   []*hodeipb.PipelineStatus
		code       int
		stdout     []string // lines after the id
		stderr     string
		jsonOutput bool
	}{
		{
			name: "Completed",
			progress: []*hodeipb.PipelineStatus{
				testPipeline(pPending, pending, pending, pending, pending),
				testPipeline(pRunning, running, pending, pending, pending),
				testPipeline(pRunning, running, pending, pending, pending), // no change: no line
				testPipeline(pRunning, completed, running, pending, pending),
				testPipeline(pCompleted, completed, completed, completed, completed),
			},
			code: 0,
			stdout: []string{
				"build: PENDING (0/1 completed, 1 pending)",
				"test: PENDING (0/2 completed, 2 pending)",
				"publish: PENDING (0/1 completed, 1 pending)",
				"build: RUNNING (0/1 completed, 1 running)",
				"build: COMPLETED (1/1 completed)",
				"test: RUNNING (0/2 completed, 1 pending, 1 running)",
				"test: COMPLETED (2/2 completed)",
				"publish: COMPLETED (1/1 completed)",
				"pipeline " + testPipelineID + " COMPLETED",
			},
		},
		{
			name: "Failed",
			progress: []*hodeipb.PipelineStatus{
				testPipeline(pFailed, completed, failed, completed, cancelled),
			},
			code:   1,
			stderr: "hodei: pipeline " + testPipelineID + " failed in step test\n",
		},
		{
			name: "Cancelled",
			progress: []*hodeipb.PipelineStatus{
				testPipeline(pCancelled, completed, cancelled, cancelled, cancelled),
			},
			code:   1,
			stderr: "hodei: pipeline " + testPipelineID + " was cancelled\n",
		},
		{
			name:       "JSONAtTheEnd",
			progress:   []*hodeipb.PipelineStatus{testPipeline(pPending, pending, pending, pending, pending), testPipeline(pCompleted, completed, completed, completed, completed)},
			code:       0,
			jsonOutput: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.jobs.progress = tc.progress
			args := []string{"pipeline", "run", "--wait", example("diamond.yaml")}
			if tc.jsonOutput {
				args = append(args, "-o", "json")
			}
			r := h.run(t, args...)
			if r.code != tc.code || r.stderr != tc.stderr {
				t.Fatalf("exit %d, stderr %q; want %d, %q", r.code, r.stderr, tc.code, tc.stderr)
			}
			if tc.jsonOutput {
				var v pipelineView
				if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.State != "COMPLETED" {
					t.Fatalf("stdout is not the final pipeline as JSON (%v):\n%s", err, r.stdout)
				}
				return
			}
			lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
			if lines[0] != testPipelineID {
				t.Errorf("first line %q, want the pipeline id", lines[0])
			}
			if tc.stdout != nil && !slices.Equal(lines[1:], tc.stdout) {
				t.Errorf("stdout lines:\n%s\nwant:\n%s", strings.Join(lines[1:], "\n"), strings.Join(tc.stdout, "\n"))
			}
		})
	}

	t.Run("ServerError", func(t *testing.T) {
		h := newHarness(t)
		h.jobs.progress = []*hodeipb.PipelineStatus{testPipeline(pRunning, running, pending, pending, pending)}
		h.jobs.setErr(status.Error(codes.Unavailable, "connection refused"))
		r := h.run(t, "pipeline", "run", "--wait", example("diamond.yaml"))
		if r.code != 1 || !strings.Contains(r.stderr, "unavailable") {
			t.Errorf("exit %d, stderr %q; want 1 and the address", r.code, r.stderr)
		}
	})
}

func TestPipelineLs(t *testing.T) {
	h := newHarness(t)
	running := testPipeline(hodeipb.PipelineState_PIPELINE_STATE_RUNNING, completed, running, pending, pending)
	done := testPipeline(hodeipb.PipelineState_PIPELINE_STATE_FAILED, completed, failed, completed, cancelled)
	done.Pipeline.Id, done.Pipeline.Name, done.Pipeline.CreatedUnixNano = "01JAAAAAAAAAAAAAAAAAAAAAA0", "nightly", testNow.Add(-50*time.Hour).UnixNano()
	running.Jobs, done.Jobs = nil, nil // as ListPipelines answers
	h.jobs.pipelines = []*hodeipb.PipelineStatus{running, done}
	r := h.run(t, "pipeline", "ls")
	r.wantOK(t)
	checkGolden(t, "pipeline-ls", r.stdout)

	r = h.run(t, "pipeline", "ls", "-o", "json")
	r.wantOK(t)
	var got []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if len(got) != 2 || got[0]["state"] != "RUNNING" || got[1]["name"] != "nightly" {
		t.Fatalf("JSON = %v", got)
	}
	steps := got[0]["steps"].([]any)
	if step := steps[1].(map[string]any); step["name"] != "test" || len(step["job_ids"].([]any)) != 2 || step["state"] != nil || step["jobs"] != nil {
		t.Errorf("step in ls JSON = %v, want name and job ids, no state or jobs", step)
	}

	// --limit cuts the listing short and says so on stderr; --all pages
	// to the end.
	r = h.run(t, "pipeline", "ls", "--limit", "1")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 2 || !strings.Contains(lines[1], running.Pipeline.Id) ||
		r.code != 0 || !strings.Contains(r.stderr, "1 shown; more are kept") {
		t.Errorf("--limit 1: stdout\n%s\nstderr %q; want the newest and a note", r.stdout, r.stderr)
	}
	r = h.run(t, "pipeline", "ls", "--all", "-o", "json")
	r.wantOK(t)
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || len(got) != 2 || r.stderr != "" {
		t.Errorf("--all: %v %v, stderr %q; want both, no note", got, err, r.stderr)
	}
	if r = h.run(t, "pipeline", "ls", "--limit", "0"); r.code == 0 || !strings.Contains(r.stderr, "--limit") {
		t.Errorf("--limit 0: exit %d, stderr %q; want an error naming --limit", r.code, r.stderr)
	}

	h = newHarness(t)
	r = h.run(t, "-o", "json", "pipeline", "ls")
	if r.wantOK(t); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("empty ls JSON = %q, want []", r.stdout)
	}
}

func TestPipelineGet(t *testing.T) {
	h := newHarness(t)
	st := testPipeline(hodeipb.PipelineState_PIPELINE_STATE_RUNNING, completed, running, failed, pending)
	h.jobs.progress = []*hodeipb.PipelineStatus{st}
	r := h.run(t, "pipeline", "get", testPipelineID)
	r.wantOK(t)
	checkGolden(t, "pipeline-get", r.stdout)

	r = h.run(t, "pipeline", "get", "-o", "json", testPipelineID)
	r.wantOK(t)
	var v pipelineView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if v.State != "RUNNING" || len(v.Steps) != 3 || v.Steps[1].State != "RUNNING" || len(v.Steps[1].Jobs) != 2 ||
		v.Steps[1].Jobs[1].State != "FAILED" || !v.Steps[2].ContinueOnFailure || !slices.Equal(v.Steps[2].Needs, []string{"test"}) {
		t.Errorf("JSON = %+v", v)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"NotFound", []string{"01JZZZZZZZZZZZZZZZZZZZZZZZ"}, 1, "hodei: pipeline 01JZZZZZZZZZZZZZZZZZZZZZZZ not found\n"},
		{"NoID", nil, 2, "missing pipeline ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.run(t, append([]string{"pipeline", "get"}, tc.args...)...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tc.code, tc.want)
			}
		})
	}
}

func TestPipelineCancel(t *testing.T) {
	h := newHarness(t)
	h.jobs.pipelines = []*hodeipb.PipelineStatus{testPipeline(hodeipb.PipelineState_PIPELINE_STATE_RUNNING, completed, running, pending, pending)}
	r := h.run(t, "pipeline", "cancel", testPipelineID, "--reason", "wrong branch")
	r.wantOK(t)
	if !strings.Contains(r.stdout, "CANCELLED") || !strings.HasPrefix(r.stdout, "ID ") {
		t.Errorf("stdout = %q, want a one-row table in state CANCELLED", r.stdout)
	}
	h.jobs.mu.Lock()
	reqs := h.jobs.pipeCancels
	h.jobs.mu.Unlock()
	if len(reqs) != 1 || reqs[0].GetId() != testPipelineID || reqs[0].GetReason() != "wrong branch" {
		t.Errorf("requests = %v", reqs)
	}
	r = h.run(t, "pipeline", "cancel", "-o", "json", testPipelineID)
	r.wantOK(t)
	var v pipelineView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.State != "CANCELLED" || !v.Cancelled {
		t.Errorf("JSON = %s (%v)", r.stdout, err)
	}
	r = h.run(t, "pipeline", "cancel", "01JZZZZZZZZZZZZZZZZZZZZZZZ")
	if r.code != 1 || r.stderr != "hodei: pipeline 01JZZZZZZZZZZZZZZZZZZZZZZZ not found\n" {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	// One that had ended is left as it is, exit 0, as by jobs cancel.
	h.jobs.mu.Lock()
	h.jobs.progress = []*hodeipb.PipelineStatus{testPipeline(hodeipb.PipelineState_PIPELINE_STATE_COMPLETED, completed, completed, completed, completed)}
	h.jobs.pipeCancels = nil
	h.jobs.mu.Unlock()
	r = h.run(t, "pipeline", "cancel", testPipelineID)
	if r.code != 0 || !strings.Contains(r.stdout, "COMPLETED") ||
		r.stderr != "nothing to cancel: pipeline "+testPipelineID+" had ended (COMPLETED)\n" {
		t.Errorf("ended pipeline: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	h.jobs.mu.Lock()
	defer h.jobs.mu.Unlock()
	if len(h.jobs.pipeCancels) != 0 {
		t.Errorf("an ended pipeline was cancelled: %v", h.jobs.pipeCancels)
	}
}

func TestRedrawView(t *testing.T) {
	var buf strings.Builder
	v := &redrawView{w: &buf, cols: 40}
	first := testPipeline(hodeipb.PipelineState_PIPELINE_STATE_RUNNING, running, pending, pending, pending)
	if err := v.show(first); err != nil {
		t.Fatal(err)
	}
	drawn := buf.String()
	if strings.Contains(drawn, "\x1b[") || !strings.HasPrefix(drawn, "pipeline "+testPipelineID+" RUN\n\nSTEP ") || !strings.HasSuffix(drawn, "pend\n") {
		t.Fatalf("first drawing = %q, want the table without escapes", drawn)
	}
	for l := range strings.Lines(drawn) {
		if n := len([]rune(strings.TrimSuffix(l, "\n"))); n >= 40 {
			t.Errorf("line %q is %d wide, want it cut below the terminal's 40 columns", l, n)
		}
	}
	buf.Reset()
	if err := v.show(first); err != nil || buf.Len() != 0 {
		t.Fatalf("unchanged pipeline redrawn: %q, %v", buf.String(), err)
	}
	if err := v.show(testPipeline(hodeipb.PipelineState_PIPELINE_STATE_RUNNING, completed, running, pending, pending)); err != nil {
		t.Fatal(err)
	}
	// Header, blank line, table header and 3 steps: 6 lines up, then clear.
	if !strings.HasPrefix(buf.String(), "\x1b[6A\x1b[J") || !strings.Contains(buf.String(), "build    COMPLETED") {
		t.Errorf("redrawing = %q, want it to go 6 lines up and clear first", buf.String())
	}
}

// TestLineViewCountdown: without a terminal, --wait prints a step again
// when its jobs change state or the kind of its wait changes, not each
// time a backoff's countdown moves (trial 11 #12).
func TestLineViewCountdown(t *testing.T) {
	waiting := func(kind hodeipb.PendingKind, msg string) *hodeipb.PipelineStatus {
		st := testPipeline(hodeipb.PipelineState_PIPELINE_STATE_RUNNING, pending, pending, pending, pending)
		st.Jobs[0].Attempt = 2
		st.Jobs[0].Pending = &hodeipb.PendingReason{Kind: kind, Message: msg}
		return st
	}
	var out strings.Builder
	v := &lineView{w: &out, last: map[string]string{}}
	for _, st := range []*hodeipb.PipelineStatus{
		waiting(hodeipb.PendingKind_PENDING_KIND_BACKOFF, "attempt 2 waits out its retry backoff (709ms left)"),
		waiting(hodeipb.PendingKind_PENDING_KIND_BACKOFF, "attempt 2 waits out its retry backoff (408ms left)"),
		waiting(hodeipb.PendingKind_PENDING_KIND_BACKOFF, "attempt 2 waits out its retry backoff (109ms left)"),
		waiting(hodeipb.PendingKind_PENDING_KIND_LABELS, "no ready worker has label os=linux (0 of 1)"),
	} {
		if err := v.show(st); err != nil {
			t.Fatal(err)
		}
	}
	var builds []string
	for l := range strings.SplitSeq(out.String(), "\n") {
		if strings.HasPrefix(l, "build:") {
			builds = append(builds, l)
		}
	}
	want := []string{
		"build: RUNNING (0/1 completed, 1 pending; attempt 2 waits out its retry backoff (709ms left))",
		"build: RUNNING (0/1 completed, 1 pending; no ready worker has label os=linux (0 of 1))",
	}
	if !slices.Equal(builds, want) {
		t.Errorf("build lines:\n%s\nwant:\n%s", strings.Join(builds, "\n"), strings.Join(want, "\n"))
	}
}
