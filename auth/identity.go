package auth

import (
	"context"
	"fmt"
	"slices"
)

// Identity is who a call comes from: a token's holder or, for the agent
// stream, the worker named by its client certificate. Values are
// immutable once in a context.
type Identity struct {
	TokenID string   // the token's id; empty for a certificate or no authentication
	Name    string   // the token's name, or "worker:<id>" for an agent certificate
	Role    Role     // what it may do
	Tenants []string // the tenants it may act on; empty: every tenant
	Worker  string   // the worker id bound to the agent's certificate; empty otherwise
}

// Scoped reports whether the identity is limited to some tenants.
func (id *Identity) Scoped() bool { return len(id.Tenants) > 0 }

// Sees reports whether the identity may see objects of tenant.
func (id *Identity) Sees(tenant string) bool {
	return !id.Scoped() || slices.Contains(id.Tenants, tenant)
}

// Allow says whether the identity may exercise p, and if not, why, in words
// for the caller.
func (id *Identity) Allow(p Permission) error {
	if !id.Role.Can(p) {
		return fmt.Errorf("role %s may not %s", id.Role, p)
	}
	if p.Global() && id.Scoped() {
		return fmt.Errorf("%s needs a token not limited to tenants; this one is limited to %v", p, id.Tenants)
	}
	return nil
}

type ctxKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity in ctx, or nil.
func FromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(ctxKey{}).(*Identity)
	return id
}
