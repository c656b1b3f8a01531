package server

// Authentication and authorization of every call, in one place per
// transport: the gRPC interceptors here, and the HTTP middleware in
// http.go. Handlers see the caller's auth.Identity in their context and use
// it only for tenant scope (Server.sees and friends in scope.go).

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/puzpuzpuz/xsync/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/pki"
	"github.com/hodei-jobs/hodei/store"
)

// maxVerified bounds the cache of verified token texts; past it the cache
// starts over (a flood of distinct valid tokens costs signature checks,
// not memory).
const maxVerified = 1 << 16

// touchEvery is how often the last use of tokens is written to the store.
const touchEvery = time.Minute

// gate authenticates calls and decides whether they may proceed. It is
// safe for concurrent use.
type gate struct {
	authority *auth.Authority // nil with insecure
	store     *store.DB
	now       func() time.Time
	log       *slog.Logger
	insecure  bool // --insecure-no-auth: everyone is admin, agents are trusted

	tokens   *xsync.MapOf[string, *job.Token]        // id → record; every token, loaded at start
	agents   *xsync.MapOf[string, *job.AgentBinding] // worker id → binding
	verified *xsync.MapOf[string, *auth.Claims]      // token text → checked claims
	used     *xsync.MapOf[string, time.Time]         // id → last use not yet stored

	mu      sync.Mutex             // guards streams and the lists they head
	streams map[string]*openStream // by streamKey: the latest of that key's list
}

// openStream is one streaming call in flight, cut when its credential is
// revoked. The streams of one key form a list (an agent has one stream, a
// token may have many), so that tracking one costs a node rather than a
// map per key.
type openStream struct {
	cancel     context.CancelCauseFunc
	prev, next *openStream // guarded by gate.mu
}

