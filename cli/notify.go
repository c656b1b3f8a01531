package cli

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// sdNotifier tells systemd how serve or agent is doing, for a unit of
// Type=notify (deploy/systemd): READY=1 once it serves, WATCHDOG=1 while
// the loop that would stall keeps answering, STOPPING=1 when it stops.
// Outside systemd (no NOTIFY_SOCKET) every message is a no-op. The
// environment is left as it is: jobs do not inherit it (the agent builds
// theirs), and NotifyAccess=main ignores any other process anyway.
type sdNotifier struct {
	log *slog.Logger
	// watchdog is WatchdogSec (WATCHDOG_USEC, for this process); 0: off.
	watchdog time.Duration
	ready    sync.Once
}

// newSDNotifier reads the watchdog settings systemd passed.
func newSDNotifier(log *slog.Logger) *sdNotifier {
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog settings ignored", "err", err)
	}
	return &sdNotifier{log: log, watchdog: every}
}

func (n *sdNotifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Warn("cannot notify systemd", "state", state, "err", err)
	}
}

// Ready sends READY=1, the first time only. Safe for concurrent use.
func (n *sdNotifier) Ready() {
	n.ready.Do(func() { n.send(daemon.SdNotifyReady) })
}

// watch starts the goroutine that, until ctx ends or stop is called,
// pings the watchdog every half WatchdogSec whenever alive answered within
// that half (alive is the loop's own check, as cluster.Alive: a ping never
// comes from a timer alone, so a hung loop lets systemd restart the
// process), and then sends STOPPING=1. With readyOnAlive it sends READY=1
// at alive's first answer. stop waits for the goroutine.
func (n *sdNotifier) watch(ctx context.Context, alive func(context.Context) error, readyOnAlive bool) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer n.send(daemon.SdNotifyStopping)
		if readyOnAlive {
			if alive(ctx) != nil {
				return
			}
			n.Ready()
		}
		if n.watchdog <= 0 {
			<-ctx.Done()
			return
		}
		every := n.watchdog / 2
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			actx, acancel := context.WithTimeout(ctx, every)
			err := alive(actx)
			acancel()
			switch {
			case err == nil:
				n.send(daemon.SdNotifyWatchdog)
			case ctx.Err() == nil:
				n.log.Warn("no watchdog ping: the loop did not answer", "within", every)
			}
		}
	}()
	return func() { cancel(); <-done }
}
