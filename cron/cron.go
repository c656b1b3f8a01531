// Package cron parses cron expressions and computes when a schedule fires:
// the next tick after a time, in a time zone, and what a schedule due at a
// moment fires or skips under its catch-up policy and starting deadline.
//
// It is pure: no clock, no I/O, no goroutines. Times come in as values, so
// every rule (daylight saving changes included) is tested with a fake
// clock. Expressions are parsed by github.com/robfig/cron/v3; the zone
// database is embedded (time/tzdata), so a host without /usr/share/zoneinfo
// reads zones the same way.
//
// # Expressions
//
// Five fields (minute hour day-of-month month day-of-week), or six with
// seconds first, or a descriptor: @yearly, @monthly, @weekly, @daily,
// @hourly, @every DURATION (a fixed period, at least 1s, counted from the
// previous tick). The zone is given apart (never CRON_TZ= in the
// expression).
//
// # Daylight saving
//
// Fields match the wall clock of the schedule's zone, with two rules for
// the hours a daylight-saving change skips or repeats:
//
//   - A schedule whose hour field is `*` matches every wall time that
//     exists, once per real occurrence: "0 * * * *" fires at 01:00 CET then
//     03:00 CEST on a spring-forward day (02:00 does not exist), and at
//     02:00 CEST, 02:00 CET, 03:00 CET on a fall-back day (every real hour).
//   - A schedule with fixed hours fires once per matching wall time of a
//     day: a time in the spring-forward gap fires when the gap ends ("30 2
//   - * *" at 03:00 CEST on 29 March 2026 in Europe/Madrid), and a time
//     repeated by the fall-back fires at its first occurrence only (02:30
//     CEST on 25 October 2026, not again at 02:30 CET).
//
// robfig/cron alone skips the gap and fires the repeated time twice; Next
// adjusts its answer for fixed-hour schedules.
package cron

import (
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // zones on hosts without a zoneinfo database

	rcron "github.com/robfig/cron/v3"

	"github.com/hodei-jobs/hodei/job"
)

var parser = rcron.NewParser(rcron.SecondOptional | rcron.Minute | rcron.Hour | rcron.Dom |
	rcron.Month | rcron.Dow | rcron.Descriptor)

// Expr is a parsed cron expression in a zone. Its zero value is not
// usable; make one with Parse. It is immutable and safe for concurrent use.
type Expr struct {
	sched rcron.Schedule
	loc   *time.Location
	// fixed: a spec schedule whose hour field is not `*` (the DST rules
	// differ, see the package doc); utc is the same schedule read in UTC,
	// to ask whether wall times in a gap match.
	fixed bool
	utc   *rcron.SpecSchedule
}

// Parse parses expr in the IANA zone tz ("" is UTC). Errors are
// *job.FieldError on "schedule" (with the parser's message) or "timezone".
func Parse(expr, tz string) (Expr, error) {
	loc := time.UTC
	if tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil || strings.EqualFold(tz, "local") {
			return Expr{}, job.Invalid("timezone", "%q is not a time zone; use an IANA name such as Europe/Madrid or UTC", tz)
		}
		loc = l
	}
	trimmed := strings.TrimSpace(expr)
	if strings.HasPrefix(trimmed, "TZ=") || strings.HasPrefix(trimmed, "CRON_TZ=") {
		return Expr{}, job.Invalid("schedule", "%q: give the time zone with timezone (--timezone), not in the expression", expr)
	}
	sched, err := parser.Parse(trimmed)
	if err != nil {
		return Expr{}, job.Invalid("schedule", "%q: %s (5 fields: minute hour day-of-month month day-of-week; 6 with seconds first; or @hourly, @daily, @every 10m …)", expr, err)
	}
	e := Expr{sched: sched, loc: loc}
	switch s := sched.(type) {
	case *rcron.SpecSchedule:
		s.Location = loc
		const starBit = 1 << 63
		e.fixed = s.Hour&starBit == 0
		u := *s
		u.Location = time.UTC
		e.utc = &u
		if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, loc)).IsZero() {
			return Expr{}, job.Invalid("schedule", "%q never fires", expr)
		}
	case rcron.ConstantDelaySchedule:
	default:
		return Expr{}, job.Invalid("schedule", "%q: unsupported expression", expr)
	}
	return e, nil
}

// Location is the zone the expression's wall times are read in.
func (e Expr) Location() *time.Location { return e.loc }

