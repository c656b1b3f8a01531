package agent

// The supervisor: the process that holds an agent's jobs (their PTYs or
// pipes, process groups, output spools, input, timeouts and results), so
// that they outlive the agent's network process. One runs per data dir
// (two for a while after an upgrade); the agent drives it over a unix
// socket (supproto.go) and reads the output from the spool files it writes.

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hodei-jobs/hodei/job"
)

// supDir is the directory in the data dir of the supervisors' sockets
// (<pid>.sock) and their shared log (supervisor.log).
const supDir = "supervisor"

// supFirstConnect is how long a new supervisor waits for an agent before
// it gives up and exits.
const supFirstConnect = 30 * time.Second

// supervisor serves one socket. Its goroutines: the accept loop, a reader
// and a writer per connection, a start per attempt being started and a
// watcher per running attempt; run waits for all of them.
type supervisor struct {
	dataDir  string
	spoolDir string
	sock     string
	version  string
	log      *slog.Logger
	ln       *net.UnixListener
	wg       sync.WaitGroup

	conn atomic.Pointer[supConn] // the agent's connection; nil when none

	mu       sync.Mutex
	atts     map[ref]*supAttempt // running, or ended and not released; guarded by mu
	starting int                 // starts under way; guarded by mu
	retired  bool                // no new starts; guarded by mu
	seen     bool                // an agent said hello once; guarded by mu
	conns    map[*supConn]bool   // every open connection; guarded by mu
	changed  chan struct{}       // poked when the exit condition may hold
}

// supAttempt is one attempt a supervisor holds.
type supAttempt struct {
	ref   ref
	att   *attempt
	noPTY bool
	ended bool // guarded by supervisor.mu
}

// runSupervisor serves DATA-DIR/supervisor/<pid>.sock until it holds no
// attempt and no agent is connected (or it is retired and holds none),
// then removes the socket and returns. ready, when not nil, is sent the
// pid once the socket listens, and closed.
func runSupervisor(dataDir, version string, log *slog.Logger, ready io.WriteCloser) error {
	dir := filepath.Join(dataDir, supDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("supervisor dir: %w", err)
	}
	s := &supervisor{
		dataDir: dataDir, spoolDir: filepath.Join(dataDir, "spool"), version: version,
		sock: filepath.Join(dir, strconv.Itoa(os.Getpid())+".sock"),
		log:  log.With("component", "supervisor", "pid", os.Getpid()),
		atts: make(map[ref]*supAttempt), conns: make(map[*supConn]bool), changed: make(chan struct{}, 1),
	}
	_ = os.Remove(s.sock) // a stale one of a process that had this pid
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.sock, Net: "unix"})
	if err != nil {
		return fmt.Errorf("supervisor socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(s.sock, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("supervisor socket: %w", err)
	}
	s.ln = ln
	s.log.Info("supervisor started", "socket", s.sock, "version", version)
	if ready != nil {
		fmt.Fprintf(ready, "%d\n", os.Getpid())
		ready.Close()
	}
	s.wg.Go(s.accept)
	first := time.NewTimer(supFirstConnect)
	defer first.Stop()
	// SIGTERM or SIGINT sent to the supervisor itself (not the agent's)
	// stops its jobs, each with its kill grace, and it exits once they
	// ended: their results are lost, and the server fails them as lost.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(term)
	for done := false; !done; {
		select {
		case sig := <-term:
			s.terminate(sig)
			done = true
		case <-s.changed:
			done = s.idle()
		case <-first.C:
			s.mu.Lock()
			done = !s.seen && len(s.atts) == 0 && s.starting == 0
			s.mu.Unlock()
		}
	}
	s.log.Info("supervisor exiting: no attempts left and no agent connected")
	ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// terminate stops every attempt and waits for them to end.
func (s *supervisor) terminate(sig os.Signal) {
	s.mu.Lock()
	s.retired = true
	atts := make([]*supAttempt, 0, len(s.atts))
	for _, sa := range s.atts {
		atts = append(atts, sa)
	}
	s.mu.Unlock()
	s.log.Warn("supervisor terminated: stopping its jobs", "signal", sig.String(), "jobs", len(atts))
	for _, sa := range atts {
		sa.att.Stop("supervisor terminated ("+sig.String()+")", 0)
	}
	for _, sa := range atts {
		<-sa.att.Done()
	}
}

// idle reports whether the supervisor should exit: it holds nothing and
// either no agent is connected (after one was) or it is retired.
func (s *supervisor) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen && len(s.atts) == 0 && s.starting == 0 && (s.retired || s.conn.Load() == nil)
}

