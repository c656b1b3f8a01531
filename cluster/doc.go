// Package cluster keeps the live state of a Hodei server — jobs waiting
// and running, workers and their leases, tenants, pipelines and arrays —
// and runs the loop that turns it into work: it takes a snapshot, asks
// scheduler.Decide for a plan, commits the plan through the Store in one
// transaction, publishes the committed versions to memory and only then
// sends the orders to agents.
//
//	submit ─┐                      ┌─> Store (one commit per pass)
//	report ─┼─> wake ─> Pass(now) ─┤
//	timer ──┘    Snapshot ─> Decide └─> Dispatcher (after the commit)
//
// Every change goes through the Store as a compare-and-swap on (state,
// attempt) and is published to memory only after the commit. The loop
// wakes on events (a submit, freed capacity, a worker arriving) or on its
// next timer (a backoff ending, a timeout, a lease running out) — never on
// a polling sleep.
//
// Between passes the Cluster also keeps the fair-queuing ledger (wfq) and
// the tenants' burst states (quota); both live in memory only.
//
// Jobs that no ready worker could take are parked out of their tenants'
// queues until a worker that could take them appears, so that they do
// not hide the jobs behind them from a pass's bounded walk; see park.go.
//
// Why says why a pending job waits. It is derived when asked, from the
// memory above, not by passes and not stored; see reasons.go.
//
// Tests drive Pass directly with a fake clock and the in-memory store; the
// fairness, quota and preemption simulations (sim_test.go) run fake agents
// on that clock, and property tests (property_test.go) are Go fuzz targets.
package cluster
