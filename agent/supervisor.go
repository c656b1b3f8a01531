package agent

// The supervisor: the process that holds an agent's jobs (their PTYs or
// pipes, process groups, output spools, input, timeouts and results), so
// that they outlive the agent's network process. One runs per data dir
// (two for a while after an upgrade); the agent drives it over a unix
// socket (supproto.go) and reads the output from the spool files it writes.

import (
	"bufio"
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
	// reaper reaps the orphans of the jobs (the supervisor is their child
	// subreaper) and counts their usage; nil when the kernel refused.
	reaper *reaper

	mu      sync.Mutex
	atts    map[ref]*supAttempt // being started, running, or ended and not released; guarded by mu
	retired bool                // no new starts; guarded by mu
	seen    bool                // an agent said hello once; guarded by mu
	conns   map[*supConn]bool   // every open connection; guarded by mu
	changed chan struct{}       // poked when the exit condition may hold
}

// supAttempt is one attempt a supervisor holds, from the moment its start
// is taken: an agent that connects while it is being started is told of
// it (as starting), and its started and exit go to whatever connection is
// the agent's when they happen.
type supAttempt struct {
	ref   ref
	noPTY bool
	ready chan struct{} // closed once att is set (started, or failed to)

	att     *attempt  // nil while starting; set under supervisor.mu, then ready is closed
	live    bool      // messages about it are applied at once; guarded by supervisor.mu
	pending []*supMsg // messages about it that came while it was starting, in order; guarded by supervisor.mu
	ended   bool      // guarded by supervisor.mu
}

// supStartHook, when set (by a test), is called by each start before the
// fork: a test holds a start in flight with it.
var supStartHook atomic.Pointer[func(dataDir string, r ref)]

