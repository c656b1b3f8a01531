package agent

// The agent's side of a supervisor: a connection (supClient) and, for each
// attempt the supervisor holds, a remoteAttempt that gives the session and
// the task what they used of a local attempt.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// supClient is the agent's connection to one supervisor. Its reader
// goroutine routes the supervisor's messages to the attempts; close stops
// it and waits.
type supClient struct {
	pid      int
	version  string // the supervisor's
	agentVer string // the agent's, which it says in hello
	sock     string
	spoolDir string
	log      *slog.Logger
	onCredit func(r ref, written int64, closed bool)
	retired  atomic.Bool
	leaving  atomic.Bool   // closed on purpose: the attempts keep running
	done     chan struct{} // closed when the reader has returned
	welcome  *supMsg       // the supervisor's welcome

	wmu  sync.Mutex    // serialises writes
	wbuf []byte        // guarded by wmu
	c    *net.UnixConn // replaced by the reader when it reconnects; guarded by wmu
	// held are frames that need not go at once (releases), written ahead
	// of the next frame or by heldTimer, whichever comes first: at a
	// thousand jobs a second a release rides with the next start instead
	// of costing a write here and a wake-up in the supervisor. Guarded by
	// wmu.
	held      []byte
	heldTimer *time.Timer

	mu   sync.Mutex
	atts map[ref]*remoteAttempt // guarded by mu
}

// dialSupervisor connects to the supervisor on sock and says hello. The
// welcome's attempts are not yet adopted: see adopt.
func dialSupervisor(sock, version, spoolDir string, log *slog.Logger, onCredit func(ref, int64, bool)) (*supClient, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, err
	}
	sc := &supClient{sock: sock, agentVer: version, spoolDir: spoolDir, log: log, onCredit: onCredit, c: c, done: make(chan struct{}), atts: make(map[ref]*remoteAttempt)}
	if err := sc.send(&supMsg{Op: opHello, Proto: supProto, Version: version}); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m supMsg
	if _, err := readFrame(c, nil, &m); err != nil || m.Op != opWelcome {
		c.Close()
		switch {
		case err != nil:
		case m.Op == opError:
			err = fmt.Errorf("refused: %s", m.Reason)
		default:
			err = fmt.Errorf("answered %q to hello", m.Op)
		}
		return nil, fmt.Errorf("supervisor %s: %w", sock, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	sc.pid, sc.version, sc.welcome = m.Pid, m.Version, &m
	sc.retired.Store(m.Retired)
	return sc, nil
}

// adopt returns a remote attempt for each attempt the welcome listed and
// starts the reader. One listed as starting is not started yet: its
// started (or exit) comes on this connection.
func (sc *supClient) adopt() []*remoteAttempt {
	var out []*remoteAttempt
	sc.mu.Lock()
	for _, h := range sc.welcome.Attempts {
		r := ref{h.Job, h.Attempt}
		ra := sc.newRemote(r, h.NoPTY)
		if !h.Starting {
			ra.setStarted(h.Pid, time.Unix(0, h.At), h.Out, h.Err)
		}
		if h.Exit != nil {
			ra.setExit(h.Exit.exit(), h.Out, h.Err)
		}
		sc.atts[r] = ra
		out = append(out, ra)
	}
	sc.mu.Unlock()
	go sc.read()
	return out
}

// newRemote returns the attempt r of this supervisor, not yet registered.
func (sc *supClient) newRemote(r ref, noPTY bool) *remoteAttempt {
	ra := &remoteAttempt{sup: sc, ref: r, started: make(chan struct{}), done: make(chan struct{}), opened: make(chan *wireCredit, 1)}
	base := filepath.Join(sc.spoolDir, r.job+"-"+strconv.Itoa(r.attempt))
	ra.out = followSpool(base+".out", func(off int64) { ra.ack(0, off) })
	if noPTY {
		ra.errs = followSpool(base+".err", func(off int64) { ra.ack(1, off) })
	} else {
		ra.errs = emptySpool()
	}
	return ra
}

// heldDelay is the longest a held frame waits for a frame to go with.
const heldDelay = 5 * time.Millisecond

// send writes one message, after the held ones. Held frames that could
// not be written stay held: the reader reconnects, and they go on the new
// connection (a release the supervisor has seen already is ignored).
func (sc *supClient) send(m *supMsg) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	var err error
	if sc.wbuf, err = appendFrame(append(sc.wbuf[:0], sc.held...), m); err != nil {
		return err
	}
	if _, err = sc.c.Write(sc.wbuf); err == nil {
		sc.held = sc.held[:0]
	}
	return err
}

