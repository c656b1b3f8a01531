package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// restartWith is restart with a changed configuration.
func (h *harness) restartWith(configure ...func(*Config)) {
	h.t.Helper()
	h.disp = &recorder{}
	cfg := Config{
		Store: h.store, Dispatcher: h.disp, Now: func() time.Time { return h.now },
		Settings: Settings{Heartbeat: time.Second, Lease: 5 * time.Second, KillGrace: 2 * time.Second},
	}
	for _, c := range configure {
		c(&cfg)
	}
	h.s = New(cfg)
	if err := h.s.Recover(h.ctx); err != nil {
		h.t.Fatal(err)
	}
}

// workerInfo returns the worker's listing, failing the test when it is
// not listed.
func (h *harness) workerInfo(id string) WorkerInfo {
	h.t.Helper()
	for _, w := range h.s.Workers() {
		if w.Worker.ID == id {
			return w
		}
	}
	h.t.Fatalf("worker %s is not listed", id)
	return WorkerInfo{}
}

// storedWorker returns the stored record of worker id, or nil.
func (h *harness) storedWorker(id string) *job.Worker {
	h.t.Helper()
	ws, err := h.store.Workers(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, w := range ws {
		if w.ID == id {
			return w
		}
	}
	return nil
}

// logBuffer collects a logger's records as text, safely for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) lines(substr string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.buf.String(), "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return out
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestRestartShowsWorkersUnknownUntilHello(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 1, nil)
	h.worker("w2", 1, nil)
	if _, err := h.s.Drain(h.ctx, "w2"); err != nil {
		t.Fatal(err)
	}
	h.restart()
	for _, id := range []string{"w1", "w2"} {
		if w := h.workerInfo(id); w.State != job.WorkerUnknown || w.Connected || !w.LastSeen.IsZero() {
			t.Fatalf("%s after restart: %s connected=%v last seen %s; want UNKNOWN, not connected, never seen", id, w.State, w.Connected, w.LastSeen)
		}
	}
	if got := h.workerInfo("w1").State.String(); got != "UNKNOWN" {
		t.Fatalf("state name %q", got)
	}
	// Nothing is assigned to an UNKNOWN worker.
	h.submit(job.Spec{})
	h.pass()
	if got := h.disp.takeAssigns(); len(got) != 0 {
		t.Fatalf("assigned %v to UNKNOWN workers", got)
	}
	h.worker("w1", 1, nil)
	h.worker("w2", 1, nil)
	if w := h.workerInfo("w1"); w.State != job.WorkerReady || !w.Connected {
		t.Fatalf("w1 after Hello: %s connected=%v", w.State, w.Connected)
	}
	if w := h.workerInfo("w2"); w.State != job.WorkerDraining {
		t.Fatalf("drained w2 after Hello: %s", w.State)
	}
	h.pass()
	if got := h.disp.takeAssigns(); len(got) != 1 || got[0].worker != "w1" {
		t.Fatalf("assigned %v, want the job on w1", got)
	}
}

func TestJoblessWorkersThatDoNotReturnAreNotWarnedAbout(t *testing.T) {
	h := newHarness(t)
	for i := range 20 {
		h.worker(fmt.Sprintf("idle-%02d", i), 1, nil)
	}
	h.worker("busy", 1, nil)
	j := h.submit(job.Spec{})
	h.pass()
	h.start(j)

	var logs logBuffer
	h.restartWith(func(c *Config) { c.Logger = logs.logger() })
	h.advance(5 * time.Second) // one lease
	h.pass()
	h.advance(time.Minute)
	h.pass() // and nothing more later

	if got := h.wantState(j.ID, job.Failed); got.Reason != scheduler.ReasonWorkerLost {
		t.Fatalf("the busy worker's job: reason %q, want %q", got.Reason, scheduler.ReasonWorkerLost)
	}
	if lost := logs.lines(`msg="worker lost"`); len(lost) != 1 || !strings.Contains(lost[0], "level=WARN") || !strings.Contains(lost[0], "worker=busy") {
		t.Fatalf("worker lost lines: %q, want one WARN for the worker that held a job", lost)
	}
	summary := logs.lines("did not reconnect")
	if len(summary) != 1 || !strings.Contains(summary[0], "level=INFO") || !strings.Contains(summary[0], "workers=20") {
		t.Fatalf("summary lines: %q, want one INFO line counting 20 workers", summary)
	}
	for _, w := range h.s.Workers() {
		if w.State != job.WorkerDown {
			t.Fatalf("%s is %s, want DOWN", w.Worker.ID, w.State)
		}
		if rec := h.storedWorker(w.Worker.ID); rec == nil || !rec.DownSince.Equal(h.now.Add(-time.Minute)) {
			t.Fatalf("stored %s: %+v, want DownSince one lease after the restart", w.Worker.ID, rec)
		}
	}
}

