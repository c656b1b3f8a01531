package client_test

import (
	"context"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

const pipelineID = "01J0000000000000000000000P"

func (s *server) submitArray(req *hodeipb.SubmitRequest) (*hodeipb.SubmitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.arrays = append(s.arrays, req.GetArray())
	if req.GetArray() == "9-0" {
		return nil, status.Error(codes.InvalidArgument, "array: range 9-0 ends before it starts")
	}
	return &hodeipb.SubmitResponse{Id: "01J0000000000000000000000R", Tasks: 2, Ids: []string{"01J0000000000000000000000S", "01J0000000000000000000000T"}}, nil
}

func (s *server) CancelArray(_ context.Context, req *hodeipb.CancelArrayRequest) (*hodeipb.CancelArrayResponse, error) {
	if req.GetId() != "01J0000000000000000000000R" {
		return nil, status.Errorf(codes.NotFound, "array %s not found", req.GetId())
	}
	return &hodeipb.CancelArrayResponse{Count: 1, Cancelled: []string{"01J0000000000000000000000T"}}, nil
}

func (s *server) RunPipeline(_ context.Context, req *hodeipb.RunPipelineRequest) (*hodeipb.PipelineStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(req.GetSpec().GetSteps()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "steps: a pipeline needs at least one step")
	}
	s.runs = append(s.runs, req.GetSpec())
	return s.pipeline(hodeipb.PipelineState_PIPELINE_STATE_PENDING), nil
}

func (s *server) pipeline(st hodeipb.PipelineState) *hodeipb.PipelineStatus {
	return &hodeipb.PipelineStatus{
		Pipeline: &hodeipb.Pipeline{Id: pipelineID, Name: "release", Steps: []*hodeipb.Pipeline_Step{{Name: "build", Jobs: []string{"01J0000000000000000000000A"}}}},
		State:    st,
		Jobs:     []*hodeipb.Job{{Id: "01J0000000000000000000000A"}},
	}
}

func (s *server) GetPipeline(_ context.Context, req *hodeipb.GetPipelineRequest) (*hodeipb.PipelineStatus, error) {
	if req.GetId() != pipelineID {
		return nil, status.Errorf(codes.NotFound, "pipeline %s not found", req.GetId())
	}
	return s.pipeline(hodeipb.PipelineState_PIPELINE_STATE_RUNNING), nil
}

func (s *server) ListPipelines(context.Context, *hodeipb.ListPipelinesRequest) (*hodeipb.ListPipelinesResponse, error) {
	p := s.pipeline(hodeipb.PipelineState_PIPELINE_STATE_RUNNING)
	p.Jobs = nil
	return &hodeipb.ListPipelinesResponse{Pipelines: []*hodeipb.PipelineStatus{p}}, nil
}

func (s *server) CancelPipeline(_ context.Context, req *hodeipb.CancelPipelineRequest) (*hodeipb.PipelineStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cancels = append(s.cancels, req)
	if len(s.cancels) > 1 {
		return nil, status.Errorf(codes.FailedPrecondition, "pipeline %s: already CANCELLED", req.GetId())
	}
	return s.pipeline(hodeipb.PipelineState_PIPELINE_STATE_CANCELLED), nil
}

func TestArrays(t *testing.T) {
	srv := &server{}
	c := setup(t, srv)
	ctx := context.Background()
	id, tasks, ids, err := c.SubmitArray(ctx, &hodeipb.JobSpec{Command: []string{"true"}}, "0-1%1")
	if err != nil || id != "01J0000000000000000000000R" || tasks != 2 || len(ids) != 2 {
		t.Fatalf("SubmitArray = %q, %d, %q, %v", id, tasks, ids, err)
	}
	if _, _, _, err := c.SubmitArray(ctx, &hodeipb.JobSpec{Command: []string{"true"}}, "9-0"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("SubmitArray(9-0) error = %v, want InvalidArgument", err)
	}
	srv.mu.Lock()
	arrays := slices.Clone(srv.arrays)
	srv.mu.Unlock()
	if !slices.Equal(arrays, []string{"0-1%1", "9-0"}) {
		t.Errorf("arrays sent = %q", arrays)
	}
	// A plain Submit sends no array.
	if _, err := c.Submit(ctx, &hodeipb.JobSpec{Command: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	n := len(srv.arrays)
	srv.mu.Unlock()
	if n != 2 {
		t.Errorf("Submit sent an array")
	}

	cn, cancelled, err := c.CancelArray(ctx, id, "")
	if err != nil || cn != 1 || !slices.Equal(cancelled, []string{"01J0000000000000000000000T"}) {
		t.Errorf("CancelArray = %d, %q, %v", cn, cancelled, err)
	}
	if _, _, err := c.CancelArray(ctx, "01J0000000000000000000000X", ""); status.Code(err) != codes.NotFound {
		t.Errorf("CancelArray(unknown) error = %v, want NotFound", err)
	}
}

func TestPipelines(t *testing.T) {
	srv := &server{}
	c := setup(t, srv)
	ctx := context.Background()
	spec := &hodeipb.PipelineSpec{Name: "release", Steps: []*hodeipb.PipelineStepSpec{{Name: "build", Spec: &hodeipb.JobSpec{Command: []string{"make"}}}}}
	st, err := c.RunPipeline(ctx, spec)
	if err != nil || st.GetPipeline().GetId() != pipelineID || st.GetState() != hodeipb.PipelineState_PIPELINE_STATE_PENDING {
		t.Fatalf("RunPipeline = %v, %v", st, err)
	}
	srv.mu.Lock()
	sent := srv.runs
	srv.mu.Unlock()
	if len(sent) != 1 || !proto.Equal(sent[0], spec) {
		t.Errorf("specs sent = %v, want [%v]", sent, spec)
	}
	if _, err := c.RunPipeline(ctx, &hodeipb.PipelineSpec{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("RunPipeline(empty) error = %v, want InvalidArgument", err)
	}
	if st, err := c.GetPipeline(ctx, pipelineID); err != nil || len(st.GetJobs()) != 1 {
		t.Errorf("GetPipeline = %v, %v", st, err)
	}
	if _, err := c.GetPipeline(ctx, "01J0000000000000000000000X"); status.Code(err) != codes.NotFound {
		t.Errorf("GetPipeline(unknown) error = %v, want NotFound", err)
	}
	list, err := c.ListPipelines(ctx)
	if err != nil || len(list) != 1 || list[0].GetPipeline().GetName() != "release" {
		t.Errorf("ListPipelines = %v, %v", list, err)
	}
	if st, err := c.CancelPipeline(ctx, pipelineID, "stop"); err != nil || st.GetState() != hodeipb.PipelineState_PIPELINE_STATE_CANCELLED {
		t.Errorf("CancelPipeline = %v, %v", st, err)
	}
	if _, err := c.CancelPipeline(ctx, pipelineID, ""); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second CancelPipeline error = %v, want FailedPrecondition", err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.cancels) != 2 || srv.cancels[0].GetReason() != "stop" {
		t.Errorf("cancels sent = %v", srv.cancels)
	}
}