// sendLater holds m until the next send, or heldDelay. A write error is
// not the caller's to handle: the reader sees the connection end.
func (sc *supClient) sendLater(m *supMsg) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	first := len(sc.held) == 0 // else the timer of the first is running
	var err error
	if sc.held, err = appendFrame(sc.held, m); err != nil {
		return err
	}
	switch {
	case !first:
	case sc.heldTimer == nil:
		sc.heldTimer = time.AfterFunc(heldDelay, sc.flushHeld)
	default:
		sc.heldTimer.Reset(heldDelay)
	}
	return nil
}

// flushHeld writes the held frames, if a send has not taken them.
func (sc *supClient) flushHeld() {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.flushHeldLocked()
}

// flushHeldLocked is flushHeld with wmu held. Frames it cannot write stay
// held for the next connection (see send).
func (sc *supClient) flushHeldLocked() {
	if len(sc.held) == 0 || sc.leaving.Load() {
		return
	}
	if _, err := sc.c.Write(sc.held); err != nil {
		sc.log.Debug("supervisor: held frames", "pid", sc.pid, "err", err)
		return
	}
	sc.held = sc.held[:0]
}

// start asks the supervisor to start an attempt and waits for its answer.
func (sc *supClient) start(r ref, spec *wireSpec) *remoteAttempt {
	ra := sc.newRemote(r, spec.NoPTY)
	sc.mu.Lock()
	sc.atts[r] = ra
	sc.mu.Unlock()
	if err := sc.send(&supMsg{Op: opStart, Job: r.job, Attempt: r.attempt, Spec: spec}); err != nil {
		sc.mu.Lock()
		delete(sc.atts, r)
		sc.mu.Unlock()
		return failedAttempt(fmt.Sprintf("supervisor pid %d: %v", sc.pid, err))
	}
	select {
	case <-ra.started:
	case <-ra.done:
	}
	return ra
}

// read routes the supervisor's messages until the connection ends. If
// the supervisor process still lives, it reconnects and carries on from
// the new welcome; otherwise every attempt not ended is failed (the
// supervisor is gone, and its jobs with it) unless the agent is leaving
// on purpose.
func (sc *supClient) read() {
	defer close(sc.done)
	var buf []byte
	var err error
	for {
		sc.wmu.Lock()
		c := sc.c
		sc.wmu.Unlock()
		buf, err = sc.route(c, buf)
		if sc.leaving.Load() || !sc.reconnect(err) {
			break
		}
	}
	if sc.leaving.Load() {
		return
	}
	retired := sc.retired.Load()
	sc.mu.Lock()
	lost := make([]*remoteAttempt, 0, len(sc.atts))
	for _, ra := range sc.atts {
		lost = append(lost, ra)
	}
	sc.mu.Unlock()
	n := 0
	for _, ra := range lost {
		if ra.lost(fmt.Sprintf("supervisor pid %d is gone (%v): the job died with its terminal", sc.pid, err)) {
			n++
		}
	}
	if n > 0 || !retired {
		sc.log.Warn("supervisor gone", "pid", sc.pid, "err", err, "jobs_lost", n)
	}
}

