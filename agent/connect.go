package agent

import (
	"time"

	"google.golang.org/grpc/status"
)

// ConnectEvent is what Run tells Config.OnConnect about its connection to
// the server: a server welcomed the agent (Connected), or an attempt to
// connect failed (Err) or a stream broke, and the next attempt is in
// Retry.
type ConnectEvent struct {
	Connected bool
	// Welcomed: a server welcomed this process before, so this is a
	// reconnect (or, with Err, a stream that broke).
	Welcomed bool
	Err      error
	Retry    time.Duration
	// Failures counts the attempts that failed in a row, this one
	// included; events of failures in between were left out.
	Failures int
}

// failureReportEvery is how often an agent that keeps failing to connect
// for the same reason says so again; a new reason is said at once.
const failureReportEvery = 30 * time.Second

// failureReports decides which failed attempts to connect are worth a
// line: the first, one with a reason unlike the last reported, and then
// one every failureReportEvery, so that a server away for long does not
// give a line per retry. The zero value is ready; it is used by Run's
// goroutine only.
type failureReports struct {
	failures int
	last     time.Time // of the last report
	reason   string    // of the last report
}

// failed counts a failed attempt at now and reports whether to tell it.
func (f *failureReports) failed(now time.Time, err error) bool {
	f.failures++
	reason := status.Convert(err).Message()
	if f.failures > 1 && reason == f.reason && now.Sub(f.last) < failureReportEvery {
		return false
	}
	f.last, f.reason = now, reason
	return true
}

// connected starts over after a welcome.
func (f *failureReports) connected() { *f = failureReports{} }
