package job

import (
	"fmt"
	"math"
	"time"
)

// Limits of a tenant record, checked by Tenant.Validate.
const (
	MaxWeight      = 10000
	MaxQueuedLimit = 100_000_000
	MaxBurst       = 100
	MaxBurstFor    = 30 * 24 * time.Hour
	MaxRunAs       = 32 // bytes of Tenant.RunAs, the longest Linux user name
)

// Tenant is a persisted fair-share and quota account. Jobs name their tenant
// in Spec.Tenant; the tenant DefaultTenant always exists. Shared values are
// immutable: change a copy and store the copy.
type Tenant struct {
	Name string
	// Weight is the tenant's fair share relative to the other tenants with
	// work; default 1.
	Weight float64
	// MaxQueued caps the tenant's non-terminal jobs (pending, scheduled and
	// running). A submit past it is refused. 0: unlimited.
	MaxQueued int
	// MaxRunning caps the slots, cpu and memory held by the tenant's
	// scheduled and running jobs, checked at dispatch. Zero fields are
	// unlimited.
	MaxRunning Resources
	// Burst lets the tenant run up to Burst × MaxRunning for at most
	// BurstFor; after a burst it is held at MaxRunning for Cooldown.
	// 0 or 1: no burst.
	Burst    float64
	BurstFor time.Duration
	Cooldown time.Duration
	// Preemptible lets the scheduler stop the tenant's running jobs for a
	// tenant below its share (when the server runs with preemption on).
	Preemptible bool
	// RunAs is the user (a name or a numeric uid) the tenant's jobs run as
	// on agents running as root; "" leaves it to the agent's default user.
	// "root" (or any uid 0) also needs the agent's consent (--allow-root).
	// An agent not running as root refuses a RunAs other than itself.
	// Only admins may change it.
	RunAs string

	CreatedAt time.Time
	UpdatedAt time.Time
}

// Normalize fills defaults in place. It is idempotent.
func (t *Tenant) Normalize() {
	if t.Weight == 0 {
		t.Weight = 1
	}
}

// Bursts reports whether the tenant may exceed its running limit at all.
func (t *Tenant) Bursts() bool {
	return t.Burst > 1 && t.BurstFor > 0 && !t.MaxRunning.IsZero()
}

// RunningCap is the most the tenant's scheduled and running jobs may ever
// hold at once: MaxRunning, times Burst while it bursts. Zero fields are
// unlimited.
func (t *Tenant) RunningCap() Resources {
	if !t.Bursts() {
		return t.MaxRunning
	}
	return t.MaxRunning.Scale(t.Burst)
}

// CheckFits refuses a job of the tenant that asks for more of some
// resource than RunningCap: it could never start. The error is a
// *FieldError on resources.slots, resources.cpu_millis or
// resources.memory_mib, under steps.<step> for a pipeline's job.
func (t *Tenant) CheckFits(s *Spec) error {
	limit, r := t.RunningCap(), s.Resources
	field := func(f string) string {
		if s.Step != "" {
			return stepField(s.Step, f)
		}
		return f
	}
	switch {
	case limit.Slots > 0 && r.Slots > limit.Slots:
		return Invalid(field("resources.slots"), "%d is more than the running limit of tenant %q, %d slots: the job could never start", r.Slots, t.Name, limit.Slots)
	case limit.CPUMillis > 0 && r.CPUMillis > limit.CPUMillis:
		return Invalid(field("resources.cpu_millis"), "%d is more than the running limit of tenant %q, %d millicores: the job could never start", r.CPUMillis, t.Name, limit.CPUMillis)
	case limit.MemoryMiB > 0 && r.MemoryMiB > limit.MemoryMiB:
		return Invalid(field("resources.memory_mib"), "%d is more than the running limit of tenant %q, %d MiB: the job could never start", r.MemoryMiB, t.Name, limit.MemoryMiB)
	}
	return nil
}

// Validate checks a normalized tenant and returns a *FieldError naming the
// first field that breaks a rule.
func (t *Tenant) Validate() error {
	if !ValidTenant(t.Name) {
		return Invalid("name", "%q must be 1–63 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit", t.Name)
	}
	switch {
	case math.IsNaN(t.Weight) || t.Weight <= 0 || t.Weight > MaxWeight:
		return Invalid("weight", "%g must be more than 0 and at most %d", t.Weight, MaxWeight)
	case t.MaxQueued < 0 || t.MaxQueued > MaxQueuedLimit:
		return Invalid("max_queued", "%d must be between 0 (unlimited) and %d", t.MaxQueued, MaxQueuedLimit)
	case t.MaxRunning.Slots < 0:
		return Invalid("max_running", "must not be negative (0 means unlimited)")
	case t.MaxRunning.CPUMillis < 0:
		return Invalid("cpu", "must not be negative (0 means unlimited)")
	case t.MaxRunning.MemoryMiB < 0:
		return Invalid("memory", "must not be negative (0 means unlimited)")
	case math.IsNaN(t.Burst) || t.Burst < 0 || t.Burst > MaxBurst || (t.Burst > 0 && t.Burst < 1):
		return Invalid("burst", "%g must be 0 (none) or between 1 and %d", t.Burst, MaxBurst)
	case t.BurstFor < 0 || t.BurstFor > MaxBurstFor:
		return Invalid("burst_for", "%s must be between 0 and %s", t.BurstFor, MaxBurstFor)
	case t.Cooldown < 0 || t.Cooldown > MaxBurstFor:
		return Invalid("cooldown", "%s must be between 0 and %s", t.Cooldown, MaxBurstFor)
	case t.Burst > 1 && t.MaxRunning.IsZero():
		return Invalid("burst", "needs a running limit (max_running, cpu or memory) to multiply")
	case t.Burst > 1 && t.BurstFor == 0:
		return Invalid("burst_for", "must be more than 0 when burst is %g", t.Burst)
	case t.Burst > 1 && t.Cooldown == 0:
		return Invalid("cooldown", "must be more than 0 when burst is %g: a burst is followed by a cooldown at the limit", t.Burst)
	case t.RunAs != "" && !ValidRunAs(t.RunAs):
		return Invalid("run_as", "%q must be a user name (letters, digits, '.', '_', '-', '@', a final '$'; not starting with '-') or a numeric uid, at most %d bytes", t.RunAs, MaxRunAs)
	}
	return nil
}

