package server

import (
	"sync"

	pb "github.com/hodei-jobs/hodei/proto"
)

// sendQueue is how many orders may wait for one agent's stream. An agent
// that falls this far behind is disconnected; it reconciles on reconnect.
const sendQueue = 4096

// outbox is one agent stream's queue of server messages, bounded at
// sendQueue. Unlike a channel of that capacity (32 KiB of pointers from the
// start), it holds memory only while messages wait, so that the thousands
// of idle agents of a large cluster cost the server little. push never
// blocks; one goroutine takes.
type outbox struct {
	mu    sync.Mutex
	msgs  []*pb.ServerMessage // guarded by mu; nil while empty
	ready chan struct{}       // holds a token while msgs may be non-empty
}

func newOutbox() *outbox { return &outbox{ready: make(chan struct{}, 1)} }

// push queues msg and reports false when the queue is full.
func (o *outbox) push(msg *pb.ServerMessage) bool {
	o.mu.Lock()
	if len(o.msgs) >= sendQueue {
		o.mu.Unlock()
		return false
	}
	o.msgs = append(o.msgs, msg)
	o.mu.Unlock()
	select {
	case o.ready <- struct{}{}:
	default: // a token is already there
	}
	return true
}

// take returns every queued message, oldest first, and empties the queue.
func (o *outbox) take() []*pb.ServerMessage {
	o.mu.Lock()
	defer o.mu.Unlock()
	msgs := o.msgs
	o.msgs = nil
	return msgs
}
