package server

import (
	"sync"

	pb "github.com/hodei-jobs/hodei/proto"
)

// sendQueue is how many orders may wait for one agent's stream. An agent
// that falls this far behind is disconnected; it reconciles on reconnect.
const sendQueue = 4096

// outbox is one agent stream's queue of server messages, bounded at
// sendQueue, and its sender. Unlike a channel of that capacity (32 KiB of
// pointers from the start) and a goroutine that waits on it, it holds
// memory only while messages wait: a sender goroutine runs only while the
// queue is not empty, so that the thousands of idle agents of a large
// cluster cost the server little (BenchmarkIdleAgentMemory). Messages go
// out in the order they were pushed, one sender at a time.
//
// The zero value holds messages without sending them; start starts
// sending and close stops it. push is safe from any goroutine.
type outbox struct {
	// send writes one message to the stream and fail is told when it
	// fails; both are set before start and not changed after.
	send func(*pb.ServerMessage) error
	fail func(error)

	mu      sync.Mutex
	msgs    []outMsg       // guarded by mu; nil while empty
	started bool           // start was called; guarded by mu
	sending bool           // a sender goroutine runs; guarded by mu
	closed  bool           // close was called or a send failed; guarded by mu
	sender  sync.WaitGroup // the sender goroutine; Add under mu
}

// outMsg is one queued message and what to call once it is sent.
type outMsg struct {
	msg  *pb.ServerMessage
	sent func() // nil: nothing
}

// push queues msg and reports false when the queue is full. After close
// (the stream is over) it drops msg and reports true, as a message queued
// just before the end would have been lost too; the agent reconciles when
// it reconnects.
//
// Before start the queue has no limit: it holds the answer to the
// agent's Hello (the Welcome, an ack for each result it kept, an order
// for each attempt it holds), which the Hello's own size bounds (the
// server's request limit). With the limit, a worker that kept more
// results than sendQueue, or holds more attempts than that, would be cut
// before anything was sent, and again each time it came back with the
// same Hello.
func (o *outbox) push(msg *pb.ServerMessage) bool { return o.pushSent(msg, nil) }

// pushSent is push with a function the sender calls once msg is sent
// (never for a message dropped by close or a failed send): a job's input
// counts its messages in flight with it, so that a client typing a byte
// at a time cannot fill the agent's queue (terminal.go).
func (o *outbox) pushSent(msg *pb.ServerMessage, sent func()) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.closed:
		return true
	case o.started && len(o.msgs) >= sendQueue:
		return false
	}
	o.msgs = append(o.msgs, outMsg{msg, sent})
	o.wakeLocked()
	return true
}

// start sends what is queued and from then on what is pushed.
func (o *outbox) start() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.started = true
	if len(o.msgs) > 0 {
		o.wakeLocked()
	}
}

// wakeLocked starts the sender unless it runs, has not been started or
// is closed. The sender is counted before mu is released, so that close
// cannot miss it.
func (o *outbox) wakeLocked() {
	if !o.started || o.sending || o.closed {
		return
	}
	o.sending = true
	o.sender.Add(1)
	go o.run()
}

// run sends until the queue is empty, then ends.
func (o *outbox) run() {
	defer o.sender.Done()
	for {
		o.mu.Lock()
		msgs := o.msgs
		o.msgs = nil
		if len(msgs) == 0 || o.closed {
			o.sending = false
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
		for _, m := range msgs {
			if err := o.send(m.msg); err != nil {
				o.mu.Lock()
				o.closed, o.sending, o.msgs = true, false, nil
				o.mu.Unlock()
				o.fail(err)
				return
			}
			if m.sent != nil {
				m.sent()
			}
		}
	}
}

// close drops what is queued, stops sending and waits until the sender
// has returned: after close nothing is sent. A send blocked on flow
// control returns only once the stream's context ends; end it first.
func (o *outbox) close() {
	o.mu.Lock()
	o.closed, o.msgs = true, nil
	o.mu.Unlock()
	o.sender.Wait()
}
