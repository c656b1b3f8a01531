package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of Backoff and Reconnector.
const (
	// DefaultBackoffBase is the first wait before a retry, before jitter.
	DefaultBackoffBase = 100 * time.Millisecond
	// DefaultBackoffMax caps the wait between retries, before jitter: a
	// server that comes back is found within this long.
	DefaultBackoffMax = 5 * time.Second
	// DefaultReconnectTimeout is how long a Reconnector waits for a server
	// that went away: long enough for a restart, an upgrade or a reboot.
	DefaultReconnectTimeout = 10 * time.Minute
)

// Backoff is a capped exponential backoff with jitter. Delay(n), the wait
// before retry n (from 0), is drawn uniformly from [d/2, d) where
// d = min(Max, Base·2ⁿ): with the defaults, 50–100 ms first, then
// doubling, and never more than 5 s. The jitter spreads the retries of
// many clients that lost the same server. The zero value uses
// DefaultBackoffBase and DefaultBackoffMax; a Backoff is safe for
// concurrent use when Rand is.
type Backoff struct {
	Base time.Duration // 0: DefaultBackoffBase
	Max  time.Duration // 0: DefaultBackoffMax; raised to Base if below it
	// Rand returns a number in [0, 1); nil: math/rand/v2.Float64. Tests
	// set it to make the jitter fixed.
	Rand func() float64
}

// Delay returns the wait before retry n (n < 0 counts as 0).
func (b Backoff) Delay(n int) time.Duration {
	base, maxd := b.Base, b.Max
	if base <= 0 {
		base = DefaultBackoffBase
	}
	if maxd <= 0 {
		maxd = DefaultBackoffMax
	}
	maxd = max(maxd, base)
	d := base
	for i := 0; i < n && d < maxd; i++ {
		d *= 2
	}
	d = min(d, maxd)
	r := rand.Float64
	if b.Rand != nil {
		r = b.Rand
	}
	half := d / 2
	return half + time.Duration(r()*float64(d-half))
}

// ServerGone reports whether err, returned by a call made with ctx, means
// that the server went away — it is down, restarting, or cannot be
// reached: codes.Unavailable (connection refused, a connection that broke
// mid-stream), or codes.Canceled while ctx is alive (a stopping server
// ends its streams, and the cut reaches the client as a cancel) — so that
// the same call may succeed later. After ctx ended nothing is: the caller
// gave up. A stream the server cut for a reason of its own (a revoked
// token) is refused with that reason when it is opened again.
func ServerGone(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	c := status.Code(err)
	return c == codes.Unavailable || c == codes.Canceled
}

// Reconnector rides out the times the server is away: Do runs a call and,
// while it fails because the server went away (ServerGone), waits a
// Backoff and runs it again, until the outage has lasted Timeout.
//
// Several calls may share one Reconnector — a job's output and stderr
// streams and the Get after them — and then share its outages: an outage
// is reported once (OnLost, OnBack), whichever call noticed it, and
// bounded as one. Set the fields before the first Do; Do and Down are
// safe for concurrent use. The zero value retries with the default
// backoff for DefaultReconnectTimeout and reports nothing.
type Reconnector struct {
	Backoff Backoff
	// Timeout bounds an outage: once the server has been unreachable this
	// long, Do returns an *UnreachableError instead of retrying.
	// 0: DefaultReconnectTimeout; negative: Do does not retry at all.
	Timeout time.Duration
	// OnLost, if set, is called when an outage starts, with the error that
	// showed it. OnBack, if set, is called when a call reaches the server
	// again after an outage, with how long the outage lasted. They are
	// called with the Reconnector's lock held, one at a time and in order:
	// they must be quick (print a line) and must not call Do or Down.
	OnLost func(err error)
	OnBack func(down time.Duration)
	// Client, if set, has its connection's backoff reset before each
	// retry (ResetConnectBackoff), so that the retry dials at once rather
	// than after gRPC's own backoff, which grows to two minutes.
	Client *Client
	// Reached says that the caller has reached the server already (its
	// submit succeeded, say). Until then, or until a call through Do
	// reaches it, Do does not retry: a server that never answered is more
	// likely a wrong address than a restart, and its error says so at once.
	Reached bool

	mu      sync.Mutex // guards the fields below
	reached bool       // a call through Do reached the server
	down    time.Time  // when the current outage started; zero while the server answers
}

// Do runs op until it returns nil or an error that is not the server going
// away, which Do returns; while op fails because the server went away, Do
// waits a Backoff and runs it again — once the server has been reached
// (Reached, or a call through Do): before, the error is returned at once.
// It gives up with an *UnreachableError once the outage has lasted the
// Reconnector's Timeout, and returns ctx.Err() if ctx ends while it waits.
//
// op must call up as soon as it knows the server answered (a stream's
// header, a first message): that ends the outage, for every call sharing
// the Reconnector, and starts this call's backoff again from its first,
// short wait. An op that returns nil has answered. up may be called from
// any goroutine, any number of times.
func (r *Reconnector) Do(ctx context.Context, op func(ctx context.Context, up func()) error) error {
	retry := 0
	for {
		var answered atomic.Bool
		err := op(ctx, func() {
			if !answered.Swap(true) {
				r.markUp()
			}
		})
		if err == nil {
			r.markUp()
			return nil
		}
		if !ServerGone(ctx, err) {
			return err
		}
		if answered.Load() {
			retry = 0
		}
		since, reached := r.markDown(err)
		if !reached {
			return err
		}
		lasted := time.Since(since)
		if r.Timeout < 0 || lasted >= r.timeout() {
			return &UnreachableError{For: lasted, Err: err}
		}
		wait := min(r.Backoff.Delay(retry), r.timeout()-lasted)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		retry++
		if r.Client != nil {
			r.Client.ResetConnectBackoff()
		}
	}
}

// Down reports whether an outage is under way — the last call to learn
// anything learnt that the server went away — and since when.
func (r *Reconnector) Down() (since time.Time, down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.down, !r.down.IsZero()
}

func (r *Reconnector) timeout() time.Duration {
	if r.Timeout == 0 {
		return DefaultReconnectTimeout
	}
	return r.Timeout
}

// markDown starts an outage unless one is under way, and returns when the
// current one started; reached is false, and nothing starts, when the
// server was never reached.
func (r *Reconnector) markDown(err error) (since time.Time, reached bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.Reached && !r.reached {
		return time.Time{}, false
	}
	if r.down.IsZero() {
		r.down = time.Now()
		if r.OnLost != nil {
			r.OnLost(err)
		}
	}
	return r.down, true
}

// markUp ends the outage under way, if any.
func (r *Reconnector) markUp() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reached = true
	if r.down.IsZero() {
		return
	}
	lasted := time.Since(r.down)
	r.down = time.Time{}
	if r.OnBack != nil {
		r.OnBack(lasted)
	}
}

// UnreachableError is a Reconnector giving up: the server stayed
// unreachable for For, at least its Timeout. Err is the last error of the
// call; the UnreachableError unwraps to it, so status.Code still says
// codes.Unavailable.
type UnreachableError struct {
	For time.Duration
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("server unreachable for %s: %s", e.For.Round(time.Millisecond), status.Convert(e.Err).Message())
}

func (e *UnreachableError) Unwrap() error { return e.Err }
