package client

import (
	"context"
	"iter"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// SubmitArray stores an array with one task per index of array ("0-99",
// "0-99%10": at most 10 running at once, "5": one index) as one record, in
// one commit, and returns the array id, the number of tasks and, for an
// array of at most 10,000 tasks, their job ids in index order. Each task
// gets HODEI_ARRAY_INDEX in its env. A malformed array comes back as a
// codes.InvalidArgument status naming "array"; a spec the server rejects,
// as for Submit.
func (c *Client) SubmitArray(ctx context.Context, spec *hodeipb.JobSpec, array string, opts ...SubmitOption) (string, int64, []string, error) {
	resp, err := c.jobs.Submit(ctx, &hodeipb.SubmitRequest{Spec: spec, Array: array, RequireFit: submitOpts(opts).requireFit})
	if err != nil {
		return "", 0, nil, err
	}
	return resp.GetId(), resp.GetTasks(), resp.GetIds(), nil
}

// CancelArray cancels every task of an array that has not ended, in one
// commit, and returns how many it cancelled or is stopping, with their ids
// when there are at most 10,000; codes.NotFound if there is no such
// array. An empty reason lets the server use its default.
func (c *Client) CancelArray(ctx context.Context, id, reason string) (int64, []string, error) {
	resp, err := c.jobs.CancelArray(ctx, &hodeipb.CancelArrayRequest{Id: id, Reason: reason})
	if err != nil {
		return 0, nil, err
	}
	return resp.GetCount(), resp.GetCancelled(), nil
}

// RunPipeline validates a pipeline and stores it with all its jobs, or
// nothing, and returns it with its jobs. A pipeline the server rejects
// comes back as a codes.InvalidArgument status whose message names the
// step and the field ("steps.test.needs: …").
func (c *Client) RunPipeline(ctx context.Context, spec *hodeipb.PipelineSpec) (*hodeipb.PipelineStatus, error) {
	return c.jobs.RunPipeline(ctx, &hodeipb.RunPipelineRequest{Spec: spec})
}

// GetPipeline returns one pipeline with its state and its jobs in step
// order; codes.NotFound if there is none with that id.
func (c *Client) GetPipeline(ctx context.Context, id string) (*hodeipb.PipelineStatus, error) {
	return c.jobs.GetPipeline(ctx, &hodeipb.GetPipelineRequest{Id: id})
}

// ListPipelines returns every pipeline with its state, newest first,
// without their jobs, reading them page by page (PipelinePages).
func (c *Client) ListPipelines(ctx context.Context) ([]*hodeipb.PipelineStatus, error) {
	var out []*hodeipb.PipelineStatus
	for resp, err := range c.PipelinePages(ctx, &hodeipb.ListPipelinesRequest{PageSize: 1000}) {
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetPipelines()...)
	}
	return out, nil
}

// PipelinePages yields the pages of pipelines req asks for, newest first,
// from req's page token to the last page, each one call; it stops at the
// first error, which it yields.
func (c *Client) PipelinePages(ctx context.Context, req *hodeipb.ListPipelinesRequest) iter.Seq2[*hodeipb.ListPipelinesResponse, error] {
	if req == nil {
		req = &hodeipb.ListPipelinesRequest{}
	}
	return pages(ctx, "list pipelines", req, func(ctx context.Context, r *hodeipb.ListPipelinesRequest) (*hodeipb.ListPipelinesResponse, error) {
		return c.jobs.ListPipelines(ctx, r)
	}, func(r *hodeipb.ListPipelinesRequest, next string) { r.PageToken = next })
}

// CancelPipeline cancels every job of a pipeline that has not ended, the
// last steps first, and returns the pipeline as it is after. codes.NotFound
// if there is none; codes.FailedPrecondition if it has already ended. An
// empty reason lets the server use its default ("pipeline cancelled").
func (c *Client) CancelPipeline(ctx context.Context, id, reason string) (*hodeipb.PipelineStatus, error) {
	return c.jobs.CancelPipeline(ctx, &hodeipb.CancelPipelineRequest{Id: id, Reason: reason})
}
