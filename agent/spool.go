package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// Spool errors.
var (
	// errSpoolClosed is returned by a spool after Close.
	errSpoolClosed = errors.New("spool closed")
	// errSpoolOffset is returned by Read for an offset past the end.
	errSpoolOffset = errors.New("offset past end of output")
)

// defaultReadMax is the chunk Read returns when asked for max <= 0.
const defaultReadMax = 64 << 10

// spool is one output stream of an attempt (the PTY output, or stdout or
// stderr with pipes): an append-only file with byte offsets from 0, the
// number of bytes written so far, and how many of them the server has
// acknowledged.
//
// The unacknowledged tail is served from the file itself (in practice from
// the page cache); memory holds only offsets, so a slow server costs disk,
// not RAM. What bounds the tail is the limit: once size-acked reaches it, the
// writer blocks until Ack makes room. Bytes below the acknowledged offset stay
// readable from the file until Close, for a server that asks for a resend
// after a reconnect.
//
// One goroutine writes (write, closeWrite); Read, Ack and the accessors are
// safe for concurrent use by any number of goroutines.
type spool struct {
	path string
	f    *os.File // nil until the first write, and for an empty spool; set under mu

	mu        sync.Mutex    // guards the fields below
	size      int64         // bytes written so far
	acked     int64         // the server stored everything before this offset
	limit     int64         // max size-acked before write blocks; 0: no limit
	closed    bool          // the writer has finished: no more bytes
	discarded bool          // Close was called
	werr      error         // first write error: output after it is lost
	wake      chan struct{} // made by a waiter, closed by the next change

	// mayHaveFile: the writer may have made its file without reporting a
	// byte (it died, or its first write failed), so Close removes it
	// whatever size is known.
	mayHaveFile bool

	// onWrite, when set (before the first write), is called after each
	// write that added bytes, outside mu: the supervisor tells the agent.
	onWrite func()
	// onAck, when set (before use), is called with each offset that Ack
	// advanced to, outside mu: the agent's copy of a spool the supervisor
	// writes passes acks on to the supervisor's.
	onAck func(int64)
}

// createSpool returns a new stream at path whose unacknowledged bytes are
// bounded by limit (0: unbounded). The file is created (or truncated) by the
// first write: most trivial jobs write nothing, and creating files in one
// directory from many jobs at once is what costs them most.
func createSpool(path string, limit int64) (*spool, error) {
	return &spool{path: path, limit: limit}, nil
}

// openSpoolForRead returns a closed spool over an existing file, for sending
// the output of an attempt again after an agent restart. Close removes the
// file.
func openSpoolForRead(path string) (*spool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open spool: %w", err)
	}
	return &spool{path: path, f: f, size: fi.Size(), closed: true}, nil
}

// emptySpool returns a closed spool with no bytes and no file: the stderr of
// an attempt with a PTY, or the output of one that never started.
func emptySpool() *spool { return &spool{closed: true} }

// Path returns the spool's file, "" for an empty spool without one.
func (s *spool) Path() string { return s.path }