func newGate(ctx context.Context, db *store.DB, authority *auth.Authority, insecure bool, now func() time.Time, log *slog.Logger) (*gate, error) {
	g := &gate{
		authority: authority, store: db, now: now, log: log, insecure: insecure,
		tokens:   xsync.NewMapOf[string, *job.Token](),
		agents:   xsync.NewMapOf[string, *job.AgentBinding](),
		verified: xsync.NewMapOf[string, *auth.Claims](),
		used:     xsync.NewMapOf[string, time.Time](),
		streams:  make(map[string]*openStream),
	}
	toks, err := db.Tokens(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range toks {
		g.tokens.Store(t.ID, t)
	}
	bindings, err := db.AgentBindings(ctx)
	if err != nil {
		return nil, err
	}
	for _, b := range bindings {
		g.agents.Store(b.WorkerID, b)
	}
	return g, nil
}

// unauthenticated and denied build the two refusals.
func unauthenticated(format string, args ...any) error {
	return status.Errorf(codes.Unauthenticated, format, args...)
}

func denied(format string, args ...any) error {
	return status.Errorf(codes.PermissionDenied, format, args...)
}

// check authenticates the caller of method and authorizes it. On refusal
// it returns the identity as far as it was established (for the audit
// record) and a status error.
func (g *gate) check(ctx context.Context, method string) (*auth.Identity, rule, error) {
	r, ok := ruleOf(method)
	if !ok {
		return nil, r, denied("%s is not open to any caller", method)
	}
	if r.open {
		return nil, r, nil
	}
	if g.insecure {
		if r.perm == auth.RunJobs {
			return &auth.Identity{Name: "agent", Role: auth.Agent}, r, nil
		}
		return &auth.Identity{Name: "anonymous", Role: auth.Admin}, r, nil
	}
	if r.perm == auth.RunJobs {
		id, err := g.agentIdentity(ctx)
		return id, r, err
	}
	text, err := bearerToken(ctx)
	if err != nil {
		return nil, r, err
	}
	id, err := g.authorize(text, r.perm, method)
	return id, r, err
}

// authorize authenticates a token's text and checks that it may exercise
// p; action names the call in a refusal. It is the check of every
// transport.
func (g *gate) authorize(text string, p auth.Permission, action string) (*auth.Identity, error) {
	id, err := g.identify(text)
	if err != nil {
		return id, err
	}
	if err := id.Allow(p); err != nil {
		return id, denied("%s (%s)", err, action)
	}
	return id, nil
}

// tokenIdentity authenticates the bearer token of a call.
func (g *gate) tokenIdentity(ctx context.Context) (*auth.Identity, error) {
	text, err := bearerToken(ctx)
	if err != nil {
		return nil, err
	}
	return g.identify(text)
}

// identify authenticates a token's text: signature and claims (cached),
// expiry, and the server's record of it (known, not revoked).
func (g *gate) identify(text string) (*auth.Identity, error) {
	c, ok := g.verified.Load(text)
	if !ok {
		var err error
		if c, err = g.authority.Verify(text); err != nil {
			return nil, unauthenticated("%s", err)
		}
		if g.verified.Size() >= maxVerified {
			g.verified.Clear()
		}
		g.verified.Store(text, c)
	}
	now := g.now()
	if !c.ExpiresAt.After(now) {
		g.verified.Delete(text)
		return nil, unauthenticated("token %s expired at %s", c.ID, c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	id := &auth.Identity{TokenID: c.ID, Name: c.Name, Role: c.Role, Tenants: c.Tenants}
	rec, ok := g.tokens.Load(c.ID)
	switch {
	case !ok:
		return id, unauthenticated("token %s is not known to this server", c.ID)
	case rec.Revoked():
		return id, unauthenticated("token %s (%s) was revoked at %s", c.ID, rec.Name, rec.RevokedAt.UTC().Format(time.RFC3339))
	}
	// Last use is kept to the second: most calls only read the map.
	if last, ok := g.used.Load(c.ID); !ok || now.Sub(last) >= time.Second {
		g.used.Store(c.ID, now)
	}
	return id, nil
}

// bearerToken returns the token of the call's authorization metadata.
func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", unauthenticated("no token: send `authorization: Bearer TOKEN` (hodei login, --token or HODEI_TOKEN)")
	}
	if len(vals) > 1 {
		return "", unauthenticated("more than one authorization header")
	}
	return parseBearer(vals[0])
}

// parseBearer takes the token out of an authorization value.
func parseBearer(v string) (string, error) {
	if len(v) > auth.MaxTokenLen+len("Bearer ") {
		return "", unauthenticated("token longer than %d bytes", auth.MaxTokenLen)
	}
	scheme, text, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || text == "" {
		return "", unauthenticated("authorization must be `Bearer TOKEN`")
	}
	return text, nil
}

// agentIdentity authenticates the agent stream by the client certificate
// the agent received at join. A token is not enough: the certificate binds
// the worker id.
func (g *gate) agentIdentity(ctx context.Context) (*auth.Identity, error) {
	leaf := peerCert(ctx)
	if leaf == nil {
		if _, err := bearerToken(ctx); err != nil {
			return nil, unauthenticated("no client certificate: join the agent first (hodei agent --join TOKEN --ca-fingerprint sha256:…)")
		}
		id, err := g.tokenIdentity(ctx)
		if err != nil {
			return id, err
		}
		return id, denied("the agent stream takes the client certificate an agent gets by joining (hodei agent --join), not a token")
	}
	worker, ok := pki.WorkerID(leaf)
	if !ok {
		return nil, denied("the client certificate names no worker")
	}
	id := &auth.Identity{Name: "worker:" + worker, Role: auth.Agent, Worker: worker}
	b, ok := g.agents.Load(worker)
	switch {
	case !ok:
		return id, denied("worker %s is not bound to this cluster: it never joined, or was removed (hodei workers rm); join it again with a new data dir", worker)
	case b.Revoked():
		return id, denied("worker %s was revoked at %s", worker, b.RevokedAt.UTC().Format(time.RFC3339))
	case b.Serial != leaf.SerialNumber.Text(16):
		return id, denied("worker %s is bound to another certificate", worker)
	}
	return id, nil
}

// peerCert returns the verified client certificate of the call, or nil.
func peerCert(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return ti.State.VerifiedChains[0][0]
}

// streamKey is what revoking cuts: a token's streams, or a worker's.
func streamKey(id *auth.Identity) string {
	if id.Worker != "" {
		return "worker:" + id.Worker
	}
	return "token:" + id.TokenID
}

// track registers a streaming call until the returned func is called.
func (g *gate) track(id *auth.Identity, cancel context.CancelCauseFunc) func() {
	if id == nil || (id.TokenID == "" && id.Worker == "") {
		return func() {}
	}
	key, os := streamKey(id), &openStream{cancel: cancel}
	g.mu.Lock()
	if head := g.streams[key]; head != nil {
		os.next, head.prev = head, os
	}
	g.streams[key] = os
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if os.next != nil {
			os.next.prev = os.prev
		}
		switch {
		case os.prev != nil:
			os.prev.next = os.next
		case os.next != nil:
			g.streams[key] = os.next
		default:
			delete(g.streams, key)
		}
	}
}

