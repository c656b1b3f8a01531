package cluster

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// stallingStore blocks Apply, while stall is set, until release closes.
type stallingStore struct {
	Store
	stall   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (s *stallingStore) Apply(ctx context.Context, u []job.Update) ([]error, error) {
	if s.stall.Load() {
		s.entered <- struct{}{}
		<-s.release
	}
	return s.Store.Apply(ctx, u)
}

// TestAlive: Run answers Alive between passes, and a pass that hangs
// leaves it unanswered (so the systemd watchdog gets no ping).
func TestAlive(t *testing.T) {
	st := &stallingStore{entered: make(chan struct{}, 1), release: make(chan struct{})}
	h := newHarness(t, func(c *Config) { st.Store = c.Store; c.Store = st })

	t.Run("NotRunning", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := h.s.Alive(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Alive without Run = %v, want context.Canceled", err)
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	if err := h.s.Alive(ctx); err != nil {
		t.Fatalf("Alive while Run idles = %v", err)
	}
	h.worker("w1", 1, nil)
	st.stall.Store(true)
	j := h.submit(job.Spec{Tenant: "default"})
	<-st.entered // the pass that dispatches j hangs in its commit

	// A negative: the deadline is how long the test waits for an answer
	// that must not come.
	short, scancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err := h.s.Alive(short)
	scancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Alive during a hung pass = %v, want context.DeadlineExceeded", err)
	}

	st.stall.Store(false)
	close(st.release)
	if err := h.s.Alive(ctx); err != nil {
		t.Fatalf("Alive after the pass = %v", err)
	}
	if got := h.get(j.ID); got.State != job.Scheduled {
		t.Errorf("job %s after the pass, want SCHEDULED", got.State)
	}
}
