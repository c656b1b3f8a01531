package cluster

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// cronJobs returns the HODEI_CRON_TIME of every stored job of schedule
// name, in submission order.
func (h *harness) cronJobs(name string) []string {
	h.t.Helper()
	var out []string
	err := h.store.Scan(h.ctx, func(j *job.Job) error {
		if j.Spec.Labels[job.CronLabel] == name {
			out = append(out, j.Spec.Env[job.CronTimeEnv])
		}
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *harness) cronAdd(sc job.Schedule) *job.Schedule {
	h.t.Helper()
	if len(sc.Spec.Command) == 0 {
		sc.Spec.Command = []string{"true"}
	}
	got, err := h.s.CronAdd(h.ctx, sc)
	if err != nil {
		h.t.Fatalf("cron add: %v", err)
	}
	return got
}

func (h *harness) schedule(name string) *job.Schedule {
	h.t.Helper()
	sc, err := h.s.Schedule(job.DefaultTenant, name)
	if err != nil {
		h.t.Fatal(err)
	}
	return sc
}

// runClock moves the fake clock to end in steps, firing what is due at
// each step.
func (h *harness) runClock(end time.Time, step time.Duration) {
	for h.now.Before(end) {
		h.advance(step)
		h.s.FireDue(h.ctx)
	}
}

func TestCronDSTMadrid(t *testing.T) {
	madrid, _ := time.LoadLocation("Europe/Madrid")
	for _, tt := range []struct {
		name     string
		from, to time.Time
		daily    []string
		hourly   int // ticks of "0 * * * *" between from and to
	}{
		{"SpringForward", time.Date(2026, 3, 28, 12, 0, 0, 0, madrid), time.Date(2026, 3, 30, 12, 0, 0, 0, madrid),
			[]string{"2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"}, 47},
		{"FallBack", time.Date(2026, 10, 24, 12, 0, 0, 0, madrid), time.Date(2026, 10, 26, 12, 0, 0, 0, madrid),
			[]string{"2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"}, 49},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.now = tt.from.UTC()
			h.restart()
			h.cronAdd(job.Schedule{Name: "daily", Expr: "30 2 * * *", TimeZone: "Europe/Madrid"})
			h.cronAdd(job.Schedule{Name: "hourly", Expr: "0 * * * *", TimeZone: "Europe/Madrid"})
			h.runClock(tt.to.UTC(), 7*time.Minute)
			if got := h.cronJobs("daily"); !slices.Equal(got, tt.daily) {
				t.Fatalf("daily ticks %q, want %q", got, tt.daily)
			}
			got := h.cronJobs("hourly")
			if len(got) != tt.hourly {
				t.Fatalf("%d hourly ticks, want %d: %q", len(got), tt.hourly, got)
			}
			seen := map[string]bool{}
			for _, g := range got {
				if seen[g] {
					t.Fatalf("tick %s fired twice", g)
				}
				seen[g] = true
			}
		})
	}
}

func TestCronOverlap(t *testing.T) {
	for _, tt := range []struct {
		overlap job.Overlap
		jobs    int
		skipped int64
	}{
		{job.OverlapAllow, 3, 0},
		{job.OverlapForbid, 1, 2},
		{job.OverlapReplace, 3, 0},
	} {
		t.Run(tt.overlap.String(), func(t *testing.T) {
			h := newHarness(t)
			h.cronAdd(job.Schedule{Name: "c", Expr: "* * * * *", Overlap: tt.overlap})
			h.runClock(h.now.Add(3*time.Minute), 10*time.Second)
			if got := h.cronJobs("c"); len(got) != tt.jobs {
				t.Fatalf("%d jobs, want %d", len(got), tt.jobs)
			}
			sc := h.schedule("c")
			if sc.Skipped != tt.skipped {
				t.Fatalf("skipped %d (%s), want %d", sc.Skipped, sc.LastSkip, tt.skipped)
			}
			// No worker took any: the jobs wait. Replace leaves only the
			// last one waiting, the others cancelled.
			var pending, cancelled int
			_ = h.store.Scan(h.ctx, func(j *job.Job) error {
				switch j.State {
				case job.Pending:
					pending++
				case job.Cancelled:
					cancelled++
					if j.Reason != ReasonCronReplaced {
						t.Errorf("job %s cancelled for %q", j.ID, j.Reason)
					}
				}
				return nil
			})
			if tt.overlap == job.OverlapReplace && (pending != 1 || cancelled != 2) {
				t.Fatalf("replace: %d pending, %d cancelled", pending, cancelled)
			}
			if tt.overlap == job.OverlapForbid {
				// Once the job ends, the next tick submits again.
				if _, err := h.s.Cancel(h.ctx, sc.LastJob, "done"); err != nil {
					t.Fatal(err)
				}
				h.runClock(h.now.Add(time.Minute), 10*time.Second)
				if got := h.cronJobs("c"); len(got) != 2 {
					t.Fatalf("%d jobs after the first ended, want 2", len(got))
				}
			}
		})
	}
}