// ValidRunAs reports whether s is a plausible user name or numeric uid for
// Tenant.RunAs: 1–MaxRunAs bytes of ASCII letters, digits, '.', '_', '-'
// and '@', optionally ending in '$' (as Samba machine accounts do), not
// starting with '-' and not "." or "..". Whether the user exists is for
// the agent to find out: users differ from host to host.
func ValidRunAs(s string) bool {
	if s == "" || len(s) > MaxRunAs || s[0] == '-' || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-', c == '@':
		case c == '$' && i == len(s)-1 && i > 0:
		default:
			return false
		}
	}
	return true
}

// UnknownTenant is the error of a submit to a tenant that does not exist.
// It wraps ErrNotFound.
func UnknownTenant(name string) error {
	return fmt.Errorf("tenant %q does not exist; create it with \"hodei tenants set %s\" or run the server with --auto-tenants: %w", name, name, ErrNotFound)
}

// OverQueued is the error of a submit past a tenant's MaxQueued. It wraps
// ErrExhausted.
func OverQueued(name string, limit, queued, adding int) error {
	jobs := "jobs"
	if queued == 1 {
		jobs = "job"
	}
	return fmt.Errorf("tenant %q is at its max-queued limit of %d (%d %s queued, %d more asked for): %w",
		name, limit, queued, jobs, adding, ErrExhausted)
}

// ErrDefaultTenant is the error of deleting DefaultTenant. It wraps
// ErrConflict.
var ErrDefaultTenant = fmt.Errorf("tenant %q: the default tenant cannot be deleted: %w", DefaultTenant, ErrConflict)

// TenantBusy is the error of deleting a tenant that still has n jobs that
// are not finished. It wraps ErrConflict.
func TenantBusy(name string, n int) error {
	what, them := "jobs that are", "them"
	if n == 1 {
		what, them = "job that is", "it"
	}
	return fmt.Errorf("tenant %q has %d %s not finished; cancel %s or wait: %w", name, n, what, them, ErrConflict)
}

// Admit checks new jobs against their tenants as a store's insert does:
// every tenant must exist, every job must fit its tenant's running limit
// (CheckFits), and the tenant's non-terminal jobs plus the new ones must
// stay within its MaxQueued. lookup returns a tenant's record (nil when it
// does not exist) and its count of non-terminal jobs; it is called once per
// tenant. Admit returns the number of new jobs by tenant; the first job
// that fails decides the error: UnknownTenant, a *FieldError from
// CheckFits, or OverQueued.
func Admit(jobs []*Job, lookup func(name string) (*Tenant, int, error)) (map[string]int, error) {
	// A batch is mostly one tenant's: runs of one name cost no map work.
	adding := make(map[string]int)
	for i := 0; i < len(jobs); {
		name, n := jobs[i].Spec.Tenant, 1
		for i+n < len(jobs) && jobs[i+n].Spec.Tenant == name {
			n++
		}
		adding[name] += n
		i += n
	}
	type looked struct {
		t      *Tenant
		queued int
	}
	tenants := make(map[string]looked, len(adding))
	var (
		lastName string
		last     looked
	)
	for _, j := range jobs {
		name := j.Spec.Tenant
		lk, ok := last, last.t != nil && name == lastName
		if !ok {
			lk, ok = tenants[name]
		}
		if !ok {
			t, queued, err := lookup(name)
			switch {
			case err != nil:
				return nil, err
			case t == nil:
				return nil, UnknownTenant(name)
			}
			lk = looked{t, queued}
			tenants[name] = lk
		}
		lastName, last = name, lk
		if err := lk.t.CheckFits(&j.Spec); err != nil {
			return nil, err
		}
		if !ok && lk.t.MaxQueued > 0 && lk.queued+adding[name] > lk.t.MaxQueued {
			return nil, OverQueued(name, lk.t.MaxQueued, lk.queued, adding[name])
		}
	}
	return adding, nil
}
