package quota

import (
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// Limits caps what one tenant may hold. Zero fields are unlimited.
type Limits struct {
	MaxQueued  int           // non-terminal jobs
	MaxRunning job.Resources // resources of Scheduled and Running jobs
	// Burst multiplies MaxRunning for at most BurstFor, then the tenant is
	// held at MaxRunning for Cooldown. Burst <= 1 or BurstFor 0: no burst.
	Burst    float64
	BurstFor time.Duration
	Cooldown time.Duration
}

// LimitsOf returns the limits a tenant record sets.
func LimitsOf(t *job.Tenant) Limits {
	return Limits{MaxQueued: t.MaxQueued, MaxRunning: t.MaxRunning,
		Burst: t.Burst, BurstFor: t.BurstFor, Cooldown: t.Cooldown}
}

// Phase is where a tenant is in the burst cycle.
type Phase int

const (
	// Steady: at most MaxRunning; a dispatch past it starts a burst.
	Steady Phase = iota
	// Bursting: up to Burst × MaxRunning until Until.
	Bursting
	// Cooling: held at MaxRunning until Until; no burst may start.
	Cooling
)

func (p Phase) String() string {
	switch p {
	case Bursting:
		return "bursting"
	case Cooling:
		return "cooldown"
	}
	return "none"
}

// Burst is a tenant's burst state. The zero value is Steady.
type Burst struct {
	Phase Phase
	Until time.Time // end of the burst or the cooldown
}

// At returns b as it stands at now: a burst past its end turns into a
// cooldown (or Steady without one), a cooldown past its end into Steady.
// ended reports that a burst ended, so the caller stops what runs over the
// limit.
func (l Limits) At(b Burst, now time.Time) (next Burst, ended bool) {
	if b.Phase == Bursting && !now.Before(b.Until) {
		ended = true
		b = Burst{Phase: Cooling, Until: b.Until.Add(l.Cooldown)}
	}
	if b.Phase == Cooling && !now.Before(b.Until) {
		b = Burst{}
	}
	return b, ended
}

// Bursts reports whether the limits allow a burst at all.
func (l Limits) Bursts() bool {
	return l.Burst > 1 && l.BurstFor > 0 && l.MaxRunning != (job.Resources{})
}

// Cap returns the running limit that holds in burst state b (already
// brought to now with At): MaxRunning, or Burst × MaxRunning while
// bursting. Zero fields are unlimited.
func (l Limits) Cap(b Burst) job.Resources {
	m := l.MaxRunning
	if b.Phase != Bursting || !l.Bursts() {
		return m
	}
	return m.Scale(l.Burst)
}

// Admit reports whether a tenant in burst state b (brought to now with At)
// that holds running may start a job asking for req, and the burst state
// after it does: a dispatch past MaxRunning in the Steady phase starts a
// burst that ends at now + BurstFor.
func (l Limits) Admit(b Burst, running, req job.Resources, now time.Time) (Burst, bool) {
	next := running.Add(req)
	if within(next, l.Cap(b)) {
		return b, true
	}
	if b.Phase != Steady || !l.Bursts() {
		return b, false
	}
	burst := Burst{Phase: Bursting, Until: now.Add(l.BurstFor)}
	if within(next, l.Cap(burst)) {
		return burst, true
	}
	return b, false
}

// Over reports whether running passes the limit of burst state b.
func (l Limits) Over(b Burst, running job.Resources) bool {
	return !within(running, l.Cap(b))
}

// within reports whether r stays under limit; zero fields of limit are
// unlimited.
func within(r, limit job.Resources) bool {
	return (limit.Slots == 0 || r.Slots <= limit.Slots) &&
		(limit.CPUMillis == 0 || r.CPUMillis <= limit.CPUMillis) &&
		(limit.MemoryMiB == 0 || r.MemoryMiB <= limit.MemoryMiB)
}
