package cron

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

func mustParse(t *testing.T, expr, tz string) Expr {
	t.Helper()
	e, err := Parse(expr, tz)
	if err != nil {
		t.Fatalf("Parse(%q, %q): %v", expr, tz, err)
	}
	return e
}

// ticks returns the ticks of e in (from, to], formatted in e's zone.
func ticks(e Expr, from, to time.Time) []string {
	var out []string
	for t := e.Next(from); !t.IsZero() && !t.After(to); t = e.Next(t) {
		out = append(out, t.Format("2006-01-02 15:04:05 MST"))
	}
	return out
}

func TestNextDST(t *testing.T) {
	madrid, err := time.LoadLocation("Europe/Madrid")
	if err != nil {
		t.Fatal(err)
	}
	spring := func(h, m int) time.Time { return time.Date(2026, 3, 28, h, m, 0, 0, madrid) }
	fall := func(h, m int) time.Time { return time.Date(2026, 10, 24, h, m, 0, 0, madrid) }
	tests := []struct {
		name     string
		expr     string
		from, to time.Time
		want     []string
	}{
		{"DailyInGapFiresAtGapEnd", "30 2 * * *", spring(0, 0), spring(0, 0).Add(72 * time.Hour), []string{
			"2026-03-28 02:30:00 CET", "2026-03-29 03:00:00 CEST", "2026-03-30 02:30:00 CEST",
		}},
		{"DailyInRepeatFiresOnce", "30 2 * * *", fall(0, 0), fall(0, 0).Add(72 * time.Hour), []string{
			"2026-10-24 02:30:00 CEST", "2026-10-25 02:30:00 CEST", "2026-10-26 02:30:00 CET",
		}},
		{"HourlyOverGap", "0 * * * *", spring(23, 30), spring(23, 30).Add(5 * time.Hour), []string{
			"2026-03-29 00:00:00 CET", "2026-03-29 01:00:00 CET", "2026-03-29 03:00:00 CEST", "2026-03-29 04:00:00 CEST", "2026-03-29 05:00:00 CEST",
		}},
		{"HourlyOverRepeat", "0 * * * *", fall(23, 30), fall(23, 30).Add(5 * time.Hour), []string{
			"2026-10-25 00:00:00 CEST", "2026-10-25 01:00:00 CEST", "2026-10-25 02:00:00 CEST",
			"2026-10-25 02:00:00 CET", "2026-10-25 03:00:00 CET",
		}},
		{"FixedHoursAroundGap", "15 1-3 * * *", spring(12, 0), spring(12, 0).Add(24 * time.Hour), []string{
			"2026-03-29 01:15:00 CET", "2026-03-29 03:00:00 CEST", "2026-03-29 03:15:00 CEST",
		}},
		{"OutsideTheChangesUnchanged", "0 2 * * *", spring(0, 0).AddDate(0, 0, -10), spring(0, 0).AddDate(0, 0, -8), []string{
			"2026-03-18 02:00:00 CET", "2026-03-19 02:00:00 CET",
		}},
		{"EveryIsRealTime", "@every 90m", spring(23, 0), spring(23, 0).Add(5 * time.Hour), []string{
			"2026-03-29 00:30:00 CET", "2026-03-29 03:00:00 CEST", "2026-03-29 04:30:00 CEST",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustParse(t, tt.expr, "Europe/Madrid")
			got := ticks(e, tt.from, tt.to)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("ticks of %q:\n got %q\nwant %q", tt.expr, got, tt.want)
			}
		})
	}
}

func TestNextSecondsAndUTC(t *testing.T) {
	e := mustParse(t, "*/2 * * * * *", "")
	from := time.Date(2026, 1, 1, 0, 0, 0, 500, time.UTC)
	if got := ticks(e, from, from.Add(5*time.Second)); strings.Join(got, ",") != "2026-01-01 00:00:02 UTC,2026-01-01 00:00:04 UTC" {
		t.Fatalf("got %v", got)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, expr, tz, field, text string
	}{
		{"BadField", "61 * * * *", "", "schedule", "end of range (61) above maximum (59)"},
		{"TooFew", "* *", "", "schedule", "expected 5 to 6 fields"},
		{"Empty", "", "", "schedule", "empty spec"},
		{"TZInExpr", "CRON_TZ=UTC 0 * * * *", "", "schedule", "--timezone"},
		{"Never", "0 0 30 2 *", "", "schedule", "never fires"},
		{"UnknownZone", "0 * * * *", "Europe/Atlantis", "timezone", "not a time zone"},
		{"LocalZone", "0 * * * *", "Local", "timezone", "not a time zone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.expr, tt.tz)
			var fe *job.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !strings.Contains(fe.Rule, tt.text) {
				t.Fatalf("Parse(%q, %q) = %v, want a field error on %s saying %q", tt.expr, tt.tz, err, tt.field, tt.text)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	e := mustParse(t, "0 * * * *", "Europe/Madrid")
	h := func(n int) time.Time {
		return time.Date(2026, 3, 28, 22, 0, 0, 0, time.UTC).Add(time.Duration(n) * time.Hour)
	}
	// The server was down from before h(0) to h(4)+10m (the hour of the
	// spring-forward change included); it started at h(4)+5m.
	now, started := h(4).Add(10*time.Minute), h(4).Add(5*time.Minute)
	tests := []struct {
		name     string
		catchUp  job.CatchUp
		deadline time.Duration
		next     time.Time
		now      time.Time
		fire     []time.Time
		skipped  int
	}{
		{"None", job.CatchUpNone, 0, h(0), now, nil, 5},
		{"One", job.CatchUpOne, 0, h(0), now, []time.Time{h(4)}, 4},
		{"All", job.CatchUpAll, 0, h(0), now, []time.Time{h(0), h(1), h(2), h(3), h(4)}, 0},
		{"AllWithDeadline", job.CatchUpAll, 90 * time.Minute, h(0), now, []time.Time{h(3), h(4)}, 3},
		{"OneTooLate", job.CatchUpOne, 5 * time.Minute, h(0), now, nil, 5},
		{"LiveTickFires", job.CatchUpNone, 0, h(5), h(5).Add(time.Millisecond), []time.Time{h(5)}, 0},
		{"LiveTickLate", job.CatchUpNone, time.Second, h(5), h(5).Add(2 * time.Second), nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Plan(e, tt.next, tt.now, started, tt.catchUp, tt.deadline)
			if len(d.Fire) != len(tt.fire) || d.Skipped != tt.skipped {
				t.Fatalf("fire %v skipped %d (%s), want fire %v skipped %d", d.Fire, d.Skipped, d.SkipWhy, tt.fire, tt.skipped)
			}
			for i := range d.Fire {
				if !d.Fire[i].Equal(tt.fire[i]) {
					t.Fatalf("fire %v, want %v", d.Fire, tt.fire)
				}
			}
			if want := e.Next(tt.now); !d.NextTick.Equal(want) {
				t.Fatalf("next %v, want %v", d.NextTick, want)
			}
		})
	}
}

func TestPlanBounded(t *testing.T) {
	e := mustParse(t, "@every 1s", "")
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start.Add(48 * time.Hour)
	d := Plan(e, start, now, now, job.CatchUpAll, 0)
	if len(d.Fire) != job.MaxCatchUp || d.Skipped < maxWalk-job.MaxCatchUp || !d.NextTick.After(now) {
		t.Fatalf("fired %d, skipped %d, next %v", len(d.Fire), d.Skipped, d.NextTick)
	}
}