// Next returns the first tick strictly after t, in the expression's zone,
// by the rules of the package doc; the zero time if there is none within
// five years.
func (e Expr) Next(t time.Time) time.Time {
	t = t.In(e.loc)
	if !e.fixed {
		return e.sched.Next(t)
	}
	for {
		n := e.sched.Next(t)
		if n.IsZero() {
			return n
		}
		if g := e.gapTick(t, n); !g.IsZero() {
			return g
		}
		if !repeated(n) {
			return n
		}
		t = n // the second occurrence of a wall time: already fired
	}
}

// gapTick returns the end of the first spring-forward gap in (t, n) whose
// skipped wall times the schedule matches, or the zero time.
func (e Expr) gapTick(t, n time.Time) time.Time {
	for x := t; ; {
		_, end := x.ZoneBounds()
		if end.IsZero() || !end.Before(n) {
			return time.Time{}
		}
		_, before := end.Add(-time.Nanosecond).Zone()
		_, after := end.Zone()
		if gap := time.Duration(after-before) * time.Second; gap > 0 {
			// The wall times [w, w+gap) do not exist: does one match?
			w := end.In(time.FixedZone("", before))
			wall := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), 0, time.UTC)
			if m := e.utc.Next(wall.Add(-time.Second)); !m.IsZero() && m.Before(wall.Add(gap)) && end.After(t) {
				return end
			}
		}
		x = end
	}
}

// repeated reports whether t's wall time occurred already, earlier, in the
// hour a fall-back repeats.
func repeated(t time.Time) bool {
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return false
	}
	_, before := start.Add(-time.Nanosecond).Zone()
	_, off := t.Zone()
	back := time.Duration(before-off) * time.Second
	return back > 0 && t.Sub(start) < back
}

// Due is what a schedule due at a moment does: the ticks to fire, in
// order, how many it skips and why, and its next tick after them.
type Due struct {
	Fire     []time.Time
	Skipped  int    // at least this many (counting stops at maxWalk)
	SkipWhy  string // why the last skip was, "" when none
	NextTick time.Time
}

// maxWalk bounds the ticks Plan walks (an @every 1s schedule after a day
// down has 86,400): past it the rest count as skipped, from the walk's
// end to now.
const maxWalk = 10_000

// Plan returns what a schedule whose next tick is next (not after now)
// does at now. started is when the server started: ticks before it were
// missed while it was down and follow catchUp (none: skipped; one: the
// latest fires; all: each fires, at most job.MaxCatchUp, the latest);
// ticks from started on fire each as they come. Then any tick later than
// its time by more than deadline (0: none) is skipped. NextTick is the
// first tick after now.
func Plan(e Expr, next, now, started time.Time, catchUp job.CatchUp, deadline time.Duration) Due {
	var (
		d      Due
		missed []time.Time
		live   []time.Time
	)
	t := next
	for n := 0; !t.IsZero() && !t.After(now) && n < maxWalk; n++ {
		if t.Before(started) {
			missed = append(missed, t)
		} else {
			live = append(live, t)
		}
		t = e.Next(t)
	}
	if !t.IsZero() && !t.After(now) {
		d.Skipped++ // the walk stopped early: the rest is skipped
		d.SkipWhy = "too many ticks missed"
		t = e.Next(now)
	}
	d.NextTick = t
	skip := func(n int, why string) {
		if n > 0 {
			d.Skipped += n
			d.SkipWhy = why
		}
	}
	switch catchUp {
	case job.CatchUpNone:
		skip(len(missed), "missed while the server was down (catch-up none)")
		missed = nil
	case job.CatchUpOne:
		if len(missed) > 1 {
			skip(len(missed)-1, "missed while the server was down (catch-up one fires the latest)")
			missed = missed[len(missed)-1:]
		}
	case job.CatchUpAll:
		if len(missed) > job.MaxCatchUp {
			skip(len(missed)-job.MaxCatchUp, fmt.Sprintf("missed while the server was down (catch-up all fires the latest %d)", job.MaxCatchUp))
			missed = missed[len(missed)-job.MaxCatchUp:]
		}
	}
	if len(live) > job.MaxCatchUp {
		skip(len(live)-job.MaxCatchUp, fmt.Sprintf("late (the server fires at most the latest %d due at once)", job.MaxCatchUp))
		live = live[len(live)-job.MaxCatchUp:]
	}
	for _, tick := range append(missed, live...) {
		if deadline > 0 && now.Sub(tick) > deadline {
			skip(1, fmt.Sprintf("later than the starting deadline (%s)", deadline))
			continue
		}
		d.Fire = append(d.Fire, tick)
	}
	return d
}
