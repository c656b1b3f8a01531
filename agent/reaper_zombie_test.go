package agent

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// warnings records the messages of the records logged at Warn or above.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, r.Message)
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

// A process of the job's group forks a child, then leaves the group
// (setsid) and lives on without waiting for that child. The child exits:
// a zombie in the job's group whose parent is not the supervisor. Nothing
// of the group runs any more, yet the attempt's end takes it for a live
// member (kill(-pgid, 0) succeeds on a zombie), waits the whole drain
// timeout (5 s) and then warns that processes outlived the job.
func TestZombieOfAnEscapedParentDoesNotHoldTheEnd(t *testing.T) {
	w := new(warnings)
	r, err := newReaper(slog.New(w), false)
	if err != nil {
		t.Skip(err)
	}
	defer r.close()
	script := `( sh -c 'sleep 0.2' & exec setsid sleep 8 </dev/null >/dev/null 2>&1 ) & sleep 0.5`
	start := time.Now()
	a := mustStartAttempt(t, attemptSpec{Argv: shArgv(script)}, attemptOptions{Reaper: r})
	e := waitAttempt(t, a, time.Minute)
	t.Logf("the attempt took %s to end (its leader exits after 0.5 s)", time.Since(start))
	if e.ExitCode != 0 {
		t.Fatalf("exit %+v", e)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msgs {
		if strings.Contains(m, "outlived") {
			t.Errorf("the reaper warned %q: only a zombie (whose parent left the group) was left, nothing ran on", m)
		}
	}
}
