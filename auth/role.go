package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Role is what a token may do. The zero Role may do nothing.
type Role string

// The roles, from most to least powerful. Agent is apart: it speaks only
// the agent protocol.
const (
	// Admin may do everything on the client API: tokens, audit, tenants,
	// workers, every job. An admin token is never limited to tenants.
	Admin Role = "admin"
	// Operator runs the cluster: tenants, workers, snapshots, and reading
	// and cancelling any job (within its tenants when scoped).
	Operator Role = "operator"
	// Submitter submits, cancels and reads jobs within its tenants.
	Submitter Role = "submitter"
	// Viewer reads jobs, logs and tenants within its tenants.
	Viewer Role = "viewer"
	// Agent joins the cluster (a join token) and runs jobs (the client
	// certificate it received at join); nothing else.
	Agent Role = "agent"
)

// Roles lists every role in order of power.
var Roles = []Role{Admin, Operator, Submitter, Viewer, Agent}

// ParseRole returns the role named s, or an error listing the roles.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !slices.Contains(Roles, r) {
		names := make([]string, len(Roles))
		for i, r := range Roles {
			names[i] = string(r)
		}
		return "", fmt.Errorf("%q is not a role; use one of %s", s, strings.Join(names, ", "))
	}
	return r, nil
}

// Permission is one kind of call.
type Permission int

// Permissions. A permission marked global needs a token that is not
// limited to tenants, since what it reaches spans every tenant.
const (
	ReadJobs      Permission = iota + 1 // get, list, watch, logs of jobs and pipelines
	Submit                              // submit jobs, arrays and pipelines
	Cancel                              // cancel jobs, arrays and pipelines
	ReadTenants                         // tenants ls/get (scoped: its own)
	ManageTenants                       // tenants set/rm
	ManageWorkers                       // workers ls/drain/undrain/revoke/rm (global)
	Snapshot                            // snapshot save (global)
	ManageTokens                        // token create/ls/revoke (global)
	ReadAudit                           // audit ls (global)
	Metrics                             // /metrics (global)
	Reflection                          // gRPC server reflection (global)
	WhoAmI                              // describe the calling token
	Join                                // agent join: trade a join token for a certificate
	RunJobs                             // the agent stream (a client certificate, not a token)
)

var permNames = map[Permission]string{
	ReadJobs: "read jobs", Submit: "submit jobs", Cancel: "cancel jobs", ReadTenants: "read tenants",
	ManageTenants: "manage tenants", ManageWorkers: "manage workers", Snapshot: "take snapshots",
	ManageTokens: "manage tokens", ReadAudit: "read the audit log", Metrics: "read metrics",
	Reflection: "use server reflection", WhoAmI: "describe itself", Join: "join agents",
	RunJobs: "run jobs as an agent",
}

func (p Permission) String() string {
	if n, ok := permNames[p]; ok {
		return n
	}
	return fmt.Sprintf("permission(%d)", int(p))
}

// Global reports whether p reaches every tenant, so that a token limited to
// tenants may not hold it.
func (p Permission) Global() bool {
	switch p {
	case ManageWorkers, Snapshot, ManageTokens, ReadAudit, Metrics, Reflection:
		return true
	}
	return false
}

// grants is the role table: what each role may do.
var grants = map[Role][]Permission{
	Admin: {ReadJobs, Submit, Cancel, ReadTenants, ManageTenants, ManageWorkers, Snapshot,
		ManageTokens, ReadAudit, Metrics, Reflection, WhoAmI},
	Operator:  {ReadJobs, Cancel, ReadTenants, ManageTenants, ManageWorkers, Snapshot, Metrics, WhoAmI},
	Submitter: {ReadJobs, Submit, Cancel, ReadTenants, WhoAmI},
	Viewer:    {ReadJobs, ReadTenants, Metrics, WhoAmI},
	Agent:     {Join, RunJobs, WhoAmI},
}

// Can reports whether the role holds p.
func (r Role) Can(p Permission) bool { return slices.Contains(grants[r], p) }

// Scopable reports whether a token of this role may be limited to tenants.
func (r Role) Scopable() bool { return r != Admin && r != Agent }