// reconnect dials the supervisor again after the connection broke with
// err, when its process still lives (its connection was dropped, not the
// supervisor), and brings the attempts up to date from the welcome: ended
// ones get their result, started ones their start and sizes, and one the
// supervisor no longer lists is lost. False when it cannot.
func (sc *supClient) reconnect(err error) bool {
	if sc.retired.Load() && sc.count() == 0 {
		return false // a retired supervisor that held nothing more exits
	}
	if perr := syscall.Kill(sc.pid, 0); perr != nil && !errors.Is(perr, syscall.EPERM) {
		return false // the supervisor is gone
	}
	nc, derr := dialSupervisor(sc.sock, sc.agentVer, sc.spoolDir, sc.log, nil)
	if derr != nil {
		sc.log.Debug("supervisor not redialled", "pid", sc.pid, "err", derr)
		return false
	}
	sc.wmu.Lock()
	if sc.leaving.Load() { // leave closed the old one meanwhile
		sc.wmu.Unlock()
		nc.c.Close()
		return false
	}
	old := sc.c
	sc.c = nc.c
	sc.flushHeldLocked() // what the broken connection did not take
	sc.wmu.Unlock()
	old.Close()
	sc.retired.Store(sc.retired.Load() || nc.welcome.Retired)
	listed := make(map[ref]supHeld, len(nc.welcome.Attempts))
	for _, h := range nc.welcome.Attempts {
		listed[ref{h.Job, h.Attempt}] = h
	}
	sc.mu.Lock()
	atts := make([]*remoteAttempt, 0, len(sc.atts))
	for _, ra := range sc.atts {
		atts = append(atts, ra)
	}
	sc.mu.Unlock()
	for _, ra := range atts {
		h, ok := listed[ra.ref]
		switch {
		case !ok:
			ra.lost(fmt.Sprintf("supervisor pid %d no longer holds it after a reconnection", sc.pid))
		case h.Exit != nil:
			ra.setExit(h.Exit.exit(), h.Out, h.Err)
		case !h.Starting:
			ra.setStarted(h.Pid, time.Unix(0, h.At), h.Out, h.Err)
			ra.out.grow(h.Out)
			ra.errs.grow(h.Err)
		}
	}
	sc.log.Warn("supervisor connection lost and regained: its jobs run on", "pid", sc.pid, "err", err, "jobs", len(atts))
	return true
}

// route routes the messages read from c to the attempts until c breaks.
func (sc *supClient) route(c *net.UnixConn, buf []byte) ([]byte, error) {
	var m supMsg
	var err error
	r := bufio.NewReaderSize(c, supReadBuffer) // frames come in bursts: a read syscall takes many
	for {
		if buf, err = readFrame(r, buf, &m); err != nil {
			return buf, err
		}
		sc.mu.Lock()
		ra := sc.atts[ref{m.Job, m.Attempt}]
		sc.mu.Unlock()
		if ra == nil {
			continue
		}
		switch m.Op {
		case opStarted:
			ra.setStarted(m.Pid, time.Unix(0, m.At), m.Out, m.Err)
		case opProgress:
			ra.out.grow(m.Out)
			ra.errs.grow(m.Err)
		case opExit:
			if m.Exit != nil {
				ra.setExit(m.Exit.exit(), m.Out, m.Err)
			}
		case opCredit:
			if m.Credit == nil {
				continue
			}
			if m.Credit.Opened {
				select {
				case ra.opened <- m.Credit:
				default:
				}
			} else if sc.onCredit != nil {
				sc.onCredit(ra.ref, m.Credit.Written, m.Credit.Closed)
			}
		}
	}
}

// forget drops an attempt (released, or never started).
func (sc *supClient) forget(r ref) {
	sc.mu.Lock()
	delete(sc.atts, r)
	sc.mu.Unlock()
}

// count returns the number of attempts the agent holds there.
func (sc *supClient) count() int {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return len(sc.atts)
}

// alive reports whether the connection is still up.
func (sc *supClient) alive() bool {
	select {
	case <-sc.done:
		return false
	default:
		return true
	}
}

