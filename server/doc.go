// Package server wires the store and the scheduler to the outside: the
// gRPC services (JobService for clients, AgentService for agents,
// AdminService for operators, plus the standard health service and
// reflection) and HTTP (/healthz, /metrics).
//
// Domain errors become gRPC status codes in exactly one place, toStatus.
// The agent side keeps one registry entry per connected worker; it is the
// scheduler's Dispatcher, so assignments and stop orders reach agents
// without the scheduler knowing about gRPC.
package server
