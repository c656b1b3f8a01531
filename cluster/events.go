package cluster

import (
	"sync"

	"github.com/hodei-jobs/hodei/job"
)

// Subscription receives every published job version that passes its filter.
// C is closed when the subscription ends: by Close, or because the reader
// fell more than its buffer behind (then Overflowed reports true).
type Subscription struct {
	C <-chan *job.Job

	ch       chan *job.Job
	filter   func(*job.Job) bool
	hub      *hub
	overflow bool // guarded by hub.mu
	closed   bool // guarded by hub.mu
}

// Close ends the subscription. It is safe to call more than once.
func (s *Subscription) Close() { s.hub.remove(s, false) }

// Overflowed reports whether C was closed because the reader was too slow.
func (s *Subscription) Overflowed() bool {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.overflow
}

// hub fans job changes out to subscribers without ever blocking a writer.
type hub struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

func (h *hub) subscribe(buffer int, filter func(*job.Job) bool) *Subscription {
	ch := make(chan *job.Job, buffer)
	s := &Subscription{C: ch, ch: ch, filter: filter, hub: h}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = make(map[*Subscription]struct{})
	}
	h.subs[s] = struct{}{}
	return s
}

func (h *hub) remove(s *Subscription, overflow bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return
	}
	s.closed, s.overflow = true, overflow
	delete(h.subs, s)
	close(s.ch)
}

func (h *hub) publish(j *job.Job) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if s.filter != nil && !s.filter(j) {
			continue
		}
		select {
		case s.ch <- j:
		default:
			s.closed, s.overflow = true, true
			delete(h.subs, s)
			close(s.ch)
		}
	}
}
