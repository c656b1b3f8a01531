package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// SubmitOption changes how Submit, SubmitArray and SubmitBatch submit.
type SubmitOption func(*submitOptions)

type submitOptions struct{ requireFit bool }

func submitOpts(opts []SubmitOption) submitOptions {
	var o submitOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// RequireFit, when on, has the server refuse a job that no registered
// worker could ever take by its capacity and labels (whatever it runs now,
// draining or not), with a codes.InvalidArgument status naming what does
// not fit ("selector: no registered worker has label zone=c (0 of 3)").
func RequireFit(on bool) SubmitOption {
	return func(o *submitOptions) { o.requireFit = on }
}

// Submit stores a job and returns its id. The server acknowledges only after
// the job is durable. A spec the server rejects comes back as a
// codes.InvalidArgument status naming the field.
func (c *Client) Submit(ctx context.Context, spec *hodeipb.JobSpec, opts ...SubmitOption) (string, error) {
	resp, err := c.jobs.Submit(ctx, &hodeipb.SubmitRequest{Spec: spec, RequireFit: submitOpts(opts).requireFit})
	if err != nil {
		return "", err
	}
	return resp.GetId(), nil
}

// SubmitBatch stores one job per spec in one transaction, all or none, and
// returns their ids in the order of specs. A batch holds at most
// job.MaxBatch specs and job.MaxBatchBytes of them; split larger sets into
// several calls (each is then all or none on its own). A spec the server
// rejects fails the whole call with a status whose message names the spec
// and field ("specs[3].command: …"), also carried as a
// google.rpc.BadRequest detail (see BatchFieldOf).
func (c *Client) SubmitBatch(ctx context.Context, specs []*hodeipb.JobSpec, opts ...SubmitOption) ([]string, error) {
	resp, err := c.jobs.SubmitBatch(ctx, &hodeipb.SubmitBatchRequest{Specs: specs, RequireFit: submitOpts(opts).requireFit})
	if err != nil {
		return nil, err
	}
	if len(resp.GetIds()) != len(specs) {
		return nil, fmt.Errorf("submit batch: server returned %d ids for %d specs", len(resp.GetIds()), len(specs))
	}
	return resp.GetIds(), nil
}

// BatchFieldOf finds, in an error of SubmitBatch, the spec the server
// refused: its index, the field within it ("command", or "" when the spec
// as a whole was refused, e.g. for its tenant) and the rule it broke. ok is
// false when the error names no single spec.
func BatchFieldOf(err error) (index int, field, rule string, ok bool) {
	st, isStatus := status.FromError(err)
	if !isStatus {
		return 0, "", "", false
	}
	for _, d := range st.Details() {
		br, isBR := d.(*errdetails.BadRequest)
		if !isBR {
			continue
		}
		for _, v := range br.GetFieldViolations() {
			if i, rest, found := job.ParseBatchField(v.GetField()); found {
				return i, rest, v.GetDescription(), true
			}
		}
	}
	return 0, "", "", false
}

// Get returns one job; codes.NotFound if there is none with that id. The
// id may be any unique prefix of one, in any case, or ARRAY-ID[INDEX].
func (c *Client) Get(ctx context.Context, id string) (*hodeipb.Job, error) {
	return c.jobs.Get(ctx, &hodeipb.GetJobRequest{Id: id})
}

// Resolve returns the whole id of the one object of kind whose id starts
// with prefix, ignoring case: codes.NotFound when there is none,
// codes.InvalidArgument listing them when there are several.
func (c *Client) Resolve(ctx context.Context, kind hodeipb.IdKind, prefix string) (string, error) {
	resp, err := c.jobs.Resolve(ctx, &hodeipb.ResolveRequest{Kind: kind, Prefix: prefix})
	if err != nil {
		return "", err
	}
	return resp.GetId(), nil
}

// List returns one page of jobs in submission order, or newest first with
// req.NewestFirst. Pass the response's NextPageToken as the next
// request's PageToken; ListAll does that for you.
func (c *Client) List(ctx context.Context, req *hodeipb.ListJobsRequest) (*hodeipb.ListJobsResponse, error) {
	return c.jobs.List(ctx, req)
}

// ListAll iterates over every job matching req, fetching page after page as
// the loop asks for more; breaking out of the loop stops fetching. req is
// not modified; its PageToken, if set, is where the listing starts. An error
// ends the sequence: it is yielded once with a nil job.
func (c *Client) ListAll(ctx context.Context, req *hodeipb.ListJobsRequest) iter.Seq2[*hodeipb.Job, error] {
	return func(yield func(*hodeipb.Job, error) bool) {
		for page, err := range c.ListPages(ctx, req) {
			if err != nil {
				yield(nil, err)
				return
			}
			for _, j := range page {
				if !yield(j, nil) {
					return
				}
			}
		}
	}
}

// ListPages iterates over the pages of jobs matching req, as ListAll does
// over jobs: the next page is requested only when the loop asks for more,
// so a caller that prints each page before the next holds one page at a
// time. A page may be empty (when the server stops at its page size just
// before the end). An error ends the sequence: it is yielded once with a
// nil page.
func (c *Client) ListPages(ctx context.Context, req *hodeipb.ListJobsRequest) iter.Seq2[[]*hodeipb.Job, error] {
	return func(yield func([]*hodeipb.Job, error) bool) {
		for resp, err := range c.ListResponses(ctx, req) {
			if !yield(resp.GetJobs(), err) || err != nil {
				return
			}
		}
	}
}

// ListResponses is ListPages with the whole answer of each page (with
// req.Count, the first one holds the total). Only the first request asks
// for the count: the later ones would answer the same.
func (c *Client) ListResponses(ctx context.Context, req *hodeipb.ListJobsRequest) iter.Seq2[*hodeipb.ListJobsResponse, error] {
	if req == nil {
		req = &hodeipb.ListJobsRequest{}
	}
	return pages(ctx, "list jobs", req, func(ctx context.Context, r *hodeipb.ListJobsRequest) (*hodeipb.ListJobsResponse, error) {
		return c.jobs.List(ctx, r)
	}, func(r *hodeipb.ListJobsRequest, next string) { r.PageToken, r.Count = next, false })
}

// Cancel stops a job in any non-terminal state and returns it as it is after
// the request (a running job stays RUNNING, with CancelRequested set, until
// its agent confirms). A job that has already ended comes back as it is,
// without an error. An empty reason lets the server use its default.
func (c *Client) Cancel(ctx context.Context, id, reason string) (*hodeipb.Job, error) {
	return c.jobs.Cancel(ctx, &hodeipb.CancelJobRequest{Id: id, Reason: reason})
}

// Watch streams every change of the jobs req selects until ctx ends or the
// server closes the stream. Cancel ctx to stop watching.
func (c *Client) Watch(ctx context.Context, req *hodeipb.WatchRequest) (grpc.ServerStreamingClient[hodeipb.JobEvent], error) {
	if req == nil {
		req = &hodeipb.WatchRequest{}
	}
	return c.jobs.Watch(ctx, req)
}

// Logs opens a job's output stream. Receive until io.EOF; with req.Follow
// the stream ends when the job is terminal. CopyLogs is the simple form.
func (c *Client) Logs(ctx context.Context, req *hodeipb.LogsRequest) (grpc.ServerStreamingClient[hodeipb.LogData], error) {
	return c.jobs.Logs(ctx, req)
}

// CopyLogs writes the output req names to w, byte for byte as stored: one
// stream of one attempt (req.Attempt 0: the current one, and with
// req.Follow the later retries too), from req.Offset. With Follow it
// returns when the job is terminal and all its output is written; without,
// when the stored output is written. An error from w is returned wrapped;
// errors from the server are gRPC status errors.
func (c *Client) CopyLogs(ctx context.Context, req *hodeipb.LogsRequest, w io.Writer) error {
	stream, err := c.jobs.Logs(ctx, req)
	if err != nil {
		return err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := w.Write(msg.GetData()); err != nil {
			return fmt.Errorf("write logs: %w", err)
		}
	}
}