func (s *supervisor) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// accept takes connections until the listener closes. Only a peer of the
// supervisor's own user (or root) is served.
func (s *supervisor) accept() {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		if err := checkPeer(c); err != nil {
			s.log.Warn("connection refused", "err", err)
			c.Close()
			continue
		}
		sc := &supConn{s: s, c: c, wake: make(chan struct{}, 1), done: make(chan struct{}), dirty: make(map[*supAttempt]bool)}
		s.mu.Lock()
		s.conns[sc] = true
		s.mu.Unlock()
		s.wg.Go(sc.read)
		s.wg.Go(sc.write)
	}
}

// checkPeer refuses a peer whose uid is neither this process's nor root's.
func checkPeer(c *net.UnixConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("peer credentials: %w", cerr)
	}
	if int(cred.Uid) != os.Getuid() && cred.Uid != 0 {
		return fmt.Errorf("peer pid %d runs as uid %d, not %d", cred.Pid, cred.Uid, os.Getuid())
	}
	return nil
}

// supConn is one connection. Control messages go out in the order queued;
// progress is coalesced: what goes out is the sizes at the time of sending.
type supConn struct {
	s    *supervisor
	c    *net.UnixConn
	wake chan struct{}
	done chan struct{} // closed by close

	mu     sync.Mutex
	queue  []*supMsg            // guarded by mu
	dirty  map[*supAttempt]bool // guarded by mu
	closed bool                 // guarded by mu
}

func (c *supConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.done)
		c.c.Close()
	}
}

func (c *supConn) push(m *supMsg) {
	c.mu.Lock()
	if !c.closed {
		c.queue = append(c.queue, m)
	}
	c.mu.Unlock()
	c.poke()
}

func (c *supConn) progress(sa *supAttempt) {
	c.mu.Lock()
	c.dirty[sa] = true
	c.mu.Unlock()
	c.poke()
}

func (c *supConn) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// write sends what is queued, then the sizes of the attempts that wrote,
// until the connection closes.
func (c *supConn) write() {
	var buf []byte
	var queue []*supMsg
	var dirty []*supAttempt
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		c.mu.Lock()
		queue, c.queue = c.queue, queue[:0]
		for sa := range c.dirty {
			dirty = append(dirty, sa)
		}
		clear(c.dirty)
		c.mu.Unlock()
		buf = buf[:0]
		for _, m := range queue {
			var err error
			if buf, err = appendFrame(buf, m); err != nil {
				c.s.log.Error("supervisor message dropped", "err", err)
			}
		}
		for _, sa := range dirty {
			buf, _ = appendFrame(buf, &supMsg{Op: opProgress, Job: sa.ref.job, Attempt: sa.ref.attempt,
				Out: sa.att.Output().Size(), Err: sa.att.Stderr().Size()})
		}
		clear(queue)
		dirty = dirty[:0]
		if _, err := c.c.Write(buf); err != nil {
			c.s.drop(c, err)
			return
		}
	}
}

// read serves the connection's messages until it breaks or breaks the
// protocol: a peer that sends anything but a hello first, a frame that
// does not decode or one that is too large is cut off, and nothing else
// changes.
func (c *supConn) read() {
	var buf []byte
	var m supMsg
	var err error
	if buf, err = readFrame(c.c, buf, &m); err != nil || m.Op != opHello || m.Proto < 1 {
		if err == nil {
			err = fmt.Errorf("first message %q (protocol %d), want hello", m.Op, m.Proto)
		}
		if !errors.Is(err, io.EOF) {
			c.s.log.Warn("connection dropped", "err", err)
		}
		c.close()
		c.s.forget(c)
		return
	}
	c.s.attach(c, m.Version)
	for {
		if buf, err = readFrame(c.c, buf, &m); err != nil {
			c.s.drop(c, err)
			return
		}
		c.s.handle(c, &m)
	}
}

