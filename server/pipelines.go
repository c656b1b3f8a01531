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

// ListPipelines answers one page of pipelines, newest first, of the
// caller's tenants (or of req.tenant among them); see cluster.Pipelines
// for its cost. A tenant outside the caller's is PermissionDenied, as for
// listing jobs.
func (js *jobService) ListPipelines(ctx context.Context, req *pb.ListPipelinesRequest) (*pb.ListPipelinesResponse, error) {
	f := cluster.PipelineFilter{After: req.GetPageToken(), Limit: int(req.GetPageSize())}
	switch t := req.GetTenant(); {
	case f.Limit < 0 || f.Limit > cluster.MaxPipelinePage:
		return nil, invalid("page_size", "%d must be between 0 and %d (0: %d)", f.Limit, cluster.MaxPipelinePage, cluster.DefaultPipelinePage)
	case f.After != "" && !job.ValidID(f.After):
		return nil, invalid("page_token", "%q is not a page token from an earlier answer", f.After)
	case t != "" && !job.ValidTenant(t):
		return nil, invalid("tenant", "%q is no tenant name: 1–63 lowercase letters, digits, '-' or '_'", t)
	case t != "" && !sees(ctx, t):
		return nil, scopeFilter(ctx, t)
	case t != "":
		f.Tenants = []string{t}
	default:
		f.Tenants = callerTenants(ctx) // nil (every tenant) when not scoped
		if len(f.Tenants) == 0 {
			f.Tenants = nil
		}
	}
	list, next, err := js.srv.sched.Pipelines(ctx, f)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.ListPipelinesResponse{NextPageToken: next, Pipelines: make([]*pb.PipelineStatus, len(list))}
	for i, st := range list { // without jobs: GetPipeline has them
		resp.Pipelines[i] = js.srv.pipelinePB(st)
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
