package client_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/client"
)

func TestBackoffDelay(t *testing.T) {
	const almostOne = 1 - 1e-9
	ms := time.Millisecond
	for _, tc := range []struct {
		name     string
		b        client.Backoff
		n        int
		min, max time.Duration // the delay with jitter 0 and with jitter almost 1
	}{
		{"FirstDefault", client.Backoff{}, 0, 50 * ms, 100 * ms},
		{"Doubles", client.Backoff{}, 3, 400 * ms, 800 * ms},
		{"Capped", client.Backoff{}, 6, 2500 * ms, 5000 * ms},
		{"NoOverflow", client.Backoff{}, 1 << 20, 2500 * ms, 5000 * ms},
		{"Negative", client.Backoff{}, -4, 50 * ms, 100 * ms},
		{"Custom", client.Backoff{Base: time.Second, Max: 3 * time.Second}, 1, time.Second, 2 * time.Second},
		{"CustomCapped", client.Backoff{Base: time.Second, Max: 3 * time.Second}, 2, 1500 * ms, 3 * time.Second},
		{"MaxBelowBase", client.Backoff{Base: time.Second, Max: ms}, 5, 500 * ms, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi := tc.b, tc.b
			lo.Rand = func() float64 { return 0 }
			hi.Rand = func() float64 { return almostOne }
			if got := lo.Delay(tc.n); got != tc.min {
				t.Errorf("Delay(%d) with no jitter = %s, want %s", tc.n, got, tc.min)
			}
			if got := hi.Delay(tc.n); got < tc.max-time.Microsecond || got >= tc.max {
				t.Errorf("Delay(%d) with the most jitter = %s, want just under %s", tc.n, got, tc.max)
			}
			for range 100 { // the real jitter stays within the bounds
				if got := tc.b.Delay(tc.n); got < tc.min || got >= tc.max {
					t.Fatalf("Delay(%d) = %s, want in [%s, %s)", tc.n, got, tc.min, tc.max)
				}
			}
		})
	}
}

var (
	errGone  = status.Error(codes.Unavailable, "connection refused")
	errOther = status.Error(codes.NotFound, "job x not found")
)

// outageLog records a Reconnector's reports.
type outageLog struct {
	mu   sync.Mutex
	lost int
	back []time.Duration
}

func (l *outageLog) reconnector(timeout time.Duration) *client.Reconnector {
	return &client.Reconnector{
		Backoff: client.Backoff{Rand: func() float64 { return 0 }}, // delays 50 ms, 100 ms, 200 ms …
		Timeout: timeout,
		Reached: true,
		OnLost:  func(error) { l.mu.Lock(); l.lost++; l.mu.Unlock() },
		OnBack:  func(d time.Duration) { l.mu.Lock(); l.back = append(l.back, d); l.mu.Unlock() },
	}
}

func (l *outageLog) check(t *testing.T, lost int, back ...time.Duration) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != lost || len(l.back) != len(back) {
		t.Fatalf("reported %d outages and %d returns (%v), want %d and %v", l.lost, len(l.back), l.back, lost, back)
	}
	for i := range back {
		if l.back[i] != back[i] {
			t.Errorf("outage %d lasted %s, want %s", i, l.back[i], back[i])
		}
	}
}

// failing returns an op that fails with err n times, then succeeds, and
// records when it was called.
func failing(n int, err error, calls *[]time.Time) func(context.Context, func()) error {
	return func(context.Context, func()) error {
		*calls = append(*calls, time.Now())
		if len(*calls) <= n {
			return err
		}
		return nil
	}
}

