package agent

import (
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// burnScript burns CPU in sh until the shell's own user+system time
// reaches ticks (1/100 s each), reading it from /proc/self/stat with
// builtins only: a CPU bound, not a wall-clock one, whatever else runs on
// the host.
func burnScript(ticks int) string {
	return fmt.Sprintf(`while :; do read -r _ _ _ _ _ _ _ _ _ _ _ _ _ u s _ < /proc/self/stat; [ $((u+s)) -ge %d ] && break; done`, ticks)
}

// orphanScript backgrounds a burner whose parent exits at once (so it is
// an orphan), and waits on a FIFO until it is done, without waiting for it
// as a child: its usage is in no wait4 of the job's leader.
func orphanScript(ticks int) string {
	return fmt.Sprintf(`d=$(mktemp -d) && mkfifo "$d/f" && ( ( %s; echo done > "$d/f" ) & ) && read x < "$d/f"; rm -r "$d"`, burnScript(ticks))
}

func TestAttemptUsageOrphans(t *testing.T) {
	const ticks = 30 // 0.3 s of CPU
	t.Run("Leader", func(t *testing.T) {
		a := mustStartAttempt(t, attemptSpec{Argv: shArgv(burnScript(ticks))}, attemptOptions{})
		e := waitAttempt(t, a, time.Minute)
		if e.ExitCode != 0 {
			t.Fatalf("exit %+v", e)
		}
		if e.CPUTime < ticks*10*time.Millisecond || e.CPUTime > ticks*10*time.Millisecond+200*time.Millisecond {
			t.Errorf("cpu %s, want about %d ticks", e.CPUTime, ticks)
		}
		// One process burns: its CPU is at most its wall, give or take the
		// fork before the leader's clock starts and the accounting's tick.
		if e.Wall+50*time.Millisecond < e.CPUTime || e.MaxRSSKiB <= 0 {
			t.Errorf("wall %s, cpu %s, max rss %d KiB", e.Wall, e.CPUTime, e.MaxRSSKiB)
		}
	})
	t.Run("OrphanUncounted", func(t *testing.T) {
		a := mustStartAttempt(t, attemptSpec{Argv: shArgv(orphanScript(ticks))}, attemptOptions{})
		e := waitAttempt(t, a, time.Minute)
		if e.CPUTime >= ticks*10*time.Millisecond || e.Orphans != 0 {
			t.Errorf("without a reaper: cpu %s, %d orphans; want the orphan's burn missing", e.CPUTime, e.Orphans)
		}
	})
	t.Run("OrphanCounted", func(t *testing.T) {
		r, err := newReaper(slog.New(slog.DiscardHandler), false)
		if err != nil {
			t.Skip(err)
		}
		defer r.close()
		a := mustStartAttempt(t, attemptSpec{Argv: shArgv(orphanScript(ticks))}, attemptOptions{Reaper: r})
		e := waitAttempt(t, a, time.Minute)
		if e.ExitCode != 0 {
			t.Fatalf("exit %+v", e)
		}
		if e.CPUTime < ticks*10*time.Millisecond || e.Orphans < 1 {
			t.Errorf("with a reaper: cpu %s, %d orphans; want the orphan's %d ticks counted", e.CPUTime, e.Orphans, ticks)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.groups) != 0 || len(r.leaders) != 0 {
			t.Errorf("reaper still tracks %d groups, %d leaders", len(r.groups), len(r.leaders))
		}
	})
}
