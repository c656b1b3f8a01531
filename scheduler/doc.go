// Package scheduler decides which pending job runs on which worker, and
// keeps the live state that decision needs.
//
// It has two halves. Decide is the pure core: a Snapshot and the time in, a
// Plan out, with no I/O, goroutines or clock. Scheduler is the shell around
// it: it holds jobs and workers in lock-free maps (copy-on-write values),
// applies every change through the Store as a compare-and-swap on (state,
// attempt) and publishes to memory only after the commit, and runs one
// dispatch loop that wakes on events (a submit, freed capacity, a worker
// arriving) or on its next timer (a backoff ending, a timeout, a lease
// running out) — never on a polling sleep.
//
//	submit ─┐                      ┌─> Store.Apply (one commit per pass)
//	report ─┼─> wake ─> Pass(now) ─┤
//	timer ──┘    Snapshot ─> Decide └─> Dispatcher.Assign (after the commit)
//
// Between passes the shell also keeps the fair-queuing ledger (wfq) and the
// tenants' burst states (quota); both live in memory only.
//
// Pipelines and arrays are ordinary jobs to the passes: a pipeline is
// expanded into jobs that depend on the jobs of the steps they need, and a
// pending job with dependencies waits in a blocked set until the last of
// them completes and releases it; an array's limit caps how many of its
// jobs a pass even considers.
//
// Tests drive Pass directly with a fake clock and the in-memory store; the
// fairness, quota and preemption simulations (sim_test.go) run fake agents
// on that clock, and property tests (property_test.go) are Go fuzz targets.
package scheduler
