package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// DefaultPort is the port `hodei serve` listens on for gRPC by default,
// and the one the CLI dials when --addr names a host alone.
const DefaultPort = "7070"

// DefaultAddr is the address `hodei serve` listens on for gRPC by default.
const DefaultAddr = "127.0.0.1:" + DefaultPort

// Client talks to one Hodei server. It is safe for concurrent use; create it
// with Dial and release it with Close.
type Client struct {
	conn  *grpc.ClientConn
	jobs  hodeipb.JobServiceClient
	admin hodeipb.AdminServiceClient

	closeOnce sync.Once
	closeErr  error // of the first Close; guarded by closeOnce
}

// Option configures Dial.
type Option func(*config)

type config struct {
	token    string
	tls      *tls.Config
	dialOpts []grpc.DialOption
}

// WithTLS connects over TLS with cfg (which verifies the server; see
// pki.ClientConfig). Without it the connection is plaintext, which only a
// server run with --insecure-no-auth accepts, and a token is not sent.
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) { c.tls = cfg }
}

// WithToken sends token as `authorization: Bearer <token>` metadata on every
// call, over TLS only (WithTLS). An empty token sends nothing.
func WithToken(token string) Option {
	return func(c *config) { c.token = token }
}

// WithDialOptions appends raw gRPC dial options, applied after the defaults
// (insecure transport credentials), so that they can override them: a
// custom dialer in tests (bufconn), TLS credentials, interceptors.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOpts = append(c.dialOpts, opts...) }
}

// Dial returns a Client for the server at addr ("host:port"). It does not
// wait for the connection: a server that cannot be reached shows up as a
// codes.Unavailable error from the first call. ctx is reserved for a future
// blocking handshake (authentication) and is not retained. Its unary calls
// refuse a request with text that is not valid UTF-8 before sending it
// (InvalidArgument naming the field).
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if addr == "" {
		return nil, fmt.Errorf("dial: empty server address")
	}
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	dialOpts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(checkUTF8)}
	if cfg.tls != nil {
		dialOpts[0] = grpc.WithTransportCredentials(credentials.NewTLS(cfg.tls))
		if cfg.token != "" {
			dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearer(cfg.token)))
		}
	}
	dialOpts = append(dialOpts, cfg.dialOpts...)
	conn, err := grpc.NewClient(addr, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return New(conn), nil
}

// checkUTF8 refuses, before it is sent, a request with a string field that
// is not valid UTF-8, which protobuf cannot encode: the caller gets
// InvalidArgument naming the field ("spec.command[1]: is not valid
// UTF-8"), as the server would answer, instead of an encoding error.
func checkUTF8(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if m, ok := req.(proto.Message); ok {
		if err := hodeipb.CheckUTF8(m); err != nil {
			return invalidStatus(err)
		}
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// invalidStatus is InvalidArgument for err, with a google.rpc.BadRequest
// detail naming the field when err is a *job.FieldError, as the server's
// answers have.
func invalidStatus(err error) error {
	st := status.New(codes.InvalidArgument, err.Error())
	if fe, ok := errors.AsType[*job.FieldError](err); ok {
		if d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: fe.Field, Description: fe.Rule},
		}}); derr == nil {
			return d.Err()
		}
	}
	return st.Err()
}

// New wraps an existing connection. The Client's Close closes conn.
func New(conn *grpc.ClientConn) *Client {
	return &Client{
		conn:  conn,
		jobs:  hodeipb.NewJobServiceClient(conn),
		admin: hodeipb.NewAdminServiceClient(conn),
	}
}

// Close closes the connection; calls in flight fail with codes.Canceled.
// It is safe to call more than once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.conn.Close() })
	return c.closeErr
}

// ResetConnectBackoff makes a connection that failed dial again at once,
// instead of after gRPC's own backoff (which grows to two minutes), for a
// caller that waits by its own schedule (Reconnector).
func (c *Client) ResetConnectBackoff() { c.conn.ResetConnectBackoff() }

// Jobs is the generated JobService client, for calls the thin methods do
// not cover.
func (c *Client) Jobs() hodeipb.JobServiceClient { return c.jobs }

// Admin is the generated AdminService client.
func (c *Client) Admin() hodeipb.AdminServiceClient { return c.admin }

// bearer is per-call credentials carrying a bearer token, never sent in
// plaintext.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }
