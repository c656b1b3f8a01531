package server

import (
	"context"
	"errors"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// submitArray is Submit with req.array set: one array record for all its
// tasks, stored in one commit. The answer's id is the array's, tasks its
// number of tasks, ids their ids in index order when there are at most
// cluster.MaxListedTasks.
func (js *jobService) submitArray(ctx context.Context, req *pb.SubmitRequest) (*pb.SubmitResponse, error) {
	arr, err := job.ParseArray(req.GetArray())
	if err != nil {
		return nil, toStatus(err)
	}
	spec := req.GetSpec().ToSpec()
	spec.Owner = owner(ctx)
	a, err := js.srv.sched.SubmitArray(ctx, spec, arr)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.SubmitResponse{Id: a.ID, Tasks: int64(a.Len())}
	if a.Len() <= cluster.MaxListedTasks {
		resp.Ids = make([]string, a.Len())
		for p := range resp.Ids {
			resp.Ids[p] = job.TaskID(a.ID, p)
		}
	}
	return resp, nil
}

func (js *jobService) CancelArray(ctx context.Context, req *pb.CancelArrayRequest) (*pb.CancelArrayResponse, error) {
	id, err := js.srv.resolve(ctx, job.KindArray, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	ids, n, err := js.srv.sched.CancelArrayOf(ctx, id, req.GetReason(), func(tenant string) bool { return sees(ctx, tenant) })
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CancelArrayResponse{Cancelled: ids, Count: int64(n)}, nil
}

func (js *jobService) RunPipeline(ctx context.Context, req *pb.RunPipelineRequest) (*pb.PipelineStatus, error) {
	if req.GetSpec() == nil {
		return nil, invalid("spec", "is required")
	}
	tenant, err := scopeTenant(ctx, req.GetSpec().GetTenant())
	if err != nil {
		return nil, err
	}
	req.Spec.Tenant = tenant
	ps := req.GetSpec().ToPipelineSpec()
	ps.Defaults.Owner = owner(ctx)
	p, jobs, err := js.srv.sched.RunPipeline(ctx, ps)
	if err != nil {
		return nil, toStatus(err)
	}
	// Just stored: nothing of it has started.
	st := cluster.PipelineStatus{Pipeline: p, State: job.PipelinePending, Jobs: jobs}
	return js.srv.pipelinePB(st), nil
}

func (js *jobService) GetPipeline(ctx context.Context, req *pb.GetPipelineRequest) (*pb.PipelineStatus, error) {
	id, err := js.srv.resolve(ctx, job.KindPipeline, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	st, err := js.srv.sched.Pipeline(ctx, id)
	if err != nil {
		return nil, toStatus(err)
	}
	if !sees(ctx, st.Pipeline.Tenant) {
		return nil, notFound("pipeline", id)
	}
	return js.srv.pipelinePB(st), nil
}

func (js *jobService) ListPipelines(ctx context.Context, req *pb.ListPipelinesRequest) (*pb.ListPipelinesResponse, error) {
	list, err := js.srv.sched.Pipelines(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.ListPipelinesResponse{Pipelines: make([]*pb.PipelineStatus, 0, len(list))}
	for _, st := range list { // without jobs: GetPipeline has them
		if sees(ctx, st.Pipeline.Tenant) {
			resp.Pipelines = append(resp.Pipelines, js.srv.pipelinePB(st))
		}
	}
	return resp, nil
}

func (js *jobService) CancelPipeline(ctx context.Context, req *pb.CancelPipelineRequest) (*pb.PipelineStatus, error) {
	id, err := js.srv.resolve(ctx, job.KindPipeline, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	if cur, err := js.srv.sched.Pipeline(ctx, id); err == nil && !sees(ctx, cur.Pipeline.Tenant) {
		return nil, notFound("pipeline", id)
	}
	st, err := js.srv.sched.CancelPipeline(ctx, id, req.GetReason())
	if errors.Is(err, job.ErrConflict) && st.State.Terminal() {
		// Already ended: as for a job, a cancel then is no mistake; the
		// answer says where it is.
		return js.srv.pipelinePB(st), nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return js.srv.pipelinePB(st), nil
}

// pipelinePB is a pipeline as API answers show it, its jobs redacted like
// every job answer, each Pending one with why it waits (see jobWhyPB).
func (s *Server) pipelinePB(st cluster.PipelineStatus) *pb.PipelineStatus {
	out := &pb.PipelineStatus{Pipeline: pb.FromPipeline(st.Pipeline), State: pb.PipelineState(st.State)}
	if len(st.Jobs) > 0 {
		out.Jobs = make([]*pb.Job, len(st.Jobs))
		for i, j := range st.Jobs {
			out.Jobs[i] = s.jobWhyPB(j)
		}
	}
	return out
}
