package server

// The REST/JSON API under /v1/: grpc-gateway's handlers, generated from
// hodei.proto's google.api.http annotations, call the server's own gRPC
// services over an in-process connection that the same grpc.Server
// serves. Every REST call is therefore a gRPC call, through the same
// interceptors (authentication, authorization, validation, audit, the
// per-token stream limit): there is no second copy of any rule. The
// streams (events, logs, snapshot) have hand-written handlers in
// restsse.go that drive the same gRPC streams over the same connection.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sync"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/hodei-jobs/hodei/proto"
)

// maxRESTBody bounds the body of one REST request, as maxRecvMsg bounds a
// gRPC one; a larger body is refused with 413 before it is read.
const maxRESTBody = maxRecvMsg

// httpPeerKey is the metadata key under which the gateway tells the
// server the HTTP client's address. The server believes it only on the
// in-process connection (restPeer): the gateway forwards no header of the
// client as metadata besides authorization, so a client cannot set it.
const httpPeerKey = "x-hodei-http-peer"

// rest is the REST gateway of a Server: the in-process listener the gRPC
// server serves, the client connection to it and the gateway's mux. The
// Server owns it: newREST makes it in Listen, Serve serves lis, and
// close (after the HTTP server has shut down) closes conn.
type rest struct {
	lis     *pipeListener
	conn    *grpc.ClientConn // the gateway's calls
	streams *streamConns     // the long streams': SSE and snapshots
	mux     *runtime.ServeMux
	probe   *runtime.ServeMux // the same routes, to find a path's methods (allowed)
	jobs    pb.JobServiceClient
	adm     pb.AdminServiceClient
}

// newREST connects the gateway to the gRPC server through an in-process
// listener. With TLS the connection is TLS too, since the gRPC server
// takes nothing else; the client then accepts only the server's own
// certificate (pinned: the pipe has no host name to check).
func (s *Server) newREST() (*rest, error) {
	lis := newPipeListener()
	creds := insecure.NewCredentials()
	if s.tlsConfig != nil {
		own, err := ownCert(s.tlsConfig)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS13,
			// Verified by VerifyConnection: the exact certificate the
			// server serves, whatever names it holds.
			InsecureSkipVerify: true, //nolint:gosec // pinned below
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, own) {
					return errors.New("in-process connection: not the server's own certificate")
				}
				return nil
			},
		})
	}
	dial := func() (*grpc.ClientConn, error) {
		conn, err := grpc.NewClient("passthrough:///hodei-in-process",
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.dial(ctx) }),
			grpc.WithTransportCredentials(creds),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
		)
		if err != nil {
			return nil, fmt.Errorf("rest gateway: %w", err)
		}
		return conn, nil
	}
	conn, err := dial()
	if err != nil {
		return nil, err
	}
	r := &rest{lis: lis, conn: conn, streams: &streamConns{dial: dial}, jobs: pb.NewJobServiceClient(conn), adm: pb.NewAdminServiceClient(conn)}
	r.mux = runtime.NewServeMux(
		// Only authorization goes through (the gateway passes it on by
		// itself), and the client's address, under a key a client cannot set.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithMetadata(func(_ context.Context, req *http.Request) metadata.MD {
			return metadata.Pairs(httpPeerKey, req.RemoteAddr)
		}),
		// protojson as it is by default (lowerCamelCase names, enums as
		// names, 64-bit integers as strings, zero values left out); an
		// unknown field in a body is refused, as gRPC refuses it.
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{},
			UnmarshalOptions: protojson.UnmarshalOptions{},
		}),
		runtime.SetQueryParameterParser(strictQuery{}),
		runtime.WithErrorHandler(restError),
		runtime.WithRoutingErrorHandler(r.routingError),
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithDisablePathLengthFallback(),
	)
	if err := pb.RegisterJobServiceHandlerClient(context.Background(), r.mux, r.jobs); err != nil {
		conn.Close()
		return nil, fmt.Errorf("rest gateway: %w", err)
	}
	if err := pb.RegisterAdminServiceHandlerClient(context.Background(), r.mux, r.adm); err != nil {
		conn.Close()
		return nil, fmt.Errorf("rest gateway: %w", err)
	}
	// The probe's handlers only say that they matched; it calls nothing.
	r.probe = runtime.NewServeMux(
		runtime.WithMiddlewares(func(runtime.HandlerFunc) runtime.HandlerFunc {
			return func(w http.ResponseWriter, _ *http.Request, _ map[string]string) { w.WriteHeader(http.StatusNoContent) }
		}),
		runtime.WithRoutingErrorHandler(func(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, st int) {
			w.WriteHeader(st)
		}),
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithDisablePathLengthFallback(),
	)
	if err := errors.Join(pb.RegisterJobServiceHandlerClient(context.Background(), r.probe, r.jobs),
		pb.RegisterAdminServiceHandlerClient(context.Background(), r.probe, r.adm)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("rest gateway: %w", err)
	}
	return r, nil
}

