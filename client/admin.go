package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// ListWorkers returns every worker the server knows, connected or not.
func (c *Client) ListWorkers(ctx context.Context) ([]*hodeipb.Worker, error) {
	resp, err := c.admin.ListWorkers(ctx, &hodeipb.ListWorkersRequest{})
	if err != nil {
		return nil, err
	}
	return resp.GetWorkers(), nil
}

// DrainWorker stops new assignments to a worker and returns it; the jobs it
// runs finish. codes.NotFound if there is no such worker.
func (c *Client) DrainWorker(ctx context.Context, id string) (*hodeipb.Worker, error) {
	return c.admin.DrainWorker(ctx, &hodeipb.DrainWorkerRequest{Id: id})
}

// UndrainWorker undoes DrainWorker: the worker takes new jobs again. It
// returns the worker; codes.NotFound if there is no such worker.
func (c *Client) UndrainWorker(ctx context.Context, id string) (*hodeipb.Worker, error) {
	return c.admin.UndrainWorker(ctx, &hodeipb.UndrainWorkerRequest{Id: id})
}

// RemoveWorker deletes a worker that is not connected and holds no active
// jobs, with its agent's certificate binding. Errors: codes.NotFound,
// codes.FailedPrecondition for a connected worker or one with jobs.
func (c *Client) RemoveWorker(ctx context.Context, id string) error {
	_, err := c.admin.RemoveWorker(ctx, &hodeipb.RemoveWorkerRequest{Id: id})
	return err
}

// Snapshot writes a consistent copy of the server's database to w and
// returns the number of bytes written. On error w holds a partial copy:
// write to a temporary file and rename it only on success.
func (c *Client) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	stream, err := c.admin.Snapshot(ctx, &hodeipb.SnapshotRequest{})
	if err != nil {
		return 0, err
	}
	var n int64
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		m, err := w.Write(msg.GetData())
		n += int64(m)
		if err != nil {
			return n, fmt.Errorf("write snapshot: %w", err)
		}
	}
}

// ListAudit returns the audit records that match f, newest first: at most
// f.Limit (0: job.DefaultAuditLimit, at most job.MaxAuditLimit, else
// codes.InvalidArgument). The server allows it to admins only.
func (c *Client) ListAudit(ctx context.Context, f job.AuditFilter) ([]*hodeipb.AuditRecord, error) {
	resp, err := c.admin.ListAudit(ctx, hodeipb.FromAuditFilter(f))
	if err != nil {
		return nil, err
	}
	return resp.GetRecords(), nil
}

// GetUsage sums ended attempts' usage by group, or lists their records
// when req.Attempts is set (a page; req.Cursor is the previous page's
// NextCursor). A token limited to tenants sees only theirs; naming
// another is codes.PermissionDenied, a bad field codes.InvalidArgument.
func (c *Client) GetUsage(ctx context.Context, req *hodeipb.GetUsageRequest) (*hodeipb.GetUsageResponse, error) {
	return c.admin.GetUsage(ctx, req)
}