func TestDownWorkersAreDeletedAfterWorkerGC(t *testing.T) {
	gc := func(d time.Duration) func(*Config) { return func(c *Config) { c.WorkerGC = d } }
	t.Run("OK", func(t *testing.T) {
		h := newHarness(t, gc(time.Hour))
		h.worker("w1", 1, nil)
		h.worker("w2", 1, nil)
		h.s.WorkerGone("w1")
		h.advance(5 * time.Second)
		h.worker("w2", 1, nil) // w2 stays
		h.pass()
		downAt := h.now
		if w := h.workerInfo("w1"); w.State != job.WorkerDown || !w.Worker.DownSince.Equal(downAt) {
			t.Fatalf("w1: %s since %s", w.State, w.Worker.DownSince)
		}
		h.advance(time.Hour - time.Second)
		next := h.pass()
		h.workerInfo("w1")
		if !next.Equal(downAt.Add(time.Hour)) && (next.IsZero() || next.After(downAt.Add(time.Hour))) {
			t.Fatalf("next pass at %s, want by %s for the deletion", next, downAt.Add(time.Hour))
		}
		h.worker("w2", 1, nil)
		h.advance(time.Second)
		h.pass()
		if ws := h.s.Workers(); len(ws) != 1 || ws[0].Worker.ID != "w2" {
			t.Fatalf("workers = %+v, want only w2", ws)
		}
		if h.storedWorker("w1") != nil {
			t.Fatal("w1 is still stored")
		}
	})
	t.Run("AfterRestart", func(t *testing.T) {
		h := newHarness(t, gc(time.Hour))
		h.worker("w1", 1, nil)
		h.s.WorkerGone("w1")
		h.advance(5 * time.Second)
		h.pass() // DOWN, stored with its time
		h.advance(30 * time.Minute)
		h.restartWith(gc(time.Hour))
		if w := h.workerInfo("w1"); w.State != job.WorkerDown {
			t.Fatalf("w1 after restart: %s, want still DOWN", w.State)
		}
		h.advance(29 * time.Minute)
		h.pass()
		h.workerInfo("w1")
		h.advance(time.Minute)
		h.pass()
		if ws := h.s.Workers(); len(ws) != 0 || h.storedWorker("w1") != nil {
			t.Fatalf("workers = %+v after an hour DOWN across a restart", ws)
		}
	})
	t.Run("ReturnBeforeGC", func(t *testing.T) {
		h := newHarness(t, gc(time.Hour))
		h.worker("w1", 1, nil)
		h.s.WorkerGone("w1")
		h.advance(5 * time.Second)
		h.pass()
		h.advance(30 * time.Minute)
		h.worker("w1", 1, nil) // back: no longer DOWN, in memory or stored
		if rec := h.storedWorker("w1"); rec == nil || !rec.DownSince.IsZero() {
			t.Fatalf("stored w1 = %+v, want DownSince cleared", rec)
		}
		h.advance(time.Hour)
		h.worker("w1", 1, nil) // heartbeats, in effect
		h.pass()
		if w := h.workerInfo("w1"); w.State != job.WorkerReady {
			t.Fatalf("w1: %s", w.State)
		}
	})
	t.Run("Never", func(t *testing.T) {
		h := newHarness(t, gc(-1))
		h.worker("w1", 1, nil)
		h.s.WorkerGone("w1")
		h.advance(5 * time.Second)
		h.pass()
		h.advance(365 * 24 * time.Hour)
		h.pass()
		if w := h.workerInfo("w1"); w.State != job.WorkerDown {
			t.Fatalf("w1: %s", w.State)
		}
	})
	t.Run("Revoked", func(t *testing.T) {
		h := newHarness(t, gc(time.Hour))
		h.worker("w1", 1, nil)
		h.s.Revoke("w1")
		h.pass()
		if rec := h.storedWorker("w1"); rec == nil || !rec.DownSince.Equal(h.now) {
			t.Fatalf("stored revoked w1 = %+v, want DownSince now", rec)
		}
		h.advance(time.Hour)
		h.pass()
		if ws := h.s.Workers(); len(ws) != 0 {
			t.Fatalf("workers = %+v", ws)
		}
	})
}

