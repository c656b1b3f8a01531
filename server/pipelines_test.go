package server

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

func TestSubmitArray(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	other := s.submit(t, &pb.JobSpec{Command: []string{"true"}})
	resp, err := s.jobs.Submit(ctx, &pb.SubmitRequest{
		Spec:  &pb.JobSpec{Name: "render", Command: []string{"render"}, Env: map[string]string{"A": "1"}, SecretEnv: map[string]string{"K": "s3cret-value"}},
		Array: "3-7%2",
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetId() == "" || len(resp.GetIds()) != 5 || slices.Contains(resp.GetIds(), resp.GetId()) {
		t.Fatalf("SubmitArray = id %q, ids %q; want an array id and 5 other ids", resp.GetId(), resp.GetIds())
	}
	for i, id := range resp.GetIds() {
		j, err := s.jobs.Get(ctx, &pb.GetJobRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		sp := j.GetSpec()
		if got, want := sp.GetEnv()["HODEI_ARRAY_INDEX"], strconv.Itoa(3+i); got != want || sp.GetEnv()["A"] != "1" {
			t.Errorf("job %d env = %v, want HODEI_ARRAY_INDEX=%s and A=1", i, sp.GetEnv(), want)
		}
		if sp.GetArray() != resp.GetId() || sp.GetArrayIndex() != int32(3+i) || sp.GetArrayLimit() != 2 {
			t.Errorf("job %d array fields = %q %d %d", i, sp.GetArray(), sp.GetArrayIndex(), sp.GetArrayLimit())
		}
		if sp.GetSecretEnv()["K"] != "***" {
			t.Errorf("job %d secret env = %v, want it redacted", i, sp.GetSecretEnv())
		}
	}

	list, err := s.jobs.List(ctx, &pb.ListJobsRequest{Array: resp.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range list.GetJobs() {
		ids = append(ids, j.GetId())
	}
	if !slices.Equal(ids, resp.GetIds()) || slices.Contains(ids, other) {
		t.Errorf("List(array) = %q, want %q", ids, resp.GetIds())
	}

	for _, tc := range []struct{ name, array, want string }{
		{"Syntax", "a-b", "array: "},
		{"Backwards", "9-3", "array: "},
		{"ZeroLimit", "0-9%0", "array: "},
		{"TooMany", "0-1000001", "array: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.jobs.Submit(ctx, &pb.SubmitRequest{Spec: &pb.JobSpec{Command: []string{"true"}}, Array: tc.array})
			wantStatus(t, err, codes.InvalidArgument, tc.want)
		})
	}
	t.Run("BadSpec", func(t *testing.T) {
		_, err := s.jobs.Submit(ctx, &pb.SubmitRequest{Spec: &pb.JobSpec{}, Array: "0-3"})
		wantStatus(t, err, codes.InvalidArgument, "command")
	})
	t.Run("ShortSecret", func(t *testing.T) {
		_, err := s.jobs.Submit(ctx, &pb.SubmitRequest{Spec: &pb.JobSpec{Command: []string{"true"}, SecretEnv: map[string]string{"K": "v"}}, Array: "0-3"})
		wantStatus(t, err, codes.InvalidArgument, "secret_env.K: the value is too short (1 of at least 6 bytes)")
	})
	all, _ := s.jobs.List(ctx, &pb.ListJobsRequest{})
	if len(all.GetJobs()) != 6 {
		t.Errorf("%d jobs stored, want 6: refused arrays must store nothing", len(all.GetJobs()))
	}
}

func TestCancelArray(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	resp, err := s.jobs.Submit(ctx, &pb.SubmitRequest{Spec: &pb.JobSpec{Command: []string{"true"}}, Array: "0-3"})
	if err != nil {
		t.Fatal(err)
	}
	// One job ended before: it is left alone.
	if _, err := s.jobs.Cancel(ctx, &pb.CancelJobRequest{Id: resp.GetIds()[0], Reason: "early"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.jobs.CancelArray(ctx, &pb.CancelArrayRequest{Id: resp.GetId(), Reason: "enough"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.GetCancelled(), resp.GetIds()[1:]) {
		t.Errorf("cancelled %q, want %q", got.GetCancelled(), resp.GetIds()[1:])
	}
	for i, id := range resp.GetIds() {
		j, _ := s.jobs.Get(ctx, &pb.GetJobRequest{Id: id})
		want := "enough"
		if i == 0 {
			want = "early"
		}
		if j.GetState() != pb.JobState_JOB_STATE_CANCELLED || j.GetReason() != want {
			t.Errorf("job %d: %s %q, want CANCELLED %q", i, j.GetState(), j.GetReason(), want)
		}
	}

	_, err = s.jobs.CancelArray(ctx, &pb.CancelArrayRequest{Id: "01ARZ3NDEKTSV4RRFFQ69G5FAV"})
	wantStatus(t, err, codes.NotFound)
	_, err = s.jobs.CancelArray(ctx, &pb.CancelArrayRequest{Id: "nope"})
	wantStatus(t, err, codes.InvalidArgument, "id")
}

// diamond is a pipeline a → (b, c) → d where c has a 2×1 matrix.
func diamond() *pb.PipelineSpec {
	cmd := func(s string) *pb.JobSpec { return &pb.JobSpec{Command: []string{s}} }
	return &pb.PipelineSpec{
		Name: "release",
		Defaults: &pb.JobSpec{Env: map[string]string{"GOFLAGS": "-mod=mod"}, Labels: map[string]string{"team": "infra"},
			Priority: proto.Int32(600)},
		Steps: []*pb.PipelineStepSpec{
			{Name: "a", Spec: cmd("build")},
			{Name: "b", Spec: &pb.JobSpec{Command: []string{"lint"}, Priority: proto.Int32(0), SecretEnv: map[string]string{"TOKEN": "s3cret-value"}}, Needs: []string{"a"}},
			{Name: "c", Spec: cmd("test"), Needs: []string{"a"}, Matrix: []*pb.MatrixAxis{{Key: "os", Values: []string{"linux", "mac"}}, {Key: "go", Values: []string{"1.26"}}}},
			{Name: "d", Spec: cmd("publish"), Needs: []string{"b", "c"}, ContinueOnFailure: true},
		},
	}
}

// stepJobs maps the pipeline's step names to their job ids.
func stepJobs(p *pb.Pipeline) map[string][]string {
	m := make(map[string][]string)
	for _, st := range p.GetSteps() {
		m[st.GetName()] = st.GetJobs()
	}
	return m
}

func TestRunPipelineRoundTrip(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	run, err := s.jobs.RunPipeline(ctx, &pb.RunPipelineRequest{Spec: diamond()})
	if err != nil {
		t.Fatal(err)
	}
	p := run.GetPipeline()
	if p.GetId() == "" || p.GetName() != "release" || p.GetTenant() != "default" || run.GetState() != pb.PipelineState_PIPELINE_STATE_PENDING {
		t.Fatalf("RunPipeline = %v", run)
	}
	steps := stepJobs(p)
	if len(steps["a"]) != 1 || len(steps["b"]) != 1 || len(steps["c"]) != 2 || len(steps["d"]) != 1 {
		t.Fatalf("step jobs = %v, want 1, 1, 2, 1", steps)
	}
	if len(run.GetJobs()) != 5 {
		t.Fatalf("RunPipeline answered %d jobs, want 5", len(run.GetJobs()))
	}

	got, err := s.jobs.GetPipeline(ctx, &pb.GetPipelineRequest{Id: p.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.GetPipeline(), p) || got.GetState() != pb.PipelineState_PIPELINE_STATE_PENDING {
		t.Errorf("GetPipeline = %v, want %v PENDING", got, p)
	}
	jobs := make(map[string]*pb.Job)
	for _, j := range got.GetJobs() {
		jobs[j.GetId()] = j
	}
	wantDeps := map[string][]string{
		"a": nil,
		"b": steps["a"],
		"c": steps["a"],
		"d": slices.Concat(steps["b"], steps["c"]),
	}
	for step, deps := range wantDeps {
		for _, id := range steps[step] {
			j := jobs[id]
			if j == nil {
				t.Fatalf("GetPipeline lacks job %s of step %s", id, step)
			}
			sp := j.GetSpec()
			if !slices.Equal(sp.GetDependsOn(), deps) || sp.GetPipeline() != p.GetId() || sp.GetStep() != step {
				t.Errorf("step %s job: depends_on %q pipeline %q step %q; want %q %q %q",
					step, sp.GetDependsOn(), sp.GetPipeline(), sp.GetStep(), deps, p.GetId(), step)
			}
			if sp.GetEnv()["GOFLAGS"] != "-mod=mod" || sp.GetLabels()["team"] != "infra" {
				t.Errorf("step %s job lacks the defaults: env %v labels %v", step, sp.GetEnv(), sp.GetLabels())
			}
			// Pending, so the answer carries the effective priority.
			if j.GetState() != pb.JobState_JOB_STATE_PENDING || j.GetEffectivePriority() < float64(sp.GetPriority()) {
				t.Errorf("step %s job: %s, effective priority %v", step, j.GetState(), j.GetEffectivePriority())
			}
		}
	}
	if b := jobs[steps["b"][0]].GetSpec(); b.GetPriority() != 0 || b.GetSecretEnv()["TOKEN"] != "***" {
		t.Errorf("step b: priority %d (want its own 0), secret env %v (want redacted)", b.GetPriority(), b.GetSecretEnv())
	}
	if a := jobs[steps["a"][0]].GetSpec(); a.GetPriority() != 600 {
		t.Errorf("step a: priority %d, want the defaults' 600", a.GetPriority())
	}
	var matrix []string
	for _, id := range steps["c"] {
		e := jobs[id].GetSpec().GetEnv()
		matrix = append(matrix, e["MATRIX_OS"]+"/"+e["MATRIX_GO"])
	}
	if !slices.Equal(matrix, []string{"linux/1.26", "mac/1.26"}) {
		t.Errorf("matrix envs = %q", matrix)
	}

	list, err := s.jobs.ListPipelines(ctx, &pb.ListPipelinesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetPipelines()) != 1 || list.GetPipelines()[0].GetPipeline().GetId() != p.GetId() || len(list.GetPipelines()[0].GetJobs()) != 0 {
		t.Errorf("ListPipelines = %v, want the pipeline without its jobs", list)
	}
	byPipeline, err := s.jobs.List(ctx, &pb.ListJobsRequest{Pipeline: p.GetId()})
	if err != nil || len(byPipeline.GetJobs()) != 5 {
		t.Errorf("List(pipeline) = %d jobs, %v; want 5", len(byPipeline.GetJobs()), err)
	}

	_, err = s.jobs.GetPipeline(ctx, &pb.GetPipelineRequest{Id: "01ARZ3NDEKTSV4RRFFQ69G5FAV"})
	wantStatus(t, err, codes.NotFound)
	_, err = s.jobs.GetPipeline(ctx, &pb.GetPipelineRequest{Id: "x!"})
	wantStatus(t, err, codes.InvalidArgument, "id")
	_, err = s.jobs.GetPipeline(ctx, &pb.GetPipelineRequest{Id: "x"})
	wantStatus(t, err, codes.NotFound, `no pipeline id starts with "x"`)
}

// badPipelines holds one pipeline per validation rule and what the error
// must say, starting with the field that names the step.
var badPipelines = []struct {
	name string
	edit func(*pb.PipelineSpec)
	want string
}{
	{"UnknownNeed", func(p *pb.PipelineSpec) { p.Steps[1].Needs = []string{"nope"} }, "steps.b.needs: "},
	{"NeedsItself", func(p *pb.PipelineSpec) { p.Steps[1].Needs = []string{"b"} }, "steps.b.needs: "},
	{"Cycle", func(p *pb.PipelineSpec) { p.Steps[0].Needs = []string{"d"} }, "steps: cycle"},
	{"Duplicate", func(p *pb.PipelineSpec) { p.Steps[2].Name = "b" }, "steps.b.name: "},
	{"Empty", func(p *pb.PipelineSpec) { p.Steps = nil }, "steps: "},
	{"BadStepName", func(p *pb.PipelineSpec) { p.Steps[0].Name = "a b" }, "steps[0].name: "},
	{"MatrixTooBig", func(p *pb.PipelineSpec) {
		var vals []string
		for i := range 300 {
			vals = append(vals, fmt.Sprint(i))
		}
		p.Steps[2].Matrix = []*pb.MatrixAxis{{Key: "n", Values: vals}}
	}, "steps.c.matrix: "},
	{"MatrixNoValues", func(p *pb.PipelineSpec) { p.Steps[2].Matrix = []*pb.MatrixAxis{{Key: "os"}} }, "steps.c.matrix.os: "},
	{"JobSpec", func(p *pb.PipelineSpec) { p.Steps[3].Spec.Retries = 101 }, "steps.d.retries: "},
	{"NoCommand", func(p *pb.PipelineSpec) { p.Steps[3].Spec = nil }, "steps.d.command: "},
	{"DefaultsPriority", func(p *pb.PipelineSpec) { p.Defaults.Priority = proto.Int32(2000) }, "defaults.priority: "},
	{"Tenant", func(p *pb.PipelineSpec) { p.Tenant = "Team A" }, "tenant: "},
}

func TestInvalidPipelinesAreRefusedAndNothingIsStored(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	for _, tt := range badPipelines {
		t.Run(tt.name, func(t *testing.T) {
			spec := diamond()
			tt.edit(spec)
			_, err := s.jobs.RunPipeline(ctx, &pb.RunPipelineRequest{Spec: spec})
			wantStatus(t, err, codes.InvalidArgument, tt.want)
		})
	}
	t.Run("NoSpec", func(t *testing.T) {
		_, err := s.jobs.RunPipeline(ctx, &pb.RunPipelineRequest{})
		wantStatus(t, err, codes.InvalidArgument, "spec: is required")
	})
	t.Run("MaxMatrixConfigured", func(t *testing.T) {
		s := setup(t, func(c *Config) { c.MaxMatrix = 1 })
		_, err := s.jobs.RunPipeline(ctx, &pb.RunPipelineRequest{Spec: diamond()})
		wantStatus(t, err, codes.InvalidArgument, "steps.c.matrix: ", "more than 1 jobs")
	})
	list, err := s.jobs.ListPipelines(ctx, &pb.ListPipelinesRequest{})
	if err != nil || len(list.GetPipelines()) != 0 {
		t.Errorf("after refused pipelines ListPipelines = %d, %v; want none", len(list.GetPipelines()), err)
	}
	jobs, err := s.jobs.List(ctx, &pb.ListJobsRequest{})
	if err != nil || len(jobs.GetJobs()) != 0 {
		t.Errorf("after refused pipelines List = %d jobs, %v; want none", len(jobs.GetJobs()), err)
	}
}

func TestCancelPipeline(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	run, err := s.jobs.RunPipeline(ctx, &pb.RunPipelineRequest{Spec: diamond()})
	if err != nil {
		t.Fatal(err)
	}
	id := run.GetPipeline().GetId()
	st, err := s.jobs.CancelPipeline(ctx, &pb.CancelPipelineRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetState() != pb.PipelineState_PIPELINE_STATE_CANCELLED || !st.GetPipeline().GetCancelled() || len(st.GetJobs()) != 5 {
		t.Fatalf("CancelPipeline = %s cancelled=%v with %d jobs, want CANCELLED with 5", st.GetState(), st.GetPipeline().GetCancelled(), len(st.GetJobs()))
	}
	for _, j := range st.GetJobs() {
		if j.GetState() != pb.JobState_JOB_STATE_CANCELLED || j.GetReason() != "pipeline cancelled" {
			t.Errorf("job of step %s: %s %q, want CANCELLED \"pipeline cancelled\"", j.GetSpec().GetStep(), j.GetState(), j.GetReason())
		}
	}
	// A second cancel, of a pipeline that has ended, is no error (as for a
	// job): the answer says where it is.
	again, err := s.jobs.CancelPipeline(ctx, &pb.CancelPipelineRequest{Id: id})
	if err != nil || again.GetState() != pb.PipelineState_PIPELINE_STATE_CANCELLED {
		t.Fatalf("second CancelPipeline = %v, %v; want CANCELLED and no error", again.GetState(), err)
	}
	_, err = s.jobs.CancelPipeline(ctx, &pb.CancelPipelineRequest{Id: "01ARZ3NDEKTSV4RRFFQ69G5FAV"})
	wantStatus(t, err, codes.NotFound)
	list, _ := s.jobs.ListPipelines(ctx, &pb.ListPipelinesRequest{})
	if len(list.GetPipelines()) != 1 || list.GetPipelines()[0].GetState() != pb.PipelineState_PIPELINE_STATE_CANCELLED {
		t.Errorf("ListPipelines after cancel = %v", list)
	}
}

// TestFailedStepCancelsWhatNeedsIt runs a → b → c on a scripted agent: a
// fails, so b and c are cancelled naming a, and the pipeline fails.
func TestFailedStepCancelsWhatNeedsIt(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	a := connectAgent(t, s, hello("w1", 1))
	run, err := s.jobs.RunPipeline(ctx, &pb.RunPipelineRequest{Spec: &pb.PipelineSpec{Steps: []*pb.PipelineStepSpec{
		{Name: "a", Spec: &pb.JobSpec{Command: []string{"false"}}},
		{Name: "b", Spec: &pb.JobSpec{Command: []string{"true"}}, Needs: []string{"a"}},
		{Name: "c", Spec: &pb.JobSpec{Command: []string{"true"}}, Needs: []string{"b"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	steps := stepJobs(run.GetPipeline())
	first := steps["a"][0]
	if got := a.recv().GetAssign().GetJob().GetId(); got != first {
		t.Fatalf("assigned %s, want step a's job %s", got, first)
	}
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Started{Started: &pb.JobStarted{JobId: first, Attempt: 1}}})
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Finished{Finished: &pb.JobFinished{JobId: first, Attempt: 1, Outcome: pb.Outcome_OUTCOME_EXITED, ExitCode: 1}}})
	a.recvAck()
	for _, step := range []string{"b", "c"} {
		j := s.waitJob(t, steps[step][0], func(j *pb.Job) bool { return j.GetState() == pb.JobState_JOB_STATE_CANCELLED })
		if !strings.Contains(j.GetReason(), "dependency a failed") {
			t.Errorf("step %s reason %q, want it to name step a", step, j.GetReason())
		}
	}
	st, err := s.jobs.GetPipeline(ctx, &pb.GetPipelineRequest{Id: run.GetPipeline().GetId()})
	if err != nil || st.GetState() != pb.PipelineState_PIPELINE_STATE_FAILED {
		t.Fatalf("pipeline %s, %v; want FAILED", st.GetState(), err)
	}
}

func TestPipelinesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	inDir := func(c *Config) { c.DataDir = dir }
	var before *pb.PipelineStatus
	t.Run("Before", func(t *testing.T) {
		s := setup(t, inDir)
		var err error
		if before, err = s.jobs.RunPipeline(context.Background(), &pb.RunPipelineRequest{Spec: diamond()}); err != nil {
			t.Fatal(err)
		}
	})
	if before == nil {
		t.FailNow()
	}
	s := setup(t, inDir)
	got, err := s.jobs.GetPipeline(context.Background(), &pb.GetPipelineRequest{Id: before.GetPipeline().GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got.GetPipeline(), before.GetPipeline()) || got.GetState() != pb.PipelineState_PIPELINE_STATE_PENDING || len(got.GetJobs()) != 5 {
		t.Errorf("after a restart GetPipeline = %v, want %v PENDING with 5 jobs", got, before.GetPipeline())
	}
	for _, j := range got.GetJobs() {
		if j.GetSpec().GetStep() == "d" && len(j.GetSpec().GetDependsOn()) != 3 {
			t.Errorf("after a restart step d waits for %q, want 3 jobs", j.GetSpec().GetDependsOn())
		}
	}
}

// A task of an array is also found as ARRAY-ID[INDEX], and an array's own
// id says what it is.
func TestTaskByIndex(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	resp, err := s.jobs.Submit(ctx, &pb.SubmitRequest{Spec: &pb.JobSpec{Command: []string{"true"}}, Array: "10-999999"})
	if err != nil {
		t.Fatal(err)
	}
	j, err := s.jobs.Get(ctx, &pb.GetJobRequest{Id: resp.GetId() + "[500000]"})
	if err != nil || j.GetSpec().GetArrayIndex() != 500000 || j.GetId() != job.TaskID(resp.GetId(), 500000-10) {
		t.Fatalf("get [500000]: %v %v", j, err)
	}
	for _, ref := range []string{resp.GetId() + "[9]", resp.GetId() + "[1000000]", "01ARZ3NDEKTSV4RRFFQ69G5FAV[1]"} {
		_, err := s.jobs.Get(ctx, &pb.GetJobRequest{Id: ref})
		wantStatus(t, err, codes.NotFound, "")
	}
	_, err = s.jobs.Get(ctx, &pb.GetJobRequest{Id: resp.GetId()})
	wantStatus(t, err, codes.NotFound, "is an array, not a job")
	if _, err := s.jobs.Cancel(ctx, &pb.CancelJobRequest{Id: resp.GetId() + "[11]"}); err != nil {
		t.Fatal(err)
	}
	if j, err := s.jobs.Get(ctx, &pb.GetJobRequest{Id: job.TaskID(resp.GetId(), 1)}); err != nil || j.GetState() != pb.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("task 11 after its cancel: %v %v", j.GetState(), err)
	}
}

func TestListPipelinesPages(t *testing.T) {
	s := setup(t, func(c *Config) { c.AutoTenants = true })
	ctx := context.Background()
	byTenant := map[string][]string{}
	var all []string // oldest first
	run := func(tenant string) {
		t.Helper()
		p, err := s.jobs.RunPipeline(ctx, &pb.RunPipelineRequest{Spec: &pb.PipelineSpec{Name: "p", Tenant: tenant,
			Steps: []*pb.PipelineStepSpec{{Name: "s", Spec: &pb.JobSpec{Command: []string{"true"}}}}}})
		if err != nil {
			t.Fatal(err)
		}
		byTenant[tenant] = append(byTenant[tenant], p.GetPipeline().GetId())
		all = append(all, p.GetPipeline().GetId())
	}
	for i := range 12 {
		run([]string{"a", "b", "c"}[i%3])
	}
	js := &jobService{srv: s.srv}
	// pages lists every page of req as ctx's caller, checking that each
	// page but the last is full and ends at its next_page_token.
	pages := func(ctx context.Context, req *pb.ListPipelinesRequest) []string {
		t.Helper()
		var ids []string
		for {
			resp, err := js.ListPipelines(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range resp.GetPipelines() {
				if p.GetState() == pb.PipelineState_PIPELINE_STATE_UNSPECIFIED || len(p.GetJobs()) != 0 {
					t.Errorf("pipeline %s listed with state %v and %d jobs", p.GetPipeline().GetId(), p.GetState(), len(p.GetJobs()))
				}
				ids = append(ids, p.GetPipeline().GetId())
			}
			next := resp.GetNextPageToken()
			if next == "" {
				return ids
			}
			if n := len(resp.GetPipelines()); n != int(req.GetPageSize()) || resp.GetPipelines()[n-1].GetPipeline().GetId() != next {
				t.Fatalf("page of %d with next %q", n, next)
			}
			req = proto.CloneOf(req)
			req.PageToken = next
		}
	}
	newestFirst := func(ids ...[]string) []string {
		out := slices.Concat(ids...)
		slices.Sort(out)
		slices.Reverse(out)
		return out
	}

	t.Run("Default", func(t *testing.T) {
		resp, err := js.ListPipelines(ctx, &pb.ListPipelinesRequest{})
		if err != nil || len(resp.GetPipelines()) != 12 || resp.GetNextPageToken() != "" {
			t.Fatalf("%d pipelines, next %q, %v; want all 12 on one page", len(resp.GetPipelines()), resp.GetNextPageToken(), err)
		}
	})
	t.Run("Pages", func(t *testing.T) {
		if got := pages(ctx, &pb.ListPipelinesRequest{PageSize: 5}); !slices.Equal(got, newestFirst(all)) {
			t.Errorf("got %v\nwant %v", got, newestFirst(all))
		}
	})
	t.Run("Tenant", func(t *testing.T) {
		if got := pages(ctx, &pb.ListPipelinesRequest{PageSize: 3, Tenant: "b"}); !slices.Equal(got, newestFirst(byTenant["b"])) {
			t.Errorf("got %v\nwant %v", got, newestFirst(byTenant["b"]))
		}
	})
	t.Run("ScopedToken", func(t *testing.T) {
		// Full pages of the caller's tenants only, whatever the others hold.
		scoped := auth.NewContext(ctx, &auth.Identity{Name: "viewer", Role: auth.Viewer, Tenants: []string{"c", "a"}})
		if got := pages(scoped, &pb.ListPipelinesRequest{PageSize: 3}); !slices.Equal(got, newestFirst(byTenant["a"], byTenant["c"])) {
			t.Errorf("got %v\nwant %v", got, newestFirst(byTenant["a"], byTenant["c"]))
		}
		if _, err := js.ListPipelines(scoped, &pb.ListPipelinesRequest{PageSize: 3, Tenant: "b"}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("a tenant outside the token: %v, want PermissionDenied", err)
		}
	})
	t.Run("BadInput", func(t *testing.T) {
		for _, tc := range []struct {
			field string
			req   *pb.ListPipelinesRequest
		}{
			{"page_size", &pb.ListPipelinesRequest{PageSize: -1}},
			{"page_size", &pb.ListPipelinesRequest{PageSize: 1001}},
			{"page_token", &pb.ListPipelinesRequest{PageToken: "not-a-token"}},
			{"tenant", &pb.ListPipelinesRequest{Tenant: "Bad Name"}},
		} {
			_, err := s.jobs.ListPipelines(ctx, tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.field) {
				t.Errorf("%v: %v; want InvalidArgument naming %s", tc.req, err, tc.field)
			}
		}
	})
}

func TestListWorkersPages(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	var ids []string
	for _, id := range []string{"w-c", "w-a", "w-d", "w-b", "w-e"} {
		connectAgent(t, s, hello(id, 1))
		ids = append(ids, id)
	}
	slices.Sort(ids)
	all, err := s.admin.ListWorkers(ctx, &pb.ListWorkersRequest{})
	if err != nil || len(all.GetWorkers()) != len(ids) || all.GetNextPageToken() != "" {
		t.Fatalf("every worker: %d, next %q, %v", len(all.GetWorkers()), all.GetNextPageToken(), err)
	}
	var got []string
	req := &pb.ListWorkersRequest{PageSize: 2}
	for {
		resp, err := s.admin.ListWorkers(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range resp.GetWorkers() {
			got = append(got, w.GetId())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if !slices.Equal(got, ids) {
		t.Errorf("pages %v, want %v", got, ids)
	}
	for _, req := range []*pb.ListWorkersRequest{{PageSize: -1}, {PageSize: 1001}, {PageToken: "w-a"}, {Id: "w-a", PageSize: 1, PageToken: "w-a"}} {
		if _, err := s.admin.ListWorkers(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%v: %v; want InvalidArgument", req, err)
		}
	}
}