// leave says goodbye (exitIdle: the supervisor exits once it holds
// nothing) and closes the connection, leaving the attempts to run.
func (sc *supClient) leave(exitIdle bool) {
	sc.leaving.Store(true) // before the goodbye: the supervisor may close first
	// The held frames go ahead of the goodbye.
	_ = sc.send(&supMsg{Op: opGoodbye, ExitIdle: exitIdle})
	sc.wmu.Lock() // reconnect swaps sc.c only while not leaving
	c := sc.c
	if sc.heldTimer != nil {
		sc.heldTimer.Stop()
	}
	sc.wmu.Unlock()
	_ = c.CloseWrite()
	c.Close()
	<-sc.done
}

// remoteAttempt is an attempt a supervisor runs, as the agent sees it: its
// start, its end, its output (the spool files the supervisor writes, grown
// as it reports sizes) and the orders the agent gives it. Safe for
// concurrent use.
type remoteAttempt struct {
	sup       *supClient // nil for an attempt that failed before reaching one
	ref       ref
	out, errs *spool
	started   chan struct{} // closed once started (or ended before)
	done      chan struct{} // closed once ended, sizes final
	opened    chan *wireCredit

	mu       sync.Mutex
	pid      int
	at       time.Time
	result   exit
	released bool
}

// failedAttempt is an attempt that could not be started, with reason.
func failedAttempt(reason string) *remoteAttempt {
	ra := &remoteAttempt{out: emptySpool(), errs: emptySpool(), started: make(chan struct{}), done: make(chan struct{})}
	ra.result = exit{Outcome: startFailed, ExitCode: -1, Reason: reason, Finished: time.Now()}
	close(ra.started)
	close(ra.done)
	return ra
}

func (ra *remoteAttempt) setStarted(pid int, at time.Time, out, errs int64) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	select {
	case <-ra.started:
		return
	default:
	}
	ra.pid, ra.at = pid, at
	ra.out.grow(out)
	ra.errs.grow(errs)
	close(ra.started)
}

// setExit records the end; false if it had ended already.
func (ra *remoteAttempt) setExit(e exit, out, errs int64) bool {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	select {
	case <-ra.done:
		return false
	default:
	}
	ra.result = e
	if e.WriteErr != "" {
		ra.out.fileUnknown() // made, maybe, and not written to
		ra.errs.fileUnknown()
	}
	ra.out.finish(out)
	ra.errs.finish(errs)
	select {
	case <-ra.started:
	default:
		close(ra.started)
	}
	close(ra.done)
	return true
}

// lost ends an attempt whose supervisor is gone: what is left of its
// process group is killed (its terminal is gone; it would run unseen),
// and its output is what reached the files.
func (ra *remoteAttempt) lost(reason string) bool {
	ra.mu.Lock()
	pid := ra.pid
	ra.mu.Unlock()
	ra.out.fileUnknown()
	ra.errs.fileUnknown()
	ended := ra.setExit(exit{Outcome: exited, ExitCode: -1, Reason: reason, Finished: time.Now()}, ra.out.Size(), ra.errs.Size())
	if ended && pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	return ended
}

// ack passes the server's offset of a stream on to the supervisor, whose
// spool then takes more of the job's output; once the job ended nothing
// waits for it.
func (ra *remoteAttempt) ack(stream int, off int64) {
	select {
	case <-ra.done:
		return
	default:
	}
	if ra.sup != nil {
		_ = ra.sup.send(&supMsg{Op: opAck, Job: ra.ref.job, Attempt: ra.ref.attempt, Stream: stream, Offset: off})
	}
}

// StartDone is closed once the attempt started or ended: one reattached
// while its supervisor was starting it is open until then.
func (ra *remoteAttempt) StartDone() <-chan struct{} { return ra.started }

// Started returns the leader's pid and start time; ok is false when the
// process never started.
func (ra *remoteAttempt) Started() (pid int, at time.Time, ok bool) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	return ra.pid, ra.at, ra.pid != 0
}

