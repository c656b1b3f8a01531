package job

import "time"

// Token is the stored record of a signed API token. The token text itself
// is never stored: it is shown once, when created. Shared values are
// immutable.
type Token struct {
	ID        string   // the token's jti
	Name      string   // who or what it is for; shown in listings and the audit log
	Role      string   // admin, operator, submitter, viewer or agent
	Tenants   []string // the tenants it may act on; empty: every tenant
	CreatedBy string   // name of the token that created it ("bootstrap" for the first)
	CreatedAt time.Time
	ExpiresAt time.Time
	LastUsed  time.Time // zero: never; recorded coarsely, not on every call
	RevokedAt time.Time // zero: not revoked
}

// Revoked reports whether the token was revoked.
func (t *Token) Revoked() bool { return !t.RevokedAt.IsZero() }

// AgentBinding binds a worker id to the client certificate an agent got by
// joining. Once a worker id is bound, only that certificate speaks for it:
// the id cannot be joined again, even after a revocation.
type AgentBinding struct {
	WorkerID  string
	Serial    string // of the certificate issued at join, hex
	TokenID   string // the join token used
	Hostname  string
	JoinedAt  time.Time
	RevokedAt time.Time // zero: not revoked
}

// Revoked reports whether the agent was cut off.
func (b *AgentBinding) Revoked() bool { return !b.RevokedAt.IsZero() }
