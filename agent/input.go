package agent

// The input side of an attempt: bytes from the server (what `hodei run` or
// `hodei attach` sends) written to the job's PTY or stdin pipe, with flow
// control. The agent holds at most InputWindow bytes of an attempt's input;
// the server may send only up to the limit of the agent's last
// InputCredit, which grows as bytes are written to the job. A job that does
// not read its input fills its terminal or pipe, then this buffer, then
// the server stops sending, and the sender's own client stops reading its
// stdin: nothing grows without bound.

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	pb "github.com/hodei-jobs/hodei/proto"
)

// InputWindow is the most input bytes the agent holds for one attempt,
// received and not yet written to the job: the credit it gives the server.
const InputWindow = 64 << 10

// inputChunk is the most one write to the job takes, so that a credit
// follows each few KiB written.
const inputChunk = 4 << 10

// MaxSourceOffset bounds the offsets in a named input (JobInput.source):
// input past it is refused, so that no sum of an offset and a length
// overflows.
const MaxSourceOffset = 1 << 62

// Errors of jobInput.put: the server sent what the protocol does not allow.
var (
	errInputOffset = errors.New("input does not continue where the input received so far ends")
	errInputCredit = errors.New("input beyond the credit given")
	errInputSource = errors.New("input source offset out of range")
)

// jobInput is the input of one attempt: a buffer of at most InputWindow
// bytes and the goroutine that writes it to the job, which runs only while
// bytes (or the EOF) wait. Its methods are safe for concurrent use. The
// attempt owns it: close stops the writer and waits for it.
type jobInput struct {
	f   *os.File // the PTY master (shared with the output pump) or the stdin pipe's write end; nil: none
	pty bool

	mu sync.Mutex // guards the fields below
	// notify sends a credit (the bytes written so far, and whether the
	// input is closed) to the server on the agent's live stream; nil until
	// set.
	notify   func(written int64, closed bool)
	opened   bool   // the server opened the input: credits are sent
	buf      []byte // received, not yet written; at most InputWindow
	received int64  // bytes received in all
	written  int64  // bytes written to the job in all
	// src is the client the last bytes received came from (JobInput.source;
	// empty: unnamed) and srcEnd the offset after them in its input: an
	// open answers them, so that a client whose stream broke with the
	// server is not repeated when it sends its bytes again.
	src     string
	srcEnd  int64
	last    byte // the last byte written, for the EOF of a PTY
	eof     bool // the input ends after buf
	closed  bool // no more input: EOF delivered, attempt over, or a write failed
	running bool // the writer goroutine runs
	writer  sync.WaitGroup

	// chunk is the writer's copy of what it writes, kept across writers
	// (one runs at a time, from each burst of input: each key typed).
	chunk []byte
}

// newJobInput returns the input of an attempt writing to f (nil: the
// attempt takes no input, and an open answers closed).
func newJobInput(f *os.File, pty bool) *jobInput {
	return &jobInput{f: f, pty: pty, closed: f == nil}
}

// setNotify sets how credits reach the server.
func (in *jobInput) setNotify(fn func(written int64, closed bool)) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.notify = fn
}

// open answers the server's open: where the input stands. From then on
// every byte written is credited.
func (in *jobInput) open() *pb.InputCredit {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.opened = true
	return &pb.InputCredit{Opened: true, Offset: in.received, Limit: in.written + InputWindow, Closed: in.closed,
		Written: in.written, Source: in.src, SourceOffset: in.srcEnd}
}

// put takes data at offset (and the EOF after it) for the writer, from
// src at srcOffset (src empty: unnamed). It refuses data that does not
// continue the input or that goes beyond the credit given; after the
// input closed it drops everything.
func (in *jobInput) put(offset int64, data []byte, eof bool, src string, srcOffset int64) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	switch {
	case in.closed || in.eof:
		return nil
	case offset != in.received:
		return fmt.Errorf("%w: offset %d, received %d", errInputOffset, offset, in.received)
	case len(in.buf)+len(data) > InputWindow:
		return fmt.Errorf("%w: %d bytes held, %d more, window %d", errInputCredit, len(in.buf), len(data), InputWindow)
	case srcOffset < 0 || srcOffset > MaxSourceOffset-int64(len(data)):
		return fmt.Errorf("%w: %d bytes at %d, at most %d", errInputSource, len(data), srcOffset, int64(MaxSourceOffset))
	}
	in.buf = append(in.buf, data...)
	in.received += int64(len(data))
	if len(data) > 0 {
		in.src, in.srcEnd = src, srcOffset+int64(len(data))
	}
	in.eof = eof
	if !in.running && (len(in.buf) > 0 || in.eof) {
		in.running = true
		in.writer.Add(1)
		go in.write()
	}
	return nil
}

// write writes what is buffered to the job, a chunk at a time, crediting
// each chunk, then the EOF if asked, and returns when nothing is left.
func (in *jobInput) write() {
	defer in.writer.Done()
	for {
		in.mu.Lock()
		if in.closed || (len(in.buf) == 0 && !in.eof) {
			in.running = false
			in.mu.Unlock()
			return
		}
		if len(in.buf) == 0 { // only the EOF is left
			last := in.last
			in.mu.Unlock()
			err := in.endInput(last)
			in.finish(err)
			return
		}
		if in.chunk == nil {
			in.chunk = make([]byte, 0, inputChunk)
		}
		chunk := append(in.chunk[:0], in.buf[:min(len(in.buf), inputChunk)]...)
		in.mu.Unlock()

		n, err := in.f.Write(chunk)

		in.mu.Lock()
		in.buf = in.buf[:copy(in.buf, in.buf[n:])]
		in.written += int64(n)
		if n > 0 {
			in.last = chunk[n-1]
		}
		if err != nil {
			in.closed = true
		}
		written, closed, notify := in.written, in.closed, in.notifyLocked()
		in.mu.Unlock()
		if notify != nil {
			notify(written, closed)
		}
		if err != nil {
			return
		}
	}
}