func TestReconnector(t *testing.T) {
	t.Run("ReportsAnOutageOnce", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var l outageLog
			var calls []time.Time
			if err := l.reconnector(0).Do(t.Context(), failing(5, errGone, &calls)); err != nil {
				t.Fatal(err)
			}
			// 50+100+200+400+800 ms of backoff.
			l.check(t, 1, 1550*time.Millisecond)
			if len(calls) != 6 {
				t.Errorf("%d calls, want 6", len(calls))
			}
		})
	})
	t.Run("OtherErrorsPass", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var l outageLog
			var calls []time.Time
			if err := l.reconnector(0).Do(t.Context(), failing(5, errOther, &calls)); !errors.Is(err, errOther) || len(calls) != 1 {
				t.Fatalf("Do = %v after %d calls, want the NotFound after 1", err, len(calls))
			}
			l.check(t, 0)
		})
	})
	t.Run("GivesUpAfterTimeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var l outageLog
			var calls []time.Time
			start := time.Now()
			err := l.reconnector(30*time.Second).Do(t.Context(), failing(1<<30, errGone, &calls))
			var gone *client.UnreachableError
			if !errors.As(err, &gone) || gone.For != 30*time.Second || status.Code(err) != codes.Unavailable {
				t.Fatalf("Do = %v, want an UnreachableError after 30s that is still Unavailable", err)
			}
			if took := time.Since(start); took != 30*time.Second {
				t.Errorf("gave up after %s, want 30s", took)
			}
			// 50 ms, 100 ms … 1.6 s, then every 2.5 s (the cap of 5 s, with
			// no jitter) until 30 s: 18 calls.
			if len(calls) != 18 {
				t.Errorf("%d calls in 30 s", len(calls))
			}
			for i := 1; i < len(calls); i++ {
				if gap := calls[i].Sub(calls[i-1]); gap > 5*time.Second {
					t.Errorf("call %d came %s after the one before, over the 5 s cap", i, gap)
				}
			}
			l.check(t, 1)
		})
	})
	t.Run("NoRetry", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var calls []time.Time
			err := (&client.Reconnector{Timeout: -1, Reached: true}).Do(t.Context(), failing(1, errGone, &calls))
			var gone *client.UnreachableError
			if !errors.As(err, &gone) || len(calls) != 1 {
				t.Fatalf("Do = %v after %d calls, want to give up after 1", err, len(calls))
			}
		})
	})
	t.Run("NeverReached", func(t *testing.T) {
		// A server that never answered is not retried: the address may be
		// wrong. Once a call reached it, the same error starts an outage.
		synctest.Test(t, func(t *testing.T) {
			var l outageLog
			r := l.reconnector(0)
			r.Reached = false
			var calls []time.Time
			if err := r.Do(t.Context(), failing(1, errGone, &calls)); !errors.Is(err, errGone) || len(calls) != 1 {
				t.Fatalf("Do = %v after %d calls, want the Unavailable at once", err, len(calls))
			}
			calls = nil
			if err := r.Do(t.Context(), failing(0, errGone, &calls)); err != nil {
				t.Fatal(err)
			}
			calls = nil
			if err := r.Do(t.Context(), failing(2, errGone, &calls)); err != nil || len(calls) != 3 {
				t.Fatalf("Do = %v after %d calls, want success after 3", err, len(calls))
			}
			l.check(t, 1, 150*time.Millisecond)
		})
	})
	t.Run("InterruptedWhileDown", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var l outageLog
			r := l.reconnector(0)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error)
			go func() {
				var calls []time.Time
				done <- r.Do(ctx, failing(1<<30, errGone, &calls))
			}()
			synctest.Wait() // Do failed and waits out its backoff
			if _, down := r.Down(); !down {
				t.Fatal("Down() = false during an outage")
			}
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("Do = %v, want context.Canceled", err)
			}
			l.check(t, 1)
		})
	})
	t.Run("BackoffRestartsAfterProgress", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var l outageLog
			var calls []time.Time
			n := 0
			err := l.reconnector(0).Do(t.Context(), func(_ context.Context, up func()) error {
				n++
				calls = append(calls, time.Now())
				switch n {
				case 1, 2, 3, 5:
					return errGone
				case 4: // the server answered, then went away again
					up()
					return errGone
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var gaps []time.Duration
			for i := 1; i < len(calls); i++ {
				gaps = append(gaps, calls[i].Sub(calls[i-1]))
			}
			ms := time.Millisecond
			want := []time.Duration{50 * ms, 100 * ms, 200 * ms, 50 * ms, 100 * ms}
			if len(gaps) != len(want) {
				t.Fatalf("gaps %v, want %v", gaps, want)
			}
			for i := range want {
				if gaps[i] != want[i] {
					t.Errorf("gaps %v, want %v", gaps, want)
					break
				}
			}
			// Two outages: 350 ms until call 4 answered, 150 ms after it.
			l.check(t, 2, 350*ms, 150*ms)
		})
	})
	t.Run("SharedOutage", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var l outageLog
			r := l.reconnector(0)
			var wg sync.WaitGroup
			for range 3 {
				wg.Go(func() {
					var calls []time.Time
					if err := r.Do(t.Context(), failing(3, errGone, &calls)); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			l.check(t, 1, 350*time.Millisecond)
		})
	})
}
