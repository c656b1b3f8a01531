// Package server wires the store and the scheduler to the outside: the
// gRPC services (JobService for clients, AgentService for agents,
// AdminService for operators, plus the standard health service and
// reflection) and HTTP (/healthz, /metrics).
//
// Domain errors become gRPC status codes in exactly one place, toStatus.
// The agent side keeps one registry entry per connected worker; it is the
// scheduler's Dispatcher, so assignments and stop orders reach agents
// without the scheduler knowing about gRPC. An idle agent's stream holds no
// goroutine of ours: its handler receives (agents.go), orders queue in an
// outbox whose sender runs only while some wait (outbox.go), and every
// stream's context can be ended from any goroutine, which also ends a
// pending Recv (abort.go).
//
// Every call is authenticated and authorized in one place per transport:
// the gRPC interceptors in auth.go, against the method → permission table
// in authz.go, and requireHTTP for the HTTP listener. Handlers see the
// caller's auth.Identity in their context and use it only for tenant scope
// (scope.go): objects of other tenants are not found. Agents are known by
// the client certificate they got at join (join.go); its worker id is the
// only one their stream may speak for. secure.go sets up the token key, the
// bootstrap admin token, the CA and the server's certificate, and refuses
// to start when a file the database depends on is missing.
//
// Audit records (audit.go) go through one writer owned by the Server: a
// bounded queue that recorders wait on when full (at most 5 s), and a loop
// that lets records gather briefly and stores them in one transaction.
// Close stores what is still queued before it closes the store. Each
// record's text is clipped and each peer's denials are budgeted
// (auditlimit.go), so refused calls cannot fill the disk.
//
// Secret env values are sealed (package seal) with the key in
// DATA-DIR/secrets.key as soon as a job has its id, before the scheduler
// stores or publishes it, so memory, the database and snapshots hold only
// sealed values. They are opened in one place, assignMsg, to build the
// Assign for the agent that runs the job. Answers show them as "***" and
// nothing logs a spec or an Assign.
package server