// Read returns the bytes at [from, …), at most maxBytes of them (64 KiB when maxBytes
// <= 0). When none are there yet it blocks until some are written, the
// writer finishes or ctx is done (returning ctx.Err()). eof reports that the
// returned data reaches the end of a finished stream, so a reader can stop
// without another call; at the end of a finished stream Read returns no data
// and eof at once. If writing the file failed, the bytes before the failure
// are all there is and Read returns eof with that error at the end.
//
// Offsets below the acknowledged one remain readable. from past Size fails
// with errSpoolOffset, after Close Read fails with errSpoolClosed. The
// returned slice is the caller's.
func (s *spool) Read(ctx context.Context, from int64, maxBytes int) (data []byte, eof bool, err error) {
	if maxBytes <= 0 {
		maxBytes = defaultReadMax
	}
	for {
		s.mu.Lock()
		switch {
		case s.discarded:
			s.mu.Unlock()
			return nil, false, errSpoolClosed
		case from < 0 || from > s.size:
			size := s.size
			s.mu.Unlock()
			return nil, false, fmt.Errorf("read %d of %d bytes: %w", from, size, errSpoolOffset)
		case from < s.size:
			n := min(int64(maxBytes), s.size-from)
			eof = s.closed && s.werr == nil && from+n == s.size
			f := s.f // set: size > 0
			s.mu.Unlock()
			data = make([]byte, n)
			if _, err := f.ReadAt(data, from); err != nil {
				return nil, false, fmt.Errorf("read spool: %w", err)
			}
			return data, eof, nil
		case s.closed:
			werr := s.werr
			s.mu.Unlock()
			if werr != nil {
				return nil, true, fmt.Errorf("output lost after %d bytes: %w", from, werr)
			}
			return nil, true, nil
		}
		wake := s.waitLocked()
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// Ack records that the server stored every byte before upto, which frees
// room for a blocked writer. Offsets never move back; upto is capped at Size.
func (s *spool) Ack(upto int64) {
	s.mu.Lock()
	upto = min(upto, s.size)
	moved := upto > s.acked
	if moved {
		s.acked = upto
		s.notifyLocked()
	}
	s.mu.Unlock()
	if moved && s.onAck != nil {
		s.onAck(upto)
	}
}

// Acked returns the offset acknowledged so far.
func (s *spool) Acked() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked
}

// Size returns the number of bytes written so far.
func (s *spool) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Closed reports whether the writer has finished: Size is final.
func (s *spool) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// release closes the spool's file but leaves it on disk: a supervisor lets
// go of an attempt whose result and output files now belong to the agent's
// journal. A writer blocked on the limit returns errSpoolClosed.
func (s *spool) release() error {
	if _, err := s.discard(); err != nil {
		return fmt.Errorf("release spool: %w", err)
	}
	return nil
}

// discard marks the spool closed for good, wakes its waiters and closes
// its file; first is false when it was discarded already.
func (s *spool) discard() (first bool, err error) {
	first, _, err = s.discardFile()
	return first, err
}

// discardFile is discard, and reports whether the spool never had a file:
// its writer finished without a byte, and it makes its file on the first
// one (createSpool, and the supervisor's file that followSpool reads).
func (s *spool) discardFile() (first, noFile bool, err error) {
	s.mu.Lock()
	if s.discarded {
		s.mu.Unlock()
		return false, false, nil
	}
	s.discarded = true
	s.notifyLocked()
	f := s.f
	noFile = f == nil && s.closed && s.size == 0 && s.werr == nil && !s.mayHaveFile
	s.mu.Unlock()
	if f == nil {
		return true, noFile, nil
	}
	return true, false, f.Close()
}

// followSpool returns the agent's view of a spool that another process
// (the supervisor) writes at path: its size grows with grow, and its end
// comes with finish. Read serves the file; Ack passes offsets on to onAck;
// Close removes the file.
func followSpool(path string, onAck func(int64)) *spool {
	return &spool{path: path, onAck: onAck}
}

// grow records that the writer has written n bytes in all (less than what
// is known already changes nothing), opening the file on the first bytes.
func (s *spool) grow(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= s.size || s.discarded || s.werr != nil {
		return
	}
	if s.f == nil {
		f, err := os.Open(s.path)
		if err != nil {
			s.werr = fmt.Errorf("open spool: %w", err)
			s.closed = true
			s.notifyLocked()
			return
		}
		s.f = f
	}
	s.size = n
	s.notifyLocked()
}

// finish records the final size n of a followed spool: no more bytes.
func (s *spool) finish(n int64) {
	s.grow(n)
	s.closeWrite()
}

// fileUnknown records that the writer may have made the spool's file
// whatever size it reported: it died without a last report, or it could
// not write (a full disk: the file made, not a byte in it).
func (s *spool) fileUnknown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mayHaveFile = true
}

// Close releases the spool and removes its file: call it once the server has
// stored everything (or the output is abandoned). A writer blocked on the
// limit returns errSpoolClosed; later reads fail. Close is idempotent.
func (s *spool) Close() error {
	first, noFile, err := s.discardFile()
	if !first {
		return nil
	}
	// Most jobs write nothing, and their spools never had a file: a
	// failed unlink per job was a tenth of the agent's part of the
	// supervisor protocol. (A file its writer made and could not write
	// a byte to is swept at the agent's next start.)
	if s.path != "" && !noFile {
		// unlink alone: os.Remove tries rmdir after a failed unlink.
		if rerr := syscall.Unlink(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, &os.PathError{Op: "remove", Path: s.path, Err: rerr})
		}
	}
	if err != nil {
		return fmt.Errorf("close spool: %w", err)
	}
	return nil
}

// write appends p, blocking while size-acked is at the limit, so that the
// caller (the pump) stops reading the job's output. Once a write fails, every
// later one returns the same error.
func (s *spool) write(p []byte) error {
	for len(p) > 0 {
		s.mu.Lock()
		for s.limit > 0 && s.size-s.acked >= s.limit && !s.discarded {
			wake := s.waitLocked()
			s.mu.Unlock()
			<-wake
			s.mu.Lock()
		}
		if s.discarded {
			s.mu.Unlock()
			return errSpoolClosed
		}
		if s.werr != nil {
			s.mu.Unlock()
			return s.werr
		}
		n := len(p)
		if s.limit > 0 {
			n = int(min(int64(n), s.limit-(s.size-s.acked)))
		}
		if s.f == nil {
			f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				s.werr = fmt.Errorf("create spool: %w", err)
				s.notifyLocked()
				s.mu.Unlock()
				return s.werr
			}
			s.f = f
		}
		f := s.f
		s.mu.Unlock()

		// The file write happens outside the lock: readers use ReadAt
		// below size, which this write does not touch.
		m, err := f.Write(p[:n])
		if err == nil && m < n {
			err = io.ErrShortWrite
		}

		s.mu.Lock()
		s.size += int64(m)
		if err != nil {
			s.werr = err
		}
		s.notifyLocked()
		s.mu.Unlock()
		if m > 0 && s.onWrite != nil {
			s.onWrite()
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// closeWrite marks the end of the stream.
func (s *spool) closeWrite() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.notifyLocked()
}

// unlimit lifts the limit for good. After the job's processes are gone what
// is left to read is what the kernel buffered, and it must not wait for the
// server to drain.
func (s *spool) unlimit() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = 0
	s.notifyLocked()
}

// waitLocked returns a channel closed by the next change of the spool.
func (s *spool) waitLocked() <-chan struct{} {
	if s.wake == nil {
		s.wake = make(chan struct{})
	}
	return s.wake
}

// notifyLocked wakes everyone waiting for a change.
func (s *spool) notifyLocked() {
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
	}
}
