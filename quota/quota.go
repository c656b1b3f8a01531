package quota

import "github.com/hodei-jobs/hodei/job"

// Limits caps what one tenant may hold. Zero fields are unlimited.
type Limits struct {
	MaxQueued  int           // non-terminal jobs
	MaxRunning job.Resources // resources of Scheduled and Running jobs
}

// CanRun reports whether a tenant already using running may start a job
// asking for req without passing its running limits.
func (l Limits) CanRun(running, req job.Resources) bool {
	next := running.Add(req)
	m := l.MaxRunning
	return (m.Slots == 0 || next.Slots <= m.Slots) &&
		(m.CPUMillis == 0 || next.CPUMillis <= m.CPUMillis) &&
		(m.MemoryMiB == 0 || next.MemoryMiB <= m.MemoryMiB)
}

// CanQueue reports whether a tenant holding queued non-terminal jobs may
// accept n more.
func (l Limits) CanQueue(queued, n int) bool {
	return l.MaxQueued == 0 || queued+n <= l.MaxQueued
}
