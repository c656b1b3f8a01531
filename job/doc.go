// Package job holds Hodei's domain: a Job, its Spec, the States it moves
// through and the one table that says which moves are legal; Tenants with
// their limits and the queued-limit admission; Pipelines (their validation
// and expansion into jobs) and job arrays; and the sentinel errors every
// other package maps to its transport.
//
// It imports only the standard library so that the scheduler, the store, the
// server and the agent can all depend on it without depending on each other.
// Values of these types are treated as immutable once they are shared: code
// that changes a Job works on a Clone.
package job
