package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// LogCursor is where a reader of one stream of a job's output stands: the
// attempt and byte offset of the next byte it has not written. Request
// makes the LogsRequest that resumes from there; Take checks each message
// against it, cuts what was already written and moves past the rest. A
// reader that keeps its cursor across broken streams writes the output
// once, in order, with no gap, however often it has to ask again.
//
// The zero value stands before the current attempt's first byte. A
// LogCursor is not safe for concurrent use.
type LogCursor struct {
	Attempt int32 // 0: the job's current one, until a message says which
	Offset  int64
	// Later moves on to the attempts of later retries (a follow of attempt
	// 0, or one that set LaterAttempts).
	Later bool
}

// CursorOf returns the cursor at the start of what req asks for.
func CursorOf(req *hodeipb.LogsRequest) LogCursor {
	return LogCursor{
		Attempt: req.GetAttempt(),
		Offset:  req.GetOffset(),
		Later:   req.GetFollow() && (req.GetAttempt() == 0 || req.GetLaterAttempts()),
	}
}

// Request returns req (which is not modified) asking from the cursor on.
// Once the cursor knows its attempt, the request names it, with
// LaterAttempts when the cursor follows later ones.
func (c *LogCursor) Request(req *hodeipb.LogsRequest) *hodeipb.LogsRequest {
	r := proto.CloneOf(req)
	r.Attempt, r.Offset = c.Attempt, c.Offset
	r.LaterAttempts = c.Later && c.Attempt != 0
	return r
}

// Take returns the bytes of m from the cursor on, and moves the cursor past
// them: nil when m holds nothing new. It fails, moving nothing, when m
// would leave a gap — it starts after the cursor's offset, or is of a
// later attempt but not from its start — or comes from an attempt the
// cursor does not follow: an earlier one, or a later one without Later.
func (c *LogCursor) Take(m *hodeipb.LogData) ([]byte, error) {
	a, off, data := m.GetAttempt(), m.GetOffset(), m.GetData()
	offset := c.Offset
	switch {
	case c.Attempt == 0:
		// The first message says which attempt "current" was.
	case a < c.Attempt:
		return nil, fmt.Errorf("logs: got attempt %d's output while at attempt %d", a, c.Attempt)
	case a > c.Attempt && !c.Later:
		return nil, fmt.Errorf("logs: got attempt %d's output while following attempt %d only", a, c.Attempt)
	case a > c.Attempt:
		offset = 0
	}
	if off > offset {
		return nil, fmt.Errorf("logs: attempt %d's output jumps from byte %d to %d", a, offset, off)
	}
	skip := offset - off // already written
	if skip >= int64(len(data)) {
		c.Attempt, c.Offset = a, offset
		return nil, nil
	}
	data = data[skip:]
	c.Attempt, c.Offset = a, offset+int64(len(data))
	return data, nil
}

// FollowLogs is CopyLogs that rides out the server going away, through r:
// when a stream breaks because the server is down or restarting, it asks
// again from the byte after the last one it wrote (LogCursor), so that w
// gets the output once, in order and without a gap. With req.Attempt 0
// and req.Follow, the attempt is pinned first (one Get) and later ones are
// followed with LaterAttempts, so that a retry that began during an outage
// is not missed. The errors are CopyLogs's, an *UnreachableError when r
// gave up, or ctx.Err().
func (c *Client) FollowLogs(ctx context.Context, r *Reconnector, req *hodeipb.LogsRequest, w io.Writer) error {
	cur := CursorOf(req)
	if cur.Attempt == 0 && req.GetFollow() {
		err := r.Do(ctx, func(ctx context.Context, _ func()) error {
			j, err := c.Get(ctx, req.GetId())
			cur.Attempt = j.GetAttempt()
			return err
		})
		if err != nil {
			return err
		}
	}
	return r.Do(ctx, func(ctx context.Context, up func()) error {
		return c.copyFrom(ctx, &cur, req, w, up)
	})
}

// copyFrom copies one stream of req's output from cur on, calling up once
// the server has answered.
func (c *Client) copyFrom(ctx context.Context, cur *LogCursor, req *hodeipb.LogsRequest, w io.Writer, up func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.jobs.Logs(ctx, cur.Request(req))
	if err != nil {
		return err
	}
	// The server sends its header as soon as it took the request, so that a
	// job that prints nothing for a while still shows the server is back.
	if _, err := stream.Header(); err != nil {
		return err
	}
	up()
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		data, err := cur.Take(msg)
		if err != nil {
			return err
		}
		if len(data) == 0 {
			continue
		}
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("write logs: %w", err)
		}
	}
}
