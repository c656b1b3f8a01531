package job

import (
	"errors"
	"testing"
	"time"
)

func TestAuditFilter(t *testing.T) {
	t0 := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	e := &AuditEntry{Time: t0, TokenName: "ci", Action: "/hodei.v1.JobService/Submit"}
	for _, tc := range []struct {
		name string
		f    AuditFilter
		want bool
	}{
		{"Zero", AuditFilter{}, true},
		{"SinceInclusive", AuditFilter{Since: t0}, true},
		{"SinceAfter", AuditFilter{Since: t0.Add(time.Nanosecond)}, false},
		{"Actor", AuditFilter{Actor: "ci"}, true},
		{"ActorExact", AuditFilter{Actor: "c"}, false},
		{"ActionSubstring", AuditFilter{Action: "JobService/"}, true},
		{"ActionIgnoresCase", AuditFilter{Action: "SUBMIT"}, true},
		{"ActionOther", AuditFilter{Action: "Cancel"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.Match(e); got != tc.want {
				t.Errorf("Match = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("Normalize", func(t *testing.T) {
		f := AuditFilter{}
		f.Normalize()
		f.Normalize()
		if f.Limit != DefaultAuditLimit {
			t.Errorf("limit = %d, want %d", f.Limit, DefaultAuditLimit)
		}
	})
	for _, tc := range []struct {
		name  string
		limit int
		ok    bool
	}{
		{"OK", MaxAuditLimit, true},
		{"Default", 0, true},
		{"ErrNegative", -1, false},
		{"ErrTooMany", MaxAuditLimit + 1, false},
	} {
		t.Run("Validate"+tc.name, func(t *testing.T) {
			err := (&AuditFilter{Limit: tc.limit}).Validate()
			var fe *FieldError
			if tc.ok != (err == nil) || (err != nil && (!errors.As(err, &fe) || fe.Field != "limit")) {
				t.Errorf("Validate(limit %d) = %v", tc.limit, err)
			}
		})
	}
}