// forget drops a connection that never said hello.
func (s *supervisor) forget(c *supConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// attach makes c the agent's connection and sends it the welcome; an
// earlier connection is closed.
func (s *supervisor) attach(c *supConn, agentVersion string) {
	s.mu.Lock()
	old := s.conn.Swap(c)
	s.seen = true
	w := &supMsg{Op: opWelcome, Proto: supProto, Version: s.version, Pid: os.Getpid(), Retired: s.retired}
	for _, sa := range s.atts {
		pid, at, _ := sa.att.Started()
		h := supHeld{Job: sa.ref.job, Attempt: sa.ref.attempt, Pid: pid, At: at.UnixNano(), NoPTY: sa.noPTY,
			Out: sa.att.Output().Size(), Err: sa.att.Stderr().Size()}
		if sa.ended {
			h.Exit = toWireExit(sa.att.Exit())
		}
		w.Attempts = append(w.Attempts, h)
	}
	c.push(w) // before the lock goes: an exit pushed later follows it
	s.mu.Unlock()
	if old != nil {
		old.close()
	}
	s.log.Info("agent connected", "agent_version", agentVersion, "attempts", len(w.Attempts))
}

// drop ends a connection that broke.
func (s *supervisor) drop(c *supConn, err error) {
	c.close()
	s.mu.Lock()
	delete(s.conns, c)
	was := s.conn.CompareAndSwap(c, nil)
	n := len(s.atts)
	s.mu.Unlock()
	if was {
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			s.log.Info("agent disconnected", "attempts", n)
		} else {
			s.log.Warn("agent connection dropped", "attempts", n, "err", err)
		}
	}
	s.poke()
}

func (s *supervisor) attempt(r ref) *supAttempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.atts[r]
}

// handle applies one message of the agent.
func (s *supervisor) handle(c *supConn, m *supMsg) {
	r := ref{m.Job, m.Attempt}
	switch m.Op {
	case opStart:
		s.mu.Lock()
		retired := s.retired
		if !retired {
			s.starting++
		}
		s.mu.Unlock()
		if retired || m.Spec == nil {
			reason := "the supervisor is retired and takes no new jobs"
			if m.Spec == nil {
				reason = "start without a spec"
			}
			c.push(&supMsg{Op: opExit, Job: r.job, Attempt: r.attempt,
				Exit: toWireExit(exit{Outcome: startFailed, ExitCode: -1, Reason: reason, Finished: time.Now()})})
			return
		}
		spec := *m.Spec
		s.wg.Go(func() { s.start(c, r, spec) }) // a fork and an exec: several at once
	case opRetire:
		s.mu.Lock()
		s.retired = true
		s.mu.Unlock()
		s.log.Info("retired: no new jobs; exiting once the last attempt is released")
		s.poke()
	case opGoodbye:
		s.log.Info("agent said goodbye", "exit_when_idle", m.ExitIdle)
		if m.ExitIdle {
			s.mu.Lock()
			s.retired = true
			s.mu.Unlock()
		}
		s.poke()
	case opRelease:
		s.mu.Lock()
		sa := s.atts[r]
		delete(s.atts, r)
		s.mu.Unlock()
		if sa != nil {
			_ = sa.att.release() // ended: nothing waits
			s.poke()
		}
	default:
		sa := s.attempt(r)
		if sa == nil {
			return // released, or unknown: nothing to do
		}
		s.handleAttempt(c, sa, m)
	}
}

