package job

import (
	"slices"
	"strings"
	"time"
)

// Usage accounting: what ended attempts consumed, kept after their jobs are
// deleted, as one record per attempt and daily roll-ups (store/usage.go).

// UsageGroup is what a usage query sums by.
type UsageGroup int

// Groupings of a usage query.
const (
	ByTenant UsageGroup = iota // one row per tenant (the default)
	ByDay                      // one row per UTC day
	ByUser                     // one row per owner (the submitting token's name)
	ByLabel                    // one row per value of the label UsageQuery.GroupKey
)

// String is the group's name as --group-by spells it.
func (g UsageGroup) String() string {
	switch g {
	case ByTenant:
		return "tenant"
	case ByDay:
		return "day"
	case ByUser:
		return "user"
	case ByLabel:
		return "label"
	}
	return "group(?)"
}

// ParseUsageGroup parses "tenant", "day", "user" or "label:KEY" ("" is
// tenant). It fails with a *FieldError on field.
func ParseUsageGroup(field, s string) (UsageGroup, string, error) {
	switch s {
	case "", "tenant":
		return ByTenant, "", nil
	case "day":
		return ByDay, "", nil
	case "user":
		return ByUser, "", nil
	}
	if key, ok := strings.CutPrefix(s, "label:"); ok {
		if !validLabelKey(key) {
			return 0, "", Invalid(field, "label:KEY needs a label key (1–63 letters, digits, '.', '_', '-' or '/'), got %q", s)
		}
		return ByLabel, key, nil
	}
	return 0, "", Invalid(field, "must be tenant, day, user or label:KEY, not %q", s)
}

// MaxUsageDays bounds the days a usage query spans (its To − From + 1).
const MaxUsageDays = 3660

// UsageQuery selects and groups usage. From and To are UTC days (their time
// of day is ignored), both included.
type UsageQuery struct {
	// Tenants limits the answer to these tenants; empty: every tenant.
	Tenants []string
	// LabelKey and LabelValue, when LabelKey is set, keep only the
	// attempts of jobs with that label.
	LabelKey, LabelValue string
	From, To             time.Time
	Group                UsageGroup
	GroupKey             string // the label key of ByLabel
}

// Validate checks q; errors are *FieldError naming the request's field
// (group_by, label, from, to).
func (q *UsageQuery) Validate() error {
	if q.From.IsZero() || q.To.IsZero() {
		return Invalid("from", "a usage query needs both from and to days")
	}
	from, to := UsageDay(q.From), UsageDay(q.To)
	switch {
	case to < from:
		return Invalid("to", "%s is before from %s", q.To.UTC().Format(time.DateOnly), q.From.UTC().Format(time.DateOnly))
	case to-from+1 > MaxUsageDays:
		return Invalid("from", "a query spans at most %d days, not %d", MaxUsageDays, to-from+1)
	}
	if q.LabelKey != "" && !validLabelKey(q.LabelKey) {
		return Invalid("label", "key %q must be 1–63 letters, digits, '.', '_', '-' or '/'", q.LabelKey)
	}
	for _, t := range q.Tenants {
		if !ValidTenant(t) {
			return Invalid("tenant", "%q is not a tenant name", t)
		}
	}
	// The roll-ups are kept per tenant, per user and per label: a label
	// filter combines with grouping by tenant, day or that label only.
	if q.LabelKey != "" {
		switch {
		case q.Group == ByUser:
			return Invalid("group_by", "user cannot be combined with a label filter: the roll-ups are per user or per label, not both (list the attempts instead)")
		case q.Group == ByLabel && q.GroupKey != q.LabelKey:
			return Invalid("group_by", "label:%s cannot be combined with the label filter %s=%s: the roll-ups are per label, not per pair of labels (list the attempts instead)",
				q.GroupKey, q.LabelKey, q.LabelValue)
		}
	}
	return nil
}

// UsageDay is t's UTC day, counted from 1970-01-01.
func UsageDay(t time.Time) int64 {
	return t.UTC().Truncate(24*time.Hour).Unix() / 86400
}

// DayTime is the start of UTC day d.
func DayTime(d int64) time.Time { return time.Unix(d*86400, 0).UTC() }

// UsageSums adds up attempts. Times are whole microseconds, each
// attempt's truncated before it is added, so that sums over per-attempt
// records and over roll-ups agree exactly, and a year of a large cluster
// (thousands of years of slot-time) does not overflow them.
type UsageSums struct {
	Attempts   int64
	WallMicros int64
	CPUMicros  int64
	SlotMicros int64 // slots × wall
	MaxRSSKiB  int64 // the largest of the attempts'
}

// Add adds o to s.
func (s *UsageSums) Add(o UsageSums) {
	s.Attempts += o.Attempts
	s.WallMicros += o.WallMicros
	s.CPUMicros += o.CPUMicros
	s.SlotMicros += o.SlotMicros
	s.MaxRSSKiB = max(s.MaxRSSKiB, o.MaxRSSKiB)
}

// UsageRow is one group of a usage answer.
type UsageRow struct {
	// Group is the tenant, the day (YYYY-MM-DD), the user or the label's
	// value; "" for attempts of jobs without the label, or without an
	// owner.
	Group string
	UsageSums
}

// AttemptUsage is the usage record of one ended attempt.
type AttemptUsage struct {
	JobID      string
	Attempt    int
	Name       string
	Tenant     string
	Owner      string
	Labels     map[string]string
	Worker     string
	Slots      int64
	StartedAt  time.Time // zero when it never started
	FinishedAt time.Time
	State      State // the state the attempt's end left the job in
	ExitCode   int
	Usage      Usage
}

// Sums is a one-attempt UsageSums, in whole microseconds.
func (a *AttemptUsage) Sums() UsageSums {
	return UsageSums{Attempts: 1, WallMicros: a.Usage.Wall.Microseconds(), CPUMicros: a.Usage.CPUTime.Microseconds(),
		SlotMicros: a.Usage.SlotTime(a.Slots).Microseconds(), MaxRSSKiB: a.Usage.MaxRSSKiB}
}

// Matches reports whether a is selected by q's tenants, label and days.
func (q *UsageQuery) Matches(a *AttemptUsage) bool {
	if len(q.Tenants) > 0 && !slices.Contains(q.Tenants, a.Tenant) {
		return false
	}
	if q.LabelKey != "" {
		if v, ok := a.Labels[q.LabelKey]; !ok || v != q.LabelValue {
			return false
		}
	}
	d := UsageDay(a.FinishedAt)
	return d >= UsageDay(q.From) && d <= UsageDay(q.To)
}
