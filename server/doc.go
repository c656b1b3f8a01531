// Package server wires the store and the scheduler to the outside: the
// gRPC services (JobService for clients, AgentService for agents,
// AdminService for operators, plus the standard health service and
// reflection) and HTTP (/healthz, /metrics).
//
// Domain errors become gRPC status codes in exactly one place, toStatus.
// The agent side keeps one registry entry per connected worker; it is the
// scheduler's Dispatcher, so assignments and stop orders reach agents
// without the scheduler knowing about gRPC.
//
// Audit records (audit.go) go through one writer owned by the Server: a
// bounded queue that recorders wait on when full, and a loop that stores
// everything queued in one transaction. Close stores what is still queued
// before it closes the store.
//
// Secret env values are sealed (package seal) with the key in
// DATA-DIR/secrets.key as soon as a job has its id, before the scheduler
// stores or publishes it, so memory, the database and snapshots hold only
// sealed values. They are opened in one place, assignMsg, to build the
// Assign for the agent that runs the job. Answers show them as "***" and
// nothing logs a spec or an Assign.
package server
