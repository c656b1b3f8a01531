package job

import (
	"fmt"
	"time"
)

// Limits of a schedule, checked by Schedule.Validate.
const (
	// MaxCatchUp is the most missed ticks catch-up "all" fires after
	// downtime; older ones are skipped.
	MaxCatchUp = 100
	// MaxStartingDeadline bounds Schedule.StartingDeadline.
	MaxStartingDeadline = 30 * 24 * time.Hour
)

// Labels and env set on every job a schedule submits.
const (
	// CronLabel is the label that names the schedule of a job
	// (`jobs ls --label hodei.cron=NAME`).
	CronLabel = "hodei.cron"
	// CronTimeEnv holds the tick time the job was submitted for, in
	// RFC 3339 with the schedule's zone offset: a tick's job is told apart
	// from another tick's by it.
	CronTimeEnv = "HODEI_CRON_TIME"
	// CronNameEnv holds the schedule's name.
	CronNameEnv = "HODEI_CRON_NAME"
)

// Overlap says what a tick does while the job (or pipeline) of the
// schedule's previous tick has not ended.
type Overlap int

// The overlap policies; the zero value is OverlapAllow.
const (
	OverlapAllow   Overlap = iota // submit anyway
	OverlapForbid                 // skip the tick
	OverlapReplace                // cancel the previous one, then submit
)

var overlapNames = []string{"allow", "forbid", "replace"}

func (o Overlap) String() string { return enumName(overlapNames, int(o)) }

// ParseOverlap returns the policy named s ("" is allow), or an error
// listing the names.
func ParseOverlap(s string) (Overlap, error) {
	i, err := parseEnum(overlapNames, s)
	return Overlap(i), err
}

// CatchUp says what a schedule does with the ticks it missed while the
// server was down (ticks due before the server started).
type CatchUp int

// The catch-up policies; the zero value is CatchUpNone.
const (
	CatchUpNone CatchUp = iota // skip them; the next tick is the first after now
	CatchUpOne                 // fire once, for the latest of them
	CatchUpAll                 // fire each of them, at most MaxCatchUp (the latest)
)

var catchUpNames = []string{"none", "one", "all"}

func (c CatchUp) String() string { return enumName(catchUpNames, int(c)) }

// ParseCatchUp returns the policy named s ("" is none), or an error
// listing the names.
func ParseCatchUp(s string) (CatchUp, error) {
	i, err := parseEnum(catchUpNames, s)
	return CatchUp(i), err
}

func enumName(names []string, i int) string {
	if i >= 0 && i < len(names) {
		return names[i]
	}
	return fmt.Sprintf("%d", i)
}

func parseEnum(names []string, s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	for i, n := range names {
		if n == s {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%q is not one of %v", s, names)
}

// Schedule is a cron schedule: a job spec (or a pipeline) submitted at each
// tick of a cron expression in a time zone. It is keyed by (Tenant, Name).
// Shared values are immutable: change a copy and store the copy.
type Schedule struct {
	Name   string // a step-like name: [A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?
	Tenant string // default DefaultTenant
	// Expr is the cron expression (see the cron package); TimeZone the
	// IANA zone its wall times are read in ("" is UTC).
	Expr     string
	TimeZone string
	Overlap  Overlap
	CatchUp  CatchUp
	// StartingDeadline: a tick fired later than its time by more than
	// this is skipped. 0: no deadline.
	StartingDeadline time.Duration
	Paused           bool

	// Spec is what each tick submits, unless Pipeline is set: then each
	// tick runs that pipeline.
	Spec     Spec
	Pipeline *PipelineSpec

	CreatedAt time.Time
	// NextRun is the time of the next tick to fire; it moves on in the
	// commit that fires (or skips) its tick.
	NextRun time.Time
	// LastTick is the time of the last tick fired or skipped; LastRun the
	// time a job (or pipeline) was last submitted, and LastJob its id.
	LastTick time.Time
	LastRun  time.Time
	LastJob  string
	// Skipped counts the ticks skipped (overlap, starting deadline,
	// catch-up, a refused submit); LastSkip says why the last one was.
	Skipped  int64
	LastSkip string

	// Version is bumped by every write; writes compare it.
	Version uint64
}

// Key is the schedule's store key: its tenant and name.
func (s *Schedule) Key() string { return ScheduleKey(s.Tenant, s.Name) }

// ScheduleKey is the store key of the schedule name of tenant.
func ScheduleKey(tenant, name string) string { return tenant + "/" + name }

// Validate checks the fields the domain knows the rules of (not the
// expression or the zone, which the cron package parses): a *FieldError
// naming "name", "tenant" or "starting_deadline".
func (s *Schedule) Validate() error {
	if !validStepName(s.Name) {
		return Invalid("name", "%q must be 1 to 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", s.Name)
	}
	if !ValidTenant(s.Tenant) {
		return Invalid("tenant", "%q is not a tenant name", s.Tenant)
	}
	if s.StartingDeadline < 0 || s.StartingDeadline > MaxStartingDeadline {
		return Invalid("starting_deadline", "%s must be between 0 (none) and %s", s.StartingDeadline, MaxStartingDeadline)
	}
	return nil
}

// CheckSchedule is the store's check of a schedule it is given: not nil,
// with a name and a tenant.
func CheckSchedule(s *Schedule) error {
	if s == nil || s.Name == "" || s.Tenant == "" {
		return Invalid("schedule", "a schedule needs a name and a tenant")
	}
	return nil
}
