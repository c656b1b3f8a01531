package hodeipb

import "github.com/hodei-jobs/hodei/job"

// FromToken converts a stored token record to the wire.
func FromToken(t *job.Token) *TokenInfo {
	return &TokenInfo{
		Id: t.ID, Name: t.Name, Role: t.Role, Tenants: t.Tenants, CreatedBy: t.CreatedBy,
		CreatedUnixNano: nanos(t.CreatedAt), ExpiresUnixNano: nanos(t.ExpiresAt),
		LastUsedUnixNano: nanos(t.LastUsed), RevokedUnixNano: nanos(t.RevokedAt),
	}
}

// ToToken converts a wire token record to the domain.
func (t *TokenInfo) ToToken() *job.Token {
	return &job.Token{
		ID: t.GetId(), Name: t.GetName(), Role: t.GetRole(), Tenants: t.GetTenants(), CreatedBy: t.GetCreatedBy(),
		CreatedAt: fromNanos(t.GetCreatedUnixNano()), ExpiresAt: fromNanos(t.GetExpiresUnixNano()),
		LastUsed: fromNanos(t.GetLastUsedUnixNano()), RevokedAt: fromNanos(t.GetRevokedUnixNano()),
	}
}

// FromAgentBinding converts an agent binding to its storage record.
func FromAgentBinding(b *job.AgentBinding) *AgentRecord {
	return &AgentRecord{
		WorkerId: b.WorkerID, Serial: b.Serial, TokenId: b.TokenID, Hostname: b.Hostname,
		JoinedUnixNano: nanos(b.JoinedAt), RevokedUnixNano: nanos(b.RevokedAt),
	}
}

// ToAgentBinding converts a storage record to the domain.
func (r *AgentRecord) ToAgentBinding() *job.AgentBinding {
	return &job.AgentBinding{
		WorkerID: r.GetWorkerId(), Serial: r.GetSerial(), TokenID: r.GetTokenId(), Hostname: r.GetHostname(),
		JoinedAt: fromNanos(r.GetJoinedUnixNano()), RevokedAt: fromNanos(r.GetRevokedUnixNano()),
	}
}
