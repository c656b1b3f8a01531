// Package scheduler is the pure decision core: Decide takes a Snapshot of
// the waiting work, the workers and the tenants, and the time, and returns
// one Plan. It does no I/O, starts no goroutine, reads no clock and logs
// nothing, so a decision can be replayed exactly in tests and benchmarks.
//
// Between tenants Decide follows weighted fair queuing (package wfq) on
// the tenants' tags; within a tenant, effective priority (priority raised
// by age and by an approaching deadline, see EffectivePriority), then age.
// Quotas and bursts come from package quota. Placement bin-packs or
// spreads; preemption picks victims among preemptible running work.
//
// Unfit, NeverFits, TenantLimit and Reserved say why a waiting job waits
// (a Why), from the same kind of values: the cluster asks them when
// someone reads a pending job, never during a pass (a pass only says, in
// Plan.Held, which worker it kept for which job). Placeable is the
// cluster's test for the jobs it keeps out of its queues: no ready worker
// could ever take them.
//
// The live state that feeds it, and the loop that commits its plans, are
// package cluster's.
package scheduler