// TestCronCatchUp: the server is down for five hourly ticks; at restart
// each policy fires what it says, and none fires a tick twice.
func TestCronCatchUp(t *testing.T) {
	for _, tt := range []struct {
		name     string
		catchUp  job.CatchUp
		overlap  job.Overlap
		deadline time.Duration
		want     []string // the hours (UTC) fired after the restart
	}{
		{"None", job.CatchUpNone, job.OverlapAllow, 0, nil},
		{"One", job.CatchUpOne, job.OverlapAllow, 0, []string{"05"}},
		{"All", job.CatchUpAll, job.OverlapAllow, 0, []string{"01", "02", "03", "04", "05"}},
		{"AllForbid", job.CatchUpAll, job.OverlapForbid, 0, []string{"01"}},
		{"AllReplace", job.CatchUpAll, job.OverlapReplace, 0, []string{"01", "02", "03", "04", "05"}},
		{"AllDeadline", job.CatchUpAll, job.OverlapAllow, 2 * time.Hour, []string{"04", "05"}},
		{"OneDeadlinePassed", job.CatchUpOne, job.OverlapAllow, 10 * time.Minute, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t) // 2026-01-01 00:00 UTC
			h.cronAdd(job.Schedule{Name: "c", Expr: "0 * * * *", CatchUp: tt.catchUp, Overlap: tt.overlap,
				StartingDeadline: tt.deadline})
			h.advance(5*time.Hour + 30*time.Minute) // down: ticks 01:00 … 05:00 missed
			h.restart()
			h.s.FireDue(h.ctx)
			h.s.FireDue(h.ctx) // a second call fires nothing more
			var hours []string
			for _, g := range h.cronJobs("c") {
				hours = append(hours, g[11:13])
			}
			if !slices.Equal(hours, tt.want) {
				t.Fatalf("fired %q, want %q", hours, tt.want)
			}
			sc := h.schedule("c")
			if want := time.Date(2026, 1, 1, 6, 0, 0, 0, time.UTC); !sc.NextRun.Equal(want) {
				t.Fatalf("next run %v, want %v", sc.NextRun, want)
			}
			if int(sc.Skipped)+len(hours) != 5 {
				t.Fatalf("skipped %d and fired %d of 5 ticks", sc.Skipped, len(hours))
			}
			// Ticks after the restart fire as they come, whatever the
			// catch-up policy.
			h.runClock(time.Date(2026, 1, 1, 7, 0, 1, 0, time.UTC), time.Minute)
			if n := len(h.cronJobs("c")); n != len(hours)+2 && tt.overlap != job.OverlapForbid {
				t.Fatalf("%d jobs after two live ticks, want %d", n, len(hours)+2)
			}
		})
	}
}

// TestCronRestartBetweenTicks: a restart between ticks, and one right
// after a fire, fire nothing twice.
func TestCronRestartBetweenTicks(t *testing.T) {
	h := newHarness(t)
	h.cronAdd(job.Schedule{Name: "c", Expr: "*/1 * * * * *", CatchUp: job.CatchUpAll})
	for range 20 {
		h.advance(700 * time.Millisecond)
		h.s.FireDue(h.ctx)
		h.restart()
		h.s.FireDue(h.ctx)
	}
	got := h.cronJobs("c")
	if len(got) != 14 {
		t.Fatalf("%d ticks fired in 14 s, want 14: %q", len(got), got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("tick %s after %s", got[i], got[i-1])
		}
	}
}

