package server

import "sync"

// signals lets goroutines wait for "something changed" on a key (a job's
// log grew, its state moved). A waiter takes the channel first, then checks
// its condition, then waits on the channel, so no change is missed.
type signals struct {
	mu sync.Mutex
	m  map[string]chan struct{} // guarded by mu
}

// wait returns a channel that is closed at the next fire(key).
func (s *signals) wait(key string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]chan struct{})
	}
	ch, ok := s.m[key]
	if !ok {
		ch = make(chan struct{})
		s.m[key] = ch
	}
	return ch
}

// fire wakes every waiter on key.
func (s *signals) fire(key string) {
	s.mu.Lock()
	ch, ok := s.m[key]
	delete(s.m, key)
	s.mu.Unlock()
	if ok {
		close(ch)
	}
}
