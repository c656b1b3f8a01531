package server

import "sync"

// signals lets goroutines wait for "something changed" on a key (a job's
// log grew, its state moved). A waiter takes the channel first, then checks
// its condition, then waits on the channel, so no change is missed; it
// calls the release function it got when it stops waiting, so that keys
// nobody waits on take no memory.
type signals struct {
	mu sync.Mutex
	m  map[string]*signal // guarded by mu
}

type signal struct {
	ch      chan struct{}
	waiters int
}

// wait returns a channel that is closed at the next fire(key), and the
// function to call once the caller no longer needs it.
func (s *signals) wait(key string) (<-chan struct{}, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]*signal)
	}
	sig, ok := s.m[key]
	if !ok {
		sig = &signal{ch: make(chan struct{})}
		s.m[key] = sig
	}
	sig.waiters++
	return sig.ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		sig.waiters--
		if sig.waiters == 0 && s.m[key] == sig {
			delete(s.m, key)
		}
	}
}

// fire wakes every waiter on key.
func (s *signals) fire(key string) {
	s.mu.Lock()
	sig, ok := s.m[key]
	delete(s.m, key)
	s.mu.Unlock()
	if ok {
		close(sig.ch)
	}
}