func TestCronCalls(t *testing.T) {
	h := newHarness(t)
	h.cronAdd(job.Schedule{Name: "c", Expr: "0 * * * *"})
	if _, err := h.s.CronAdd(h.ctx, job.Schedule{Name: "c", Expr: "0 * * * *", Spec: job.Spec{Command: []string{"x"}}}); !errors.Is(err, job.ErrConflict) {
		t.Fatalf("second add: %v", err)
	}
	for _, bad := range []struct {
		sc    job.Schedule
		field string
	}{
		{job.Schedule{Name: "b", Expr: "0 0 * *"}, "schedule"},
		{job.Schedule{Name: "b", Expr: "0 * * * *", TimeZone: "Mars/Olympus"}, "timezone"},
		{job.Schedule{Name: "-b", Expr: "0 * * * *"}, "name"},
		{job.Schedule{Name: "b", Expr: "0 * * * *", Spec: job.Spec{Command: []string{"x"}, SecretEnv: map[string]string{"T": "secret1"}}}, "job.secret_env"},
		{job.Schedule{Name: "b", Expr: "0 * * * *", Spec: job.Spec{Command: []string{"x"}, Timeout: -time.Second}}, "job.timeout"},
	} {
		if len(bad.sc.Spec.Command) == 0 {
			bad.sc.Spec.Command = []string{"true"}
		}
		_, err := h.s.CronAdd(h.ctx, bad.sc)
		var fe *job.FieldError
		if !errors.As(err, &fe) || fe.Field != bad.field {
			t.Fatalf("add %+v: %v, want a field error on %s", bad.sc, err, bad.field)
		}
	}
	if _, err := h.s.CronPause(h.ctx, job.DefaultTenant, "c"); err != nil {
		t.Fatal(err)
	}
	h.runClock(h.now.Add(3*time.Hour), 10*time.Minute)
	if n := len(h.cronJobs("c")); n != 0 {
		t.Fatalf("a paused schedule fired %d", n)
	}
	id, err := h.s.CronRun(h.ctx, job.DefaultTenant, "c")
	if err != nil || h.get(id).Spec.Labels[job.CronLabel] != "c" {
		t.Fatalf("run: %s, %v", id, err)
	}
	if name := h.get(id).Spec.Name; name != "c" {
		t.Fatalf("a schedule's job is named %q, want the schedule's name", name)
	}
	named := h.cronAdd(job.Schedule{Name: "named", Expr: "0 * * * *", Spec: job.Spec{Name: "mine", Command: []string{"true"}}})
	if id, err := h.s.CronRun(h.ctx, job.DefaultTenant, named.Name); err != nil || h.get(id).Spec.Name != "mine" {
		t.Fatalf("a template's own name: %v, %q", err, h.get(id).Spec.Name)
	}
	if err := h.s.CronRemove(h.ctx, job.DefaultTenant, named.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.CronResume(h.ctx, job.DefaultTenant, "c"); err != nil {
		t.Fatal(err)
	}
	if sc := h.schedule("c"); !sc.NextRun.Equal(time.Date(2026, 1, 1, 4, 0, 0, 0, time.UTC)) || sc.LastJob != id {
		t.Fatalf("resumed: next %v, last job %s", sc.NextRun, sc.LastJob)
	}
	h.runClock(h.now.Add(time.Hour), 10*time.Minute)
	if n := len(h.cronJobs("c")); n != 2 {
		t.Fatalf("%d jobs, want the run's and one tick's", n)
	}
	if err := h.s.CronRemove(h.ctx, job.DefaultTenant, "c"); err != nil {
		t.Fatal(err)
	}
	h.restart()
	if _, err := h.s.Schedule(job.DefaultTenant, "c"); !errors.Is(err, job.ErrNotFound) {
		t.Fatalf("removed schedule after restart: %v", err)
	}
}
