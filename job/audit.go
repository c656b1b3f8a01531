package job

import (
	"strings"
	"time"
)

// Limits of an audit listing, applied by AuditFilter.Normalize and checked
// by AuditFilter.Validate.
const (
	DefaultAuditLimit = 1000
	MaxAuditLimit     = 10000
)

// AuditOK is the Result of an AuditEntry for a call that succeeded; a
// refused or failed call carries its gRPC status code's name instead
// (PermissionDenied, Unauthenticated, NotFound …).
const AuditOK = "OK"

// AuditEntry is one audited event: a mutating call, or a call that was
// refused. It is a value: copy it freely. Every field is optional except
// Time, which the recorder sets when it is zero.
type AuditEntry struct {
	// Time is when the call was decided.
	Time time.Time
	// TokenID is the jti of the caller's token; empty when the caller was
	// not authenticated.
	TokenID string
	// TokenName is the caller's token name, or the worker id of an agent
	// certificate: the actor that `hodei audit ls --actor` matches.
	TokenName string
	// Role is the caller's role (admin, operator, submitter, viewer, agent).
	Role string
	// Scope is the token's tenants; empty means every tenant.
	Scope []string
	// Tenant is the tenant of the target, when known.
	Tenant string
	// Action is what was called: the full gRPC method
	// ("/hodei.v1.JobService/Submit") or the HTTP method and path.
	Action string
	// Target is the id or name the call acted on.
	Target string
	// Result is AuditOK or the status code's name.
	Result string
	// Message says why the call was refused or failed.
	Message string
	// Peer is the caller's remote address.
	Peer string
}

// AuditFilter selects audit entries, newest first. The zero value lists
// the DefaultAuditLimit newest entries.
type AuditFilter struct {
	// Since keeps entries at or after it; zero: no bound.
	Since time.Time
	// Actor keeps entries whose TokenName equals it; empty: all.
	Actor string
	// Action keeps entries whose Action contains it, ignoring case; empty:
	// all.
	Action string
	// Limit is the most entries returned: 0 means DefaultAuditLimit; more
	// than MaxAuditLimit is refused by Validate.
	Limit int
}

// Normalize fills the default limit in place. It is idempotent.
func (f *AuditFilter) Normalize() {
	if f.Limit == 0 {
		f.Limit = DefaultAuditLimit
	}
}

// Validate returns a *FieldError for a limit outside 0–MaxAuditLimit.
func (f *AuditFilter) Validate() error {
	if f.Limit < 0 || f.Limit > MaxAuditLimit {
		return Invalid("limit", "must be between 1 and %d (0: %d)", MaxAuditLimit, DefaultAuditLimit)
	}
	return nil
}

// Match reports whether e passes the filter's Since, Actor and Action (not
// its Limit).
func (f *AuditFilter) Match(e *AuditEntry) bool {
	if !f.Since.IsZero() && e.Time.Before(f.Since) {
		return false
	}
	if f.Actor != "" && e.TokenName != f.Actor {
		return false
	}
	return f.Action == "" || containsFold(e.Action, f.Action)
}

// containsFold reports whether sub is in s, ignoring case.
func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