func TestRemoveWorker(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 1, nil)
	j := h.submit(job.Spec{})
	h.pass()
	h.start(j)
	var unbound []string
	also := func(context.Context) error { unbound = append(unbound, "w1"); return nil }

	if err := h.s.RemoveWorker(h.ctx, "nope", also); !errors.Is(err, job.ErrNotFound) {
		t.Fatalf("unknown worker: %v, want ErrNotFound", err)
	}
	if err := h.s.RemoveWorker(h.ctx, "w1", also); !errors.Is(err, job.ErrConflict) || !strings.Contains(err.Error(), "stop its agent") {
		t.Fatalf("connected worker: %v, want ErrConflict saying to stop the agent", err)
	}
	h.s.WorkerGone("w1")
	if err := h.s.RemoveWorker(h.ctx, "w1", also); !errors.Is(err, job.ErrConflict) || !strings.Contains(err.Error(), "1 active job:") {
		t.Fatalf("worker with a job: %v, want ErrConflict naming its jobs", err)
	}
	if len(unbound) != 0 {
		t.Fatalf("refused removals ran also: %v", unbound)
	}
	boom := errors.New("boom")
	if _, err := h.finish(j, scheduler.Exited, 0); err != nil {
		t.Fatal(err)
	}
	if err := h.s.RemoveWorker(h.ctx, "w1", func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("failing also: %v", err)
	}
	h.workerInfo("w1")
	if err := h.s.RemoveWorker(h.ctx, "w1", also); err != nil {
		t.Fatal(err)
	}
	if len(unbound) != 1 || len(h.s.Workers()) != 0 || h.storedWorker("w1") != nil {
		t.Fatalf("after removal: also ran %v, workers %+v", unbound, h.s.Workers())
	}
	// The id may come back as a new worker.
	h.worker("w1", 1, nil)
	if w := h.workerInfo("w1"); w.State != job.WorkerReady {
		t.Fatalf("w1 again: %s", w.State)
	}
}

func TestActiveJobsAreIndexedByWorker(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 1, nil)
	j := h.submit(job.Spec{Retries: 1})
	h.pass()
	h.start(j)
	if got := h.onWorker("w1"); len(got) != 1 || got[0] != j.ID {
		t.Fatalf("w1 holds %v", got)
	}
	h.s.WorkerGone("w1")
	h.worker("w2", 1, nil)
	h.advance(5 * time.Second)
	h.worker("w2", 1, nil)
	h.pass() // w1 DOWN: the job is lost and retried on w2 after its backoff
	h.advance(time.Second)
	h.pass()
	if got := h.wantState(j.ID, job.Scheduled); got.Worker != "w2" {
		t.Fatalf("retry on %s", got.Worker)
	}
	if got, now := h.onWorker("w1"), h.onWorker("w2"); len(got) != 0 || len(now) != 1 || now[0] != j.ID {
		t.Fatalf("w1 holds %v, w2 %v", got, now)
	}
	h.start(j)
	if _, err := h.finish(j, scheduler.Exited, 0); err != nil {
		t.Fatal(err)
	}
	if got := h.onWorker("w2"); len(got) != 0 {
		t.Fatalf("w2 still holds %v", got)
	}
}

// BenchmarkWorkerHello is the cost of registering a new worker while
// workers others are registered, each running one job: it must not grow
// with the cluster (ns/op of workers=10 and workers=10000 side by side).
func BenchmarkWorkerHello(b *testing.B) {
	for _, n := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			h := newHarness(b)
			h.busyWorkers(n)
			i := 0
			for b.Loop() {
				i++
				if _, err := h.s.WorkerHello(h.ctx, Hello{Worker: &job.Worker{
					ID: fmt.Sprintf("new-%08d", i), Capacity: job.Resources{Slots: 1},
				}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n), "workers")
		})
	}
}

// onWorker returns the ids of the active jobs the cluster files under a
// worker.
func (h *harness) onWorker(worker string) []string {
	var ids []string
	for _, j := range h.s.activeOn(worker) {
		ids = append(ids, j.ID)
	}
	return ids
}