// ownCert is the DER of the certificate cfg serves.
func ownCert(cfg *tls.Config) ([]byte, error) {
	if len(cfg.Certificates) > 0 && len(cfg.Certificates[0].Certificate) > 0 {
		return cfg.Certificates[0].Certificate[0], nil
	}
	return nil, errors.New("rest gateway: the server's TLS config has no certificate")
}

// handler is the gateway with the request body bounded: a body over
// maxRESTBody is refused with 413 before the gateway decodes anything.
func (r *rest) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.ContentLength > maxRESTBody {
			tooLarge(w, req.ContentLength)
			return
		}
		if req.Body != nil && req.Body != http.NoBody {
			b, err := io.ReadAll(io.LimitReader(req.Body, maxRESTBody+1))
			if err != nil {
				writeHTTPError(w, badRequest("", "reading the request body: "+err.Error()))
				return
			}
			if len(b) > maxRESTBody {
				tooLarge(w, -1)
				return
			}
			// Said here, with where it is: past this the gateway reports
			// a syntax error without saying that it is one.
			var raw json.RawMessage
			if err := json.Unmarshal(b, &raw); len(bytes.TrimSpace(b)) > 0 && err != nil {
				writeHTTPError(w, badRequest("", "the request body is not valid JSON: "+err.Error()))
				return
			}
			req.Body = io.NopCloser(bytes.NewReader(b))
			req = req.WithContext(withBody(req.Context(), b))
		}
		r.mux.ServeHTTP(w, req)
	})
}

// close closes the gateway's connections; the gRPC server closes lis when
// it stops.
func (r *rest) close() error { return errors.Join(r.conn.Close(), r.streams.close()) }

// restPeer returns the HTTP client's address of a call that came through
// the REST gateway, and whether it did: only a call on the in-process
// connection carries one that can be believed.
func restPeer(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	if _, ok := p.Addr.(pipeAddr); !ok {
		return "", false
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(httpPeerKey); len(v) == 1 {
		return v[0], true
	}
	return "", false
}

// pipeListener is an in-process net.Listener: dial hands Accept one end of
// a net.Pipe. Safe for concurrent use.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept waits for the next dial, or fails with net.ErrClosed once closed.
func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept and refuses further dials; open connections go on.
func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is the listener's address, pipeAddr.
func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial connects to the listener.
func (l *pipeListener) dial(ctx context.Context) (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case l.conns <- pipeConn{s}:
		return pipeConn{c}, nil
	case <-l.done:
	case <-ctx.Done():
	}
	c.Close()
	s.Close()
	return nil, fmt.Errorf("in-process dial: %w", net.ErrClosed)
}

// pipeConn is one end of an in-process connection: both its addresses are
// pipeAddr, which no network connection has.
type pipeConn struct{ net.Conn }

func (pipeConn) LocalAddr() net.Addr  { return pipeAddr{} }
func (pipeConn) RemoteAddr() net.Addr { return pipeAddr{} }

// pipeAddr is the address of the in-process connection.
type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "in-process" }
