package client

import (
	"context"

	"google.golang.org/grpc"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// Attach opens an attach stream to a job that has not ended. Send an
// AttachOpen first; the server answers Attached, then output (when asked
// for), InputState messages and, once the job has ended, AttachEnded.
// Input may be sent only while InputState says the stream holds it, and
// only up to its limit; CloseSend detaches. Cancel ctx to drop the stream.
func (c *Client) Attach(ctx context.Context) (grpc.BidiStreamingClient[hodeipb.AttachRequest, hodeipb.AttachResponse], error) {
	return c.jobs.Attach(ctx)
}
