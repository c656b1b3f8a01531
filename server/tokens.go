package server

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// The admin token written on first start, and its name.
const (
	AdminTokenFile = "admin.token"
	bootstrapName  = "admin"
)

// issue signs a token, stores its record and publishes it to the gate.
func (s *Server) issue(ctx context.Context, role auth.Role, tenants []string, name, by string, ttl time.Duration) (string, *job.Token, error) {
	text, c, err := s.authority.Issue(role, tenants, name, ttl)
	if err != nil {
		return "", nil, job.Invalid("ttl", "%s", err)
	}
	rec := &job.Token{
		ID: c.ID, Name: name, Role: string(role), Tenants: tenants, CreatedBy: by,
		CreatedAt: c.IssuedAt.Time, ExpiresAt: c.ExpiresAt.Time,
	}
	if err := s.store.PutToken(ctx, rec); err != nil {
		return "", nil, err
	}
	s.gate.tokens.Store(rec.ID, rec)
	return text, rec, nil
}

func (as *adminService) CreateToken(ctx context.Context, req *pb.CreateTokenRequest) (*pb.CreateTokenResponse, error) {
	s := as.srv
	if s.authority == nil {
		return nil, toStatus(fmt.Errorf("%w: tokens: the server runs with --insecure-no-auth", job.ErrConflict))
	}
	role, err := auth.ParseRole(req.GetRole())
	if err != nil {
		return nil, invalid("role", "%s", err)
	}
	tenants := slices.Clone(req.GetTenants())
	slices.Sort(tenants)
	tenants = slices.Compact(tenants)
	if len(tenants) > 0 && !role.Scopable() {
		return nil, invalid("tenants", "an %s token reaches every tenant; leave --tenant out", role)
	}
	for i, t := range tenants {
		if err := checkTenantName(t); err != nil {
			return nil, invalid(fmt.Sprintf("tenants[%d]", i), "%s", err)
		}
		if !s.sched.HasTenant(t) {
			return nil, invalid(fmt.Sprintf("tenants[%d]", i), "%q is not a tenant; create it first with hodei tenants set %s", t, t)
		}
	}
	name := req.GetName()
	if err := checkTokenName(name); err != nil {
		return nil, err
	}
	if name == "" {
		name = string(role)
	}
	ttl := auth.DefaultTTL
	if role == auth.Agent {
		ttl = auth.DefaultAgentTTL
	}
	if ms := req.GetTtlMs(); ms != 0 {
		if ms < 0 || ms > auth.MaxTTL.Milliseconds() {
			return nil, invalid("ttl_ms", "%d must be more than 0 and at most %d (%s)", ms, auth.MaxTTL.Milliseconds(), auth.MaxTTL)
		}
		ttl = time.Duration(ms) * time.Millisecond
	}
	by := ""
	if id := auth.FromContext(ctx); id != nil {
		by = id.Name
	}
	text, rec, err := s.issue(ctx, role, tenants, name, by, ttl)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.CreateTokenResponse{Token: text, Info: pb.FromToken(rec)}
	if s.ca != nil {
		resp.CaFingerprint = s.ca.Fingerprint()
	}
	return resp, nil
}

// checkTokenName allows short printable names.
func checkTokenName(name string) error {
	if len(name) > 64 {
		return invalid("name", "is %d bytes; at most 64", len(name))
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return invalid("name", "must not contain control characters")
		}
	}
	return nil
}

func (as *adminService) ListTokens(ctx context.Context, _ *pb.ListTokensRequest) (*pb.ListTokensResponse, error) {
	resp := &pb.ListTokensResponse{}
	g := as.srv.gate
	g.tokens.Range(func(_ string, t *job.Token) bool {
		info := pb.FromToken(t)
		if at, ok := g.used.Load(t.ID); ok && at.After(t.LastUsed) {
			info.LastUsedUnixNano = at.UnixNano() // not yet written to the store
		}
		resp.Tokens = append(resp.Tokens, info)
		return true
	})
	slices.SortFunc(resp.Tokens, func(a, b *pb.TokenInfo) int {
		if a.Id < b.Id {
			return -1
		}
		if a.Id > b.Id {
			return 1
		}
		return 0
	})
	return resp, nil
}

func (as *adminService) RevokeToken(ctx context.Context, req *pb.RevokeTokenRequest) (*pb.TokenInfo, error) {
	s := as.srv
	if req.GetId() == "" {
		return nil, invalid("id", "is required (see hodei token ls)")
	}
	rec, err := s.store.RevokeToken(ctx, req.GetId(), s.now())
	if err != nil {
		return nil, toStatus(err)
	}
	s.gate.tokens.Store(rec.ID, rec)
	s.gate.cut("token:"+rec.ID, fmt.Errorf("%w: token %s was revoked", errRevoked, rec.ID))
	s.log.Info("token revoked", "token", rec.ID, "name", rec.Name)
	return pb.FromToken(rec), nil
}

func (as *adminService) WhoAmI(ctx context.Context, _ *pb.WhoAmIRequest) (*pb.TokenInfo, error) {
	id := auth.FromContext(ctx)
	if id == nil {
		return &pb.TokenInfo{Name: "in-process", Role: string(auth.Admin)}, nil
	}
	if rec, ok := as.srv.gate.tokens.Load(id.TokenID); ok {
		return pb.FromToken(rec), nil
	}
	return &pb.TokenInfo{Id: id.TokenID, Name: id.Name, Role: string(id.Role), Tenants: id.Tenants}, nil
}
