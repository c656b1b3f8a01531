package cli

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// The fake JobService's arrays and pipelines. RunPipeline applies the real
// validation rules, so the CLI sees the InvalidArgument the server would
// send; it answers the first of fakeJobs.progress when there is one, and
// GetPipeline the next ones.

const testPipelineID = "01J0000000000000000000PIPE"

func (f *fakeJobs) CancelArray(ctx context.Context, req *hodeipb.CancelArrayRequest) (*hodeipb.CancelArrayResponse, error) {
	if err := f.call(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.arrayCancels = append(f.arrayCancels, req)
	if req.GetId() != "01J0000000000000000000ARAY" {
		return nil, status.Errorf(codes.NotFound, "array %s not found", req.GetId())
	}
	return &hodeipb.CancelArrayResponse{Count: 1, Cancelled: []string{"01J00000000000000000000011"}}, nil
}

func (f *fakeJobs) RunPipeline(ctx context.Context, req *hodeipb.RunPipelineRequest) (*hodeipb.PipelineStatus, error) {
	if err := f.call(ctx); err != nil {
		return nil, err
	}
	if req.GetSpec() == nil {
		return nil, status.Error(codes.InvalidArgument, "spec: is required")
	}
	spec := req.GetSpec().ToPipelineSpec()
	if spec.Tenant == "" {
		spec.Tenant = "default"
	}
	if err := spec.Validate(job.PipelineLimits{}); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs = append(f.runs, proto.CloneOf(req.GetSpec()))
	if len(f.progress) > 0 {
		return f.nextProgress(), nil
	}
	p := &hodeipb.Pipeline{Id: testPipelineID, Name: req.GetSpec().GetName(), Tenant: req.GetSpec().GetTenant(), CreatedUnixNano: testNow.UnixNano()}
	st := &hodeipb.PipelineStatus{Pipeline: p, State: hodeipb.PipelineState_PIPELINE_STATE_PENDING}
	for i, s := range req.GetSpec().GetSteps() {
		id := fmt.Sprintf("01J000000000000000000000%02d", i)
		p.Steps = append(p.Steps, &hodeipb.Pipeline_Step{Name: s.GetName(), Needs: s.GetNeeds(), ContinueOnFailure: s.GetContinueOnFailure(), Jobs: []string{id}})
		st.Jobs = append(st.Jobs, &hodeipb.Job{Id: id, Spec: &hodeipb.JobSpec{Name: s.GetName()}, State: hodeipb.JobState_JOB_STATE_PENDING, Attempt: 1})
	}
	return st, nil
}

func (f *fakeJobs) pipelineRuns() []*hodeipb.PipelineSpec {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.runs)
}

func (f *fakeJobs) GetPipeline(ctx context.Context, req *hodeipb.GetPipelineRequest) (*hodeipb.PipelineStatus, error) {
	if err := f.call(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.progress) == 0 || req.GetId() != f.progress[0].GetPipeline().GetId() {
		return nil, status.Errorf(codes.NotFound, "pipeline %s not found", req.GetId())
	}
	return f.nextProgress(), nil
}

// nextProgress returns the next of f.progress, keeping the last one.
// Call it with f.mu held.
func (f *fakeJobs) nextProgress() *hodeipb.PipelineStatus {
	st := f.progress[0]
	if len(f.progress) > 1 {
		f.progress = f.progress[1:]
	}
	return st
}

// ListPipelines pages f.pipelines (newest first) as the server does.
func (f *fakeJobs) ListPipelines(ctx context.Context, req *hodeipb.ListPipelinesRequest) (*hodeipb.ListPipelinesResponse, error) {
	if err := f.call(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	from := 0
	if tok := req.GetPageToken(); tok != "" {
		from = slices.IndexFunc(f.pipelines, func(p *hodeipb.PipelineStatus) bool { return p.GetPipeline().GetId() == tok }) + 1
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = 50
	}
	resp := &hodeipb.ListPipelinesResponse{Pipelines: f.pipelines[from:min(from+size, len(f.pipelines))]}
	if from+size < len(f.pipelines) {
		resp.NextPageToken = resp.Pipelines[len(resp.Pipelines)-1].GetPipeline().GetId()
	}
	return resp, nil
}

func (f *fakeJobs) CancelPipeline(ctx context.Context, req *hodeipb.CancelPipelineRequest) (*hodeipb.PipelineStatus, error) {
	if err := f.call(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pipeCancels = append(f.pipeCancels, req)
	for _, st := range f.pipelines {
		if st.GetPipeline().GetId() == req.GetId() {
			c := proto.CloneOf(st)
			c.State = hodeipb.PipelineState_PIPELINE_STATE_CANCELLED
			c.Pipeline.Cancelled = true
			return c, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "pipeline %s not found", req.GetId())
}