// notifyLocked returns the credit sender once the server opened the input.
func (in *jobInput) notifyLocked() func(int64, bool) {
	if !in.opened {
		return nil
	}
	return in.notify
}

// endInput ends the job's input: the pipe is closed; a PTY is sent its EOF
// character (Ctrl-D unless the job changed it), twice when a line is
// pending, since the first only hands that line to the reader. In raw mode
// (no ICANON) there is no EOF on a terminal; Ctrl-D is sent all the same,
// as what programs in raw mode take for the end.
func (in *jobInput) endInput(last byte) error {
	if !in.pty {
		return in.f.Close()
	}
	veof, lineOpen := byte(4), false
	if rc, err := in.f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
			if err != nil {
				return
			}
			if c := t.Cc[unix.VEOF]; c != 0 {
				veof = c
			}
			lineOpen = t.Lflag&unix.ICANON != 0 && last != 0 && last != '\n' && last != veof
		})
	}
	eof := []byte{veof}
	if lineOpen {
		eof = append(eof, veof)
	}
	_, err := in.f.Write(eof)
	return err
}

// finish marks the input closed after the EOF and credits that.
func (in *jobInput) finish(err error) {
	in.mu.Lock()
	in.closed, in.running = true, false
	written, notify := in.written, in.notifyLocked()
	in.mu.Unlock()
	_ = err // the job's input is over either way
	if notify != nil {
		notify(written, true)
	}
}

// close ends the input for good (the attempt is over or released): a write
// under way is cut, the writer is waited for, and a pipe's write end is
// closed, so that what is left of the job reads EOF. The server is told
// when it had opened the input. It is idempotent.
func (in *jobInput) close() {
	in.mu.Lock()
	was := in.closed
	in.closed = true
	running := in.running
	written, notify := in.written, in.notifyLocked()
	in.mu.Unlock()
	if in.f != nil && running {
		_ = in.f.SetWriteDeadline(time.Now()) // wakes a write blocked on a full terminal or pipe
	}
	in.writer.Wait()
	if in.f != nil && !in.pty {
		_ = in.f.Close() // the pump owns a PTY's master
	}
	if !was && notify != nil {
		notify(written, true)
	}
}

// resize sets the size of the job's PTY; the kernel sends SIGWINCH to the
// job's foreground process group. Without a PTY it does nothing. The
// ioctl goes through the file's raw conn: Fd would put the master, which
// the output pump reads without blocking, back into blocking mode.
func (in *jobInput) resize(rows, cols uint16) error {
	if !in.pty || in.f == nil || rows == 0 || cols == 0 {
		return nil
	}
	rc, err := in.f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	err = rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
	return errors.Join(err, ierr)
}

// handleInput applies a JobInput from the server: an open is answered with
// a credit (once the attempt has started: it may still be starting), data
// goes to the attempt's input. It does not block the receive loop.
func (s *session) handleInput(m *pb.JobInput) {
	a := s.a
	r := ref{m.GetJobId(), int(m.GetAttempt())}
	t := a.task(r)
	if m.GetOpen() {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			cr := &pb.InputCredit{JobId: r.job, Attempt: int32(r.attempt), Opened: true, Closed: true}
			if t != nil {
				select {
				case <-t.ready:
				case <-s.ctx.Done():
					return
				}
				if t.att != nil {
					cr = t.att.openInput(s.ctx)
					cr.JobId, cr.Attempt = r.job, int32(r.attempt)
				}
			}
			s.send(s.ctrl, &pb.AgentMessage{Msg: &pb.AgentMessage_Credit{Credit: cr}})
		}()
		return
	}
	if t == nil {
		return
	}
	select {
	case <-t.ready:
	default:
		return // not opened yet: the server sends nothing before the answer to its open
	}
	if t.att == nil {
		return
	}
	if err := t.att.putInput(m.GetOffset(), m.GetData(), m.GetEof(), m.GetSource(), m.GetSourceOffset()); err != nil {
		a.log.Warn("input dropped", "job", r.job, "attempt", r.attempt, "err", err)
	}
}

// handleResize applies a ResizeJob from the server.
func (s *session) handleResize(m *pb.ResizeJob) {
	t := s.a.task(ref{m.GetJobId(), int(m.GetAttempt())})
	if t == nil {
		return
	}
	select {
	case <-t.ready:
	default:
		return
	}
	if t.att == nil {
		return
	}
	rows, cols := min(m.GetRows(), 0xffff), min(m.GetCols(), 0xffff)
	if err := t.att.resize(uint16(rows), uint16(cols)); err != nil {
		s.a.log.Warn("resize", "job", t.ref.job, "attempt", t.ref.attempt, "err", err)
	}
}

// creditSender returns how an attempt's credits reach the server: on the
// stream live when they are sent (a credit while no stream is up is lost;
// the server opens the input again on the next stream). The limit is
// InputWindow past what was written.
func (a *Agent) creditSender(r ref) func(written int64, closed bool) {
	return func(written int64, closed bool) {
		s := a.live.Load()
		if s == nil {
			return
		}
		s.send(s.ctrl, &pb.AgentMessage{Msg: &pb.AgentMessage_Credit{Credit: &pb.InputCredit{
			JobId: r.job, Attempt: int32(r.attempt), Limit: written + InputWindow, Closed: closed, Written: written,
		}}})
	}
}
