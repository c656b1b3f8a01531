package server

import (
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/hodei-jobs/hodei/proto"
)

// The long HTTP streams (SSE events and logs, snapshots) are gRPC streams
// on in-process connections, and one connection carries at most
// maxStreamsPerConn of them at once: past that a new one would wait, and
// every REST call behind it. So the streams have connections of their
// own, apart from the gateway's calls, opened as they fill up to
// maxRESTStreams in all; one more is refused at once (503) rather than
// left waiting.

// maxRESTStreams is the most long HTTP streams the server holds open at
// once, whoever opens them (each token also has its own limit,
// --max-streams-per-token). Each costs about 70 KiB idle and up to about
// 250 KiB while events flow to a client that does not read them, until
// sseWriteTimeout ends it: 2,048 of them stay within about half a GiB.
const maxRESTStreams = 2048

// restStreamsPerConn is how many long streams one in-process connection
// takes, below its limit of maxStreamsPerConn.
const restStreamsPerConn = maxStreamsPerConn - 24

// streamConns are the in-process connections of the long streams.
type streamConns struct {
	dial func() (*grpc.ClientConn, error)

	mu     sync.Mutex
	conns  []*streamConn // guarded by mu
	open   int           // streams held, guarded by mu
	closed bool          // guarded by mu
}

// streamConn is one connection and the streams it holds.
type streamConn struct {
	conn *grpc.ClientConn
	jobs pb.JobServiceClient
	adm  pb.AdminServiceClient
	n    int // guarded by streamConns.mu
}

// acquire returns a connection with room for one more stream and the
// function that gives the room back; Unavailable when maxRESTStreams are
// open.
func (p *streamConns) acquire() (*streamConn, func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, nil, status.Error(codes.Unavailable, "the server is shutting down")
	}
	if p.open >= maxRESTStreams {
		return nil, nil, status.Errorf(codes.Unavailable, "the server holds %d HTTP streams open, its most: close one, or follow over gRPC", maxRESTStreams)
	}
	var c *streamConn
	for _, sc := range p.conns {
		if sc.n < restStreamsPerConn {
			c = sc
			break
		}
	}
	if c == nil {
		conn, err := p.dial()
		if err != nil {
			return nil, nil, fmt.Errorf("rest streams: %w", err)
		}
		c = &streamConn{conn: conn, jobs: pb.NewJobServiceClient(conn), adm: pb.NewAdminServiceClient(conn)}
		p.conns = append(p.conns, c)
	}
	c.n++
	p.open++
	var once sync.Once
	return c, func() {
		once.Do(func() {
			p.mu.Lock()
			c.n--
			p.open--
			p.mu.Unlock()
		})
	}, nil
}

// close closes every connection.
func (p *streamConns) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs []error
	for _, c := range p.conns {
		errs = append(errs, c.conn.Close())
	}
	p.conns = nil
	return errors.Join(errs...)
}
