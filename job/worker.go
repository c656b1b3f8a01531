package job

import (
	"maps"
	"time"
)

// WorkerState is a worker's availability for new work.
type WorkerState int32

const (
	// WorkerReady: connected and accepting assignments.
	WorkerReady WorkerState = iota + 1
	// WorkerDraining: connected; its jobs finish but it gets no new ones.
	WorkerDraining
	// WorkerDown: silent past its lease, or disconnected; its jobs were failed.
	// A worker DOWN longer than the server's --worker-gc is deleted.
	WorkerDown
	// WorkerUnknown: known from the store after a server restart, not
	// connected since. Its agent's Hello makes it READY or DRAINING; one
	// lease after the restart without one, it is DOWN.
	WorkerUnknown
)

func (s WorkerState) String() string {
	switch s {
	case WorkerReady:
		return "READY"
	case WorkerDraining:
		return "DRAINING"
	case WorkerDown:
		return "DOWN"
	}
	return "UNKNOWN" // WorkerUnknown, and anything else
}

// Worker is a host running `hodei agent`. The persisted part is its identity,
// labels, capacity, whether an operator drained it and since when it is
// DOWN; the rest of its liveness is memory only.
type Worker struct {
	ID       string // stable, kept in the agent's data dir
	Name     string
	Hostname string
	Labels   map[string]string
	Capacity Resources
	Version  string // agent version
	Drained  bool   // set by `hodei workers drain`; survives restarts
	// DownSince is when the worker was declared DOWN; zero while it is
	// not. Stored, so that the age of a DOWN worker survives a restart.
	DownSince time.Time
}

// Clone returns a deep copy of w.
func (w *Worker) Clone() *Worker {
	c := *w
	c.Labels = maps.Clone(w.Labels)
	return &c
}

// LabelsMatch reports whether labels hold every pair of selector.
func LabelsMatch(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Limits of what an agent says about itself, checked by CheckWorkerInfo.
const (
	MaxWorkerText   = 255 // bytes of a worker's name, hostname or version
	MaxWorkerLabels = 64
)

// CheckWorkerInfo checks the free text an agent reports (name, hostname,
// version, labels), so that one agent cannot bloat every worker listing.
func CheckWorkerInfo(name, hostname, version string, labels map[string]string) error {
	for _, f := range []struct{ field, v string }{{"name", name}, {"hostname", hostname}, {"version", version}} {
		if len(f.v) > MaxWorkerText {
			return Invalid(f.field, "is %d bytes; at most %d", len(f.v), MaxWorkerText)
		}
		for _, c := range f.v {
			if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
				return Invalid(f.field, "must not contain control characters")
			}
		}
	}
	if len(labels) > MaxWorkerLabels {
		return Invalid("labels", "%d labels; at most %d", len(labels), MaxWorkerLabels)
	}
	return checkLabels("labels", labels)
}