// runSupervisor serves DATA-DIR/supervisor/<pid>.sock until it holds no
// attempt and no agent is connected (or it is retired and holds none),
// then removes the socket and returns. ready, when not nil, is sent the
// pid once the socket listens, and closed. own says that the supervisor is
// its process's only business (`hodei agent supervise`), not run inside
// another program: it then reaps every orphan of its jobs (reaper.go).
func runSupervisor(dataDir, version string, log *slog.Logger, ready io.WriteCloser, own bool) error {
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
	if s.reaper, err = newReaper(s.log, own); err != nil {
		s.log.Warn("orphans of jobs will not be counted in their usage", "err", err)
	}
	defer s.reaper.close()
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
			done = !s.seen && len(s.atts) == 0
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

// terminate stops every attempt (one being started once it started) and
// waits for them to end.
func (s *supervisor) terminate(sig os.Signal) {
	reason := "supervisor terminated (" + sig.String() + ")"
	s.mu.Lock()
	s.retired = true
	atts := make([]*supAttempt, 0, len(s.atts))
	var live []*supAttempt
	for _, sa := range s.atts {
		atts = append(atts, sa)
		if sa.live {
			live = append(live, sa)
		} else {
			sa.pending = append(sa.pending, &supMsg{Op: opStop, Job: sa.ref.job, Attempt: sa.ref.attempt, Reason: reason})
		}
	}
	s.mu.Unlock()
	s.log.Warn("supervisor terminated: stopping its jobs", "signal", sig.String(), "jobs", len(atts))
	for _, sa := range live {
		sa.att.Stop(reason, 0)
	}
	for _, sa := range atts {
		<-sa.ready
		<-sa.att.Done()
	}
}

// idle reports whether the supervisor should exit: it holds nothing and
// either no agent is connected (after one was) or it is retired.
func (s *supervisor) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen && len(s.atts) == 0 && (s.retired || s.conn.Load() == nil)
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
// Whoever holds the writing turn sends everything queued: the goroutine
// that queued a started or an exit sends it itself (flush) rather than
// waking the writer, which sends the rest.
type supConn struct {
	s    *supervisor
	c    *net.UnixConn
	wake chan struct{}
	done chan struct{} // closed by close

	mu      sync.Mutex
	queue   []*supMsg            // guarded by mu
	dirty   map[*supAttempt]bool // guarded by mu
	closed  bool                 // guarded by mu
	writing bool                 // guarded by mu: someone is sending; the fields below are theirs
	out     []*supMsg
	sizes   []*supAttempt
	buf     []byte
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

// push queues m for the writer.
func (c *supConn) push(m *supMsg) {
	c.enqueue(m)
	c.poke()
}

// enqueue queues m, to be sent by the caller's flush (or the writer's).
func (c *supConn) enqueue(m *supMsg) {
	c.mu.Lock()
	if !c.closed {
		c.queue = append(c.queue, m)
	}
	c.mu.Unlock()
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

// write sends what is queued, each time it is woken, until the
// connection closes.
func (c *supConn) write() {
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		if !c.flush() {
			return
		}
	}
}

// flush sends what is queued, then the sizes of the attempts that wrote,
// unless another goroutine is sending (it sends what was queued before it
// let go); false once the connection broke. Called without s.mu: a write
// may block on an agent that does not read.
func (c *supConn) flush() bool {
	for {
		c.mu.Lock()
		if c.writing || c.closed || len(c.queue) == 0 && len(c.dirty) == 0 {
			ok := !c.closed
			c.mu.Unlock()
			return ok
		}
		c.writing = true
		c.out, c.queue = c.queue, c.out[:0]
		for sa := range c.dirty {
			c.sizes = append(c.sizes, sa)
		}
		clear(c.dirty)
		c.mu.Unlock()
		buf := c.buf[:0]
		for _, m := range c.out {
			var err error
			if buf, err = appendFrame(buf, m); err != nil {
				c.s.log.Error("supervisor message dropped", "err", err)
			}
		}
		for _, sa := range c.sizes {
			buf, _ = appendFrame(buf, &supMsg{Op: opProgress, Job: sa.ref.job, Attempt: sa.ref.attempt,
				Out: sa.att.Output().Size(), Err: sa.att.Stderr().Size()})
		}
		clear(c.out)
		clear(c.sizes)
		c.out, c.sizes, c.buf = c.out[:0], c.sizes[:0], buf
		_, err := c.c.Write(buf)
		c.mu.Lock()
		c.writing = false
		c.mu.Unlock()
		if err != nil {
			c.s.drop(c, err)
			return false
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
	r := bufio.NewReaderSize(c.c, supReadBuffer) // frames come in bursts: a read syscall takes many
	if buf, err = readFrame(r, buf, &m); err != nil || m.Op != opHello || m.Proto < 1 {
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
	if !c.s.attach(c, m.Version) {
		return
	}
	for {
		if buf, err = readFrame(r, buf, &m); err != nil {
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

// attach makes c the agent's connection and sends it the welcome, which
// lists every attempt held, those being started included; false when c
// is refused. One agent holds the data dir (its agent.lock), so a hello
// while the agent's connection lives is not the agent's: it is answered
// with an error and closed, and the agent keeps its connection. An
// earlier connection whose peer has hung up (an agent that died, whose
// EOF its reader has yet to see) is closed and replaced.
func (s *supervisor) attach(c *supConn, agentVersion string) bool {
	s.mu.Lock()
	if old := s.conn.Load(); old != nil && !old.peerGone() {
		s.mu.Unlock()
		s.log.Warn("connection refused: another agent is connected", "its_version", agentVersion, "peer", c.peer())
		c.refuse("another agent is connected to this supervisor")
		s.forget(c)
		return false
	}
	old := s.conn.Swap(c)
	s.seen = true
	w := &supMsg{Op: opWelcome, Proto: supProto, Version: s.version, Pid: os.Getpid(), Retired: s.retired}
	for _, sa := range s.atts {
		h := supHeld{Job: sa.ref.job, Attempt: sa.ref.attempt, NoPTY: sa.noPTY, Starting: sa.att == nil}
		if sa.att != nil {
			pid, at, _ := sa.att.Started()
			h.Pid, h.At, h.Out, h.Err = pid, at.UnixNano(), sa.att.Output().Size(), sa.att.Stderr().Size()
		}
		if sa.ended {
			h.Exit = toWireExit(sa.att.Exit())
		}
		w.Attempts = append(w.Attempts, h)
	}
	c.push(w) // before the lock goes: a started or exit pushed later follows it
	s.mu.Unlock()
	if old != nil {
		old.close()
	}
	s.log.Info("agent connected", "agent_version", agentVersion, "attempts", len(w.Attempts))
	return true
}

// peerGone reports whether the peer has hung up (or the connection is
// closed), without reading: the reader may not have seen the EOF yet.
func (c *supConn) peerGone() bool {
	rc, err := c.c.SyscallConn()
	if err != nil {
		return true
	}
	gone := true
	if err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		n, perr := unix.Poll(fds, 0)
		gone = perr == nil && n > 0 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
	}); err != nil {
		return true
	}
	return gone
}

// peer describes the connection's peer process for the log.
func (c *supConn) peer() string {
	rc, err := c.c.SyscallConn()
	if err != nil {
		return "?"
	}
	var cred *unix.Ucred
	_ = rc.Control(func(fd uintptr) { cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if cred == nil {
		return "?"
	}
	return fmt.Sprintf("pid %d uid %d", cred.Pid, cred.Uid)
}

// refuse answers a hello with an error frame and closes the connection;
// its writer has nothing queued yet, so the frame is written here.
func (c *supConn) refuse(reason string) {
	if b, err := appendFrame(nil, &supMsg{Op: opError, Proto: supProto, Reason: reason}); err == nil {
		_ = c.c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.c.Write(b)
	}
	_ = c.c.CloseWrite()
	c.close()
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

// handle applies one message of the agent.
func (s *supervisor) handle(c *supConn, m *supMsg) {
	r := ref{m.Job, m.Attempt}
	switch m.Op {
	case opStart:
		s.mu.Lock()
		retired, held := s.retired, s.atts[r]
		var sa *supAttempt
		if !retired && held == nil && m.Spec != nil {
			// Held from now on: a welcome lists it while it is being started.
			sa = &supAttempt{ref: r, noPTY: m.Spec.NoPTY, ready: make(chan struct{})}
			s.atts[r] = sa
		}
		s.mu.Unlock()
		if held != nil {
			// The agent asks once per attempt; a second start would run it twice.
			s.log.Warn("start of an attempt held already: ignored", "job", r.job, "attempt", r.attempt)
			return
		}
		if sa == nil {
			reason := "the supervisor is retired and takes no new jobs"
			if m.Spec == nil {
				reason = "start without a spec"
			}
			c.push(&supMsg{Op: opExit, Job: r.job, Attempt: r.attempt,
				Exit: toWireExit(exit{Outcome: startFailed, ExitCode: -1, Reason: reason, Finished: time.Now()})})
			return
		}
		spec := *m.Spec
		s.wg.Go(func() { s.start(sa, spec) }) // a fork and an exec: several at once
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
	default:
		s.mu.Lock()
		sa := s.atts[r]
		if sa != nil && !sa.live {
			// Being started: applied, in order, once it is (start).
			cp := *m
			sa.pending = append(sa.pending, &cp)
			sa = nil
		}
		s.mu.Unlock()
		if sa == nil {
			return // released, unknown, or kept for later: nothing to do now
		}
		s.handleAttempt(c, sa, m)
	}
}

// handleAttempt applies a message about one attempt.
func (s *supervisor) handleAttempt(c *supConn, sa *supAttempt, m *supMsg) {
	att := sa.att
	switch m.Op {
	case opRelease:
		s.mu.Lock()
		if s.atts[sa.ref] == sa {
			delete(s.atts, sa.ref)
		}
		s.mu.Unlock()
		_ = att.release() // ended, or killed now: the agent no longer wants it
		s.poke()
	case opAck:
		if m.Stream == 1 {
			att.Stderr().Ack(m.Offset)
		} else {
			att.Output().Ack(m.Offset)
		}
	case opOpenInput:
		cr := att.Input().open()
		if c == nil {
			return // no agent to answer: the next one asks again
		}
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

// start starts one attempt, held (as starting) since its start was taken.
// Its started and its exit go to the agent's connection at the time, not
// necessarily the one that asked: an agent that reconnected meanwhile had
// it listed as starting in its welcome. One that fails to start is held,
// ended, like any other, so that its result reaches an agent.
func (s *supervisor) start(sa *supAttempt, w wireSpec) {
	r := sa.ref
	if h := supStartHook.Load(); h != nil {
		(*h)(s.dataDir, r)
	}
	spec := attemptSpec{JobID: r.job, Attempt: r.attempt, Argv: w.Argv, Env: w.Env, SecretEnv: w.SecretEnv, Dir: w.Dir,
		NoPTY: w.NoPTY, Stdin: job.Stdin(w.Stdin), Rows: w.Rows, Cols: w.Cols, Timeout: time.Duration(w.Timeout)}
	if u := w.User; u != nil {
		spec.User = &runUser{Name: u.Name, UID: u.UID, GID: u.GID, Groups: u.Groups, Home: u.Home}
	}
	att := startAttempt(spec, attemptOptions{SpoolDir: s.spoolDir, BufferLimit: w.BufferLimit, KillGrace: time.Duration(w.KillGrace),
		Reaper: s.reaper,
		Progress: func() {
			<-sa.ready // the first write may come before sa.att is set
			if c := s.conn.Load(); c != nil {
				c.progress(sa)
			}
		}})
	att.Input().setNotify(func(written int64, closed bool) {
		if c := s.conn.Load(); c != nil {
			c.push(&supMsg{Op: opCredit, Job: r.job, Attempt: r.attempt,
				Credit: &wireCredit{Limit: written + InputWindow, Closed: closed, Written: written}})
		}
	})
	_, _, started := att.Started()
	s.mu.Lock()
	sa.att = att
	close(sa.ready)
	// A job may have ended already (a fast one often has): it is reported
	// as any other, started first, then its exit with its sizes.
	c := s.conn.Load()
	if c != nil {
		if started {
			pid, at, _ := att.Started()
			c.enqueue(&supMsg{Op: opStarted, Job: r.job, Attempt: r.attempt, Pid: pid, At: at.UnixNano(),
				Out: att.Output().Size(), Err: att.Stderr().Size()})
		} else {
			c.enqueue(&supMsg{Op: opExit, Job: r.job, Attempt: r.attempt, Exit: toWireExit(att.Exit())})
		}
	}
	sa.ended = !started
	s.mu.Unlock()
	if c != nil {
		c.flush() // sent from here: the agent waits on it, and waking the writer costs a hop
	}
	s.replay(sa)
	if !started {
		s.poke()
		return
	}
	<-att.Done()
	s.mu.Lock()
	sa.ended = true
	c = s.conn.Load()
	if c != nil {
		c.enqueue(&supMsg{Op: opExit, Job: r.job, Attempt: r.attempt, Exit: toWireExit(att.Exit()),
			Out: att.Output().Size(), Err: att.Stderr().Size()})
	}
	s.mu.Unlock()
	if c != nil {
		c.flush()
	}
}

// replay applies, in order, what the agent said about sa while it was
// being started (a stop, a kill, a release), and then makes it live.
func (s *supervisor) replay(sa *supAttempt) {
	for {
		s.mu.Lock()
		pending := sa.pending
		sa.pending = nil
		if len(pending) == 0 {
			sa.live = true
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		for _, m := range pending {
			s.handleAttempt(s.conn.Load(), sa, m)
		}
	}
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
