// Package agent is Hodei's worker side: it dials the server, registers and
// heartbeats, runs each assigned job attempt in its own session (inside a PTY
// unless the spec asks for pipes), and streams output and outcome back.
//
// Output goes through a spool per stream: an append-only file under the
// agent's data dir and the offsets the server has acknowledged. When the
// server falls behind, the spool stops taking bytes, the PTY stops being read
// and the job's own writes block: output is delayed, never dropped. Values of
// secret env vars are masked before they reach the spool, in the forms a job
// commonly prints them in (see secretForms); what a job does to a value
// beyond those (other encodings, compression, printing it in pieces) is not.
//
// Input from the server (what `hodei run` or `hodei attach` sends) goes to the
// job's PTY, or to its stdin pipe without one, through a buffer of at most
// InputWindow bytes per attempt and credits that tell the server how much it
// may send (input.go); a job that does not read its input stops the sender.
//
// Jobs run in a supervisor process (supervisor.go; `hodei agent supervise`),
// one per data dir, that holds their PTYs, process groups, spools and
// results and outlives the agent's network process: an agent that stops,
// dies or is upgraded leaves its jobs running, and the next agent on the
// data dir reattaches them (supervisors.go) over a unix socket protocol
// (supproto.go), reading their output from the spool files.
//
// Caveat: a supervisor that dies takes all its agent's jobs with it (their
// terminals close); they fail and retry per their policy. Linux only.
package agent