// Stop asks the supervisor to stop the job: SIGTERM to its group, SIGKILL
// after grace (the attempt's kill grace when grace <= 0).
func (ra *remoteAttempt) Stop(reason string, grace time.Duration) {
	if ra.sup == nil || ra.isDone() {
		return
	}
	_ = ra.sup.send(&supMsg{Op: opStop, Job: ra.ref.job, Attempt: ra.ref.attempt, Reason: reason, Grace: int64(grace)})
}

func (ra *remoteAttempt) isDone() bool {
	select {
	case <-ra.done:
		return true
	default:
		return false
	}
}

// Done is closed when the attempt has ended and its output sizes are
// final.
func (ra *remoteAttempt) Done() <-chan struct{} { return ra.done }

// Exit returns the result; valid once Done is closed.
func (ra *remoteAttempt) Exit() exit {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	return ra.result
}

// Output returns the PTY output, or stdout with NoPTY.
func (ra *remoteAttempt) Output() *spool { return ra.out }

// Stderr returns stderr with NoPTY; with a PTY an empty, closed spool.
func (ra *remoteAttempt) Stderr() *spool { return ra.errs }

// openInput asks where the job's input stands; from then on the
// supervisor credits every byte written. A job without input, or one that
// ended, answers closed.
func (ra *remoteAttempt) openInput(ctx context.Context) *pb.InputCredit {
	closed := &pb.InputCredit{Opened: true, Closed: true}
	if ra.sup == nil || ra.isDone() {
		return closed
	}
	if err := ra.sup.send(&supMsg{Op: opOpenInput, Job: ra.ref.job, Attempt: ra.ref.attempt}); err != nil {
		return closed
	}
	select {
	case c := <-ra.opened:
		return &pb.InputCredit{Opened: true, Offset: c.Offset, Limit: c.Limit, Closed: c.Closed, Written: c.Written,
			Source: c.Source, SourceOffset: c.SourceOffset}
	case <-ra.done:
		return closed
	case <-ctx.Done():
		return closed
	}
}

// putInput passes input on to the supervisor, which checks it against
// the credit it gave.
func (ra *remoteAttempt) putInput(offset int64, data []byte, eof bool, src string, srcOffset int64) error {
	if ra.sup == nil || ra.isDone() {
		return nil
	}
	return ra.sup.send(&supMsg{Op: opInput, Job: ra.ref.job, Attempt: ra.ref.attempt,
		Input: &wireInput{Offset: offset, Data: data, EOF: eof, Source: src, SourceOffset: srcOffset}})
}

// resize sets the size of the job's PTY.
func (ra *remoteAttempt) resize(rows, cols uint16) error {
	if ra.sup == nil || ra.isDone() || rows == 0 || cols == 0 {
		return nil
	}
	return ra.sup.send(&supMsg{Op: opResize, Job: ra.ref.job, Attempt: ra.ref.attempt, Rows: rows, Cols: cols})
}

// release tells the supervisor to forget the attempt, whose result is in
// the agent's journal. The spool files stay (the agent removes them with
// Close). Idempotent.
func (ra *remoteAttempt) release() {
	ra.mu.Lock()
	was := ra.released
	ra.released = true
	ra.mu.Unlock()
	if was || ra.sup == nil {
		return
	}
	ra.sup.forget(ra.ref)
	if err := ra.sup.sendLater(&supMsg{Op: opRelease, Job: ra.ref.job, Attempt: ra.ref.attempt}); err != nil && ra.sup.alive() {
		ra.sup.log.Warn("supervisor release", "job", ra.ref.job, "attempt", ra.ref.attempt, "err", err)
	}
}

// Close gives the attempt up: a running one is killed at once, and Close
// waits for its end; then its spools are closed and their files removed.
// Idempotent.
func (ra *remoteAttempt) Close() error {
	if !ra.isDone() && ra.sup != nil {
		if err := ra.sup.send(&supMsg{Op: opKill, Job: ra.ref.job, Attempt: ra.ref.attempt}); err != nil {
			ra.lost(fmt.Sprintf("supervisor pid %d: %v", ra.sup.pid, err))
		}
	}
	<-ra.done
	return errors.Join(ra.out.Close(), ra.errs.Close())
}
