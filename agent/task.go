package agent

import (
	"sync"

	pb "github.com/hodei-jobs/hodei/proto"
)

// task is one attempt the agent holds: running, or ended with a result the
// server has not acknowledged yet (possibly recovered from the journal after
// a restart, then att is nil).
type task struct {
	ref ref
	// att, out and errs are set once, before ready is closed; read them
	// only after <-ready.
	att       *remoteAttempt
	out, errs *spool
	ready     chan struct{}

	mu     sync.Mutex
	result *pb.JobFinished // nil while the attempt runs
	acked  [2]int64        // bytes the server holds, per stream (output, stderr)
	ended  chan struct{}   // closed when result is set
	gone   chan struct{}   // closed when the server acknowledged the result
	resync chan struct{}   // the server lacks bytes the sender thought delivered
}

// newTask returns a task whose attempt is still to be set with started.
func newTask(r ref) *task {
	return &task{ref: r, ready: make(chan struct{}),
		ended: make(chan struct{}), gone: make(chan struct{}), resync: make(chan struct{}, 1)}
}

// started sets the task's attempt (nil for one recovered from the journal)
// and its output, and makes them visible.
func (t *task) started(att *remoteAttempt, out, errs *spool) {
	t.att, t.out, t.errs = att, out, errs
	close(t.ready)
}

// finish records the attempt's result.
func (t *task) finish(res *pb.JobFinished) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.result == nil {
		t.result = res
		close(t.ended)
	}
}

// outcome returns the result, or nil while the attempt runs.
func (t *task) outcome() *pb.JobFinished {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.result
}

// delivered marks the task acknowledged: its pumps stop.
func (t *task) delivered() {
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.gone:
	default:
		close(t.gone)
	}
}

// isGone reports whether the server acknowledged the task's result.
func (t *task) isGone() bool {
	select {
	case <-t.gone:
		return true
	default:
		return false
	}
}

func (t *task) spool(s pb.LogStream) *spool {
	if s == pb.LogStream_LOG_STREAM_STDERR {
		return t.errs
	}
	return t.out
}

// ack records what the server holds of a stream and frees that much of the
// spool's buffer.
func (t *task) ack(s pb.LogStream, offset int64) {
	offset = min(offset, t.spool(s).Size()) // the server cannot hold more than was written
	t.mu.Lock()
	if offset > t.acked[s] {
		t.acked[s] = offset
	}
	t.mu.Unlock()
	t.spool(s).Ack(offset)
}

// rewind sets what the server holds of a stream after it reported less
// than the sender assumed (a gap, or a result sent too early).
func (t *task) rewind(s pb.LogStream, offset int64) {
	offset = min(offset, t.spool(s).Size())
	t.mu.Lock()
	t.acked[s] = offset
	t.mu.Unlock()
	t.askResync()
}

// ackedOffsets returns the server's offsets of both streams.
func (t *task) ackedOffsets() [2]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.acked
}

// unacked returns the bytes of its output, both streams, that the server
// has not acknowledged: 0 for a task whose attempt has not started.
func (t *task) unacked() int64 {
	select {
	case <-t.ready:
	default:
		return 0
	}
	var n int64
	for _, s := range [...]*spool{t.out, t.errs} {
		if s != nil {
			n += max(s.Size()-s.Acked(), 0)
		}
	}
	return n
}

// fullyAcked reports whether the server holds the task's whole output.
func (t *task) fullyAcked() bool {
	res := t.outcome()
	a := t.ackedOffsets()
	return res != nil && a[0] >= res.GetLogSize() && a[1] >= res.GetStderrSize()
}

// askResync wakes the sender to re-send from the acknowledged offsets.
func (t *task) askResync() {
	select {
	case t.resync <- struct{}{}:
	default:
	}
}