// handleAttempt applies a message about one attempt.
func (s *supervisor) handleAttempt(c *supConn, sa *supAttempt, m *supMsg) {
	att := sa.att
	switch m.Op {
	case opAck:
		if m.Stream == 1 {
			att.Stderr().Ack(m.Offset)
		} else {
			att.Output().Ack(m.Offset)
		}
	case opOpenInput:
		cr := att.Input().open()
		c.push(&supMsg{Op: opCredit, Job: m.Job, Attempt: m.Attempt, Credit: &wireCredit{Opened: true, Offset: cr.GetOffset(),
			Limit: cr.GetLimit(), Closed: cr.GetClosed(), Written: cr.GetWritten(), Source: cr.GetSource(), SourceOffset: cr.GetSourceOffset()}})
	case opInput:
		if in := m.Input; in != nil {
			if err := att.Input().put(in.Offset, in.Data, in.EOF, in.Source, in.SourceOffset); err != nil {
				s.log.Warn("input dropped", "job", m.Job, "attempt", m.Attempt, "err", err)
			}
		}
	case opResize:
		if err := att.Input().resize(m.Rows, m.Cols); err != nil {
			s.log.Warn("resize", "job", m.Job, "attempt", m.Attempt, "err", err)
		}
	case opStop:
		att.Stop(m.Reason, time.Duration(m.Grace))
	case opKill:
		att.killNow("attempt closed")
	}
}

// start starts one attempt and answers the agent.
func (s *supervisor) start(c *supConn, r ref, w wireSpec) {
	sa := &supAttempt{ref: r, noPTY: w.NoPTY}
	spec := attemptSpec{JobID: r.job, Attempt: r.attempt, Argv: w.Argv, Env: w.Env, SecretEnv: w.SecretEnv, Dir: w.Dir,
		NoPTY: w.NoPTY, Stdin: job.Stdin(w.Stdin), Rows: w.Rows, Cols: w.Cols, Timeout: time.Duration(w.Timeout)}
	if u := w.User; u != nil {
		spec.User = &runUser{Name: u.Name, UID: u.UID, GID: u.GID, Groups: u.Groups, Home: u.Home}
	}
	ready := make(chan struct{})
	att := startAttempt(spec, attemptOptions{SpoolDir: s.spoolDir, BufferLimit: w.BufferLimit, KillGrace: time.Duration(w.KillGrace),
		Progress: func() {
			<-ready // the first write may come before sa.att is set
			if c := s.conn.Load(); c != nil {
				c.progress(sa)
			}
		}})
	sa.att = att
	close(ready)
	att.Input().setNotify(func(written int64, closed bool) {
		if c := s.conn.Load(); c != nil {
			c.push(&supMsg{Op: opCredit, Job: r.job, Attempt: r.attempt,
				Credit: &wireCredit{Limit: written + InputWindow, Closed: closed, Written: written}})
		}
	})
	s.mu.Lock()
	s.starting--
	if _, _, started := att.Started(); !started { // nothing to hold
		s.mu.Unlock()
		c.push(&supMsg{Op: opExit, Job: r.job, Attempt: r.attempt, Exit: toWireExit(att.Exit())})
		s.poke()
		return
	}
	// A job may have ended already (a fast one often has): it is held and
	// reported as any other, started first, then its exit with its sizes.
	s.atts[r] = sa
	s.mu.Unlock()
	pid, at, _ := att.Started()
	c.push(&supMsg{Op: opStarted, Job: r.job, Attempt: r.attempt, Pid: pid, At: at.UnixNano(),
		Out: att.Output().Size(), Err: att.Stderr().Size()})
	<-att.Done()
	s.mu.Lock()
	sa.ended = true
	cur := s.conn.Load()
	if cur != nil {
		cur.push(&supMsg{Op: opExit, Job: r.job, Attempt: r.attempt, Exit: toWireExit(att.Exit()),
			Out: att.Output().Size(), Err: att.Stderr().Size()})
	}
	s.mu.Unlock()
}

// killNow kills the attempt's group at once (SIGKILL), its outcome killed
// with reason unless it was stopping already. It does not wait.
func (a *attempt) killNow(reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pid != 0 && !a.leaderGone {
		if a.stopping == 0 {
			a.stopping, a.stopReason = killed, reason
		}
		_ = syscall.Kill(-a.pid, syscall.SIGKILL)
	}
}