// cut ends every open stream under key with cause.
func (g *gate) cut(key string, cause error) {
	g.mu.Lock()
	var cancels []context.CancelCauseFunc
	for os := g.streams[key]; os != nil; os = os.next {
		cancels = append(cancels, os.cancel)
	}
	g.mu.Unlock()
	for _, c := range cancels {
		c(cause)
	}
}

// flushUsed writes the last use of tokens to the store.
func (g *gate) flushUsed(ctx context.Context) {
	used := make(map[string]time.Time)
	g.used.Range(func(id string, at time.Time) bool {
		used[id] = at
		g.used.Delete(id)
		return true
	})
	if len(used) == 0 {
		return
	}
	if err := g.store.TouchTokens(ctx, used); err != nil && !errors.Is(err, context.Canceled) {
		g.log.Warn("record token use", "err", err)
		return
	}
	for id, at := range used {
		g.tokens.Compute(id, func(old *job.Token, loaded bool) (*job.Token, bool) {
			if !loaded || !at.After(old.LastUsed) {
				return old, !loaded
			}
			n := *old
			n.LastUsed = at
			return &n, false
		})
	}
}

// runTouch flushes token use every touchEvery until ctx ends, then once more.
func (g *gate) runTouch(ctx context.Context) {
	t := time.NewTicker(touchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			g.flushUsed(context.WithoutCancel(ctx))
			return
		case <-t.C:
			g.flushUsed(ctx)
		}
	}
}

// unaryInterceptor checks every unary call and audits it per its rule.
func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id, r, err := s.gate.check(ctx, info.FullMethod)
	if err != nil {
		s.auditCall(ctx, id, info.FullMethod, req, nil, err)
		return nil, err
	}
	if id != nil {
		ctx = auth.NewContext(ctx, id)
	}
	if r.audited {
		if aerr := s.auditLog.Failing(); aerr != nil {
			err := status.Errorf(codes.Unavailable, "the audit log cannot be written (%v): changes are refused until it can", aerr)
			if errors.Is(aerr, job.ErrUnwritable) {
				err = toStatus(aerr) // the disk, said without its paths
			}
			s.auditCall(ctx, id, info.FullMethod, req, nil, err)
			return nil, err
		}
	}
	resp, err := handler(ctx, req)
	if r.audited || isDenial(err) || scopedNotFound(id, err) {
		s.auditCall(ctx, id, info.FullMethod, req, resp, err)
	}
	return resp, err
}

// streamInterceptor checks every streaming call, audits it per its rule,
// and lets a revocation of its credential end it.
func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	id, r, err := s.gate.check(ctx, info.FullMethod)
	if err != nil {
		s.auditCall(ctx, id, info.FullMethod, nil, nil, err)
		return err
	}
	// A revocation ends the stream itself, even a handler blocked in Recv.
	ctx, abort := withAbort(ctx)
	if id != nil {
		ctx = auth.NewContext(ctx, id)
		defer s.gate.track(id, abort)()
	}
	// A server that stops ends every stream at once, so that its clients
	// and agents reconnect to the next one instead of waiting on a server
	// that no longer serves.
	s.streams.Add(1)
	defer s.streams.Add(-1)
	defer context.AfterFunc(s.stopStreams, func() { abort(errServerStopping) })()
	if r.audited {
		s.auditCall(ctx, id, info.FullMethod, nil, nil, nil)
	}
	err = handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
	if isDenial(err) || scopedNotFound(id, err) {
		s.auditCall(ctx, id, info.FullMethod, nil, nil, err)
	}
	switch c := context.Cause(ctx); {
	case errors.Is(c, errRevoked):
		return status.Error(codes.Unauthenticated, c.Error())
	case errors.Is(c, errServerStopping):
		return status.Error(codes.Unavailable, c.Error())
	}
	return err
}

// errServerStopping is the cause of the streams a stopping server ends;
// their callers get Unavailable, which clients and agents retry.
var errServerStopping = errors.New("the server is stopping; reconnect to its next start")

// errRevoked is the cause of streams cut by a revocation.
var errRevoked = errors.New("credential revoked")

// isDenial reports whether err refuses the caller (as opposed to failing).
func isDenial(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied:
		return true
	}
	return false
}

// scopedNotFound reports a NotFound answer to a caller limited to tenants:
// what it looked for may be another tenant's, so it is audited like a
// denial.
func scopedNotFound(id *auth.Identity, err error) bool {
	return id != nil && id.Scoped() && status.Code(err) == codes.NotFound
}

// authedStream is a ServerStream whose context carries the identity.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }
