package server

// Input to running jobs: the server's side of Attach.
//
// A terminal is one job's input as the server relays it, from the attach
// stream that holds it to the agent that runs the job's current attempt.
// It exists while attach streams of the job are open. Flow control holds
// at every hop, so that a fast or hostile client costs bounded memory and
// a job that does not read its input stops its sender:
//
//   - the client may send input only up to the limit the server grants,
//     attachWindow bytes past what the server has passed on; the server
//     holds at most that much of a job's input (the queue);
//   - the server passes bytes on only up to the limit of the agent's last
//     InputCredit (the agent holds at most agent.InputWindow), and keeps
//     at most inputInFlight of a job's messages in the agent's send queue,
//     so that a client typing a byte at a time cannot fill that queue.
//
// The input goes to the attempt running when it is passed on; bytes the
// queue holds when an attempt ends are dropped. A terminal whose last
// stream left (a detach) stays while its queue holds input for a job that
// has not ended, until the job's attempt takes it (typed ahead of a
// PENDING job, or before Enter ~.); at most maxOrphans such terminals at
// once, beyond which the queue of the one leaving is dropped.
//
// No input is lost or repeated when the server restarts under a client
// that names its input (AttachOpen.input_source): each byte passed on
// carries its source and offset there, the agent answers an open with
// the source and offset of the last byte it received, and its credits
// with what it has written, which the server tells the client (acked).
// The client keeps and sends again what was not acked; the server drops,
// as it passes bytes on, those the agent already has.

import (
	"bytes"
	"errors"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

const (
	// attachWindow is the most input bytes the server holds for one job,
	// received from the stream that holds its input and not yet passed
	// on to the agent: the credit that stream gets.
	attachWindow = 32 << 10
	// maxInputMsg is the most input one AttachRequest may carry, and one
	// JobInput carries.
	maxInputMsg = 16 << 10
	// inputInFlight is the most messages of one job's input (data, EOF,
	// open, resize) waiting in the agent's send queue.
	inputInFlight = 16
	// maxOrphans is the most terminals kept with no stream for the input
	// they queue: at most maxOrphans × attachWindow bytes (32 MiB).
	maxOrphans = 1024
	// maxSourceName is the longest AttachOpen.input_source.
	maxSourceName = 64
	// maxSourceOffset bounds the offsets in a named input (the agent's
	// agent.MaxSourceOffset): no sum of an offset and a length overflows.
	maxSourceOffset = 1 << 62
	// maxResend is the most a client that names its input sends again on
	// a new stream: what it keeps unacked (cli's maxUnacked). A stream
	// starting further behind what the job's agent has of its source is
	// another client's that picked the same name.
	maxResend = 256 << 10
)

// terminals holds the terminal of every job with attach streams. Safe for
// concurrent use; lock order: terminals.mu, then a terminal's mu.
type terminals struct {
	reg *registry

	mu      sync.Mutex
	m       map[string]*terminal // by job id; guarded by mu
	orphans int                  // terminals in m with no stream; guarded by mu
}

func newTerminals(reg *registry) *terminals {
	return &terminals{reg: reg, m: make(map[string]*terminal)}
}

// join adds sess to the terminal of j, making it if needed. A stream
// whose named input does not fit what the server knows of that source is
// refused (checkSourceLocked).
func (ts *terminals) join(j *job.Job, sess *attachSession) (*terminal, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := ts.m[j.ID]
	if t == nil {
		t = &terminal{ts: ts, reg: ts.reg, job: j, sessions: make(map[*attachSession]struct{})}
		ts.m[j.ID] = t
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.checkSourceLocked(sess); err != nil {
		return nil, err // t has a stream or queue: it stays
	}
	if t.orphan {
		t.orphan = false
		ts.orphans--
	}
	t.sessions[sess] = struct{}{}
	t.updateLocked(j)
	sess.post(t.stateLocked(sess))
	return t, nil
}

// checkSourceLocked refuses a stream that resumes a named input (as after
// a server restart) at an offset that does not fit what the server knows
// of that source: past where the job's attempt and the queue have it
// (InvalidArgument: the client cannot have been acked beyond that), or
// further behind it than a client sends again (the name is another
// client's, whose bytes these would be taken for).
func (t *terminal) checkSourceLocked(sess *attachSession) error {
	if sess.src == "" || sess.readOnly {
		return nil
	}
	end, known := t.sourceEndLocked(sess.src)
	switch {
	case !known:
		return nil
	case sess.srcBase > end:
		return invalid("input_offset", "%d is past the %d bytes of input source %q the server and the job's agent have",
			sess.srcBase, end, sess.src)
	case end-sess.srcBase > maxResend:
		return reusedSource(sess.src, sess.srcBase, end)
	}
	return nil
}

// reusedSource is the error of a stream that takes up a named input far
// behind where it stands: another client picked the same name.
func reusedSource(src string, off, end int64) error {
	return status.Errorf(codes.FailedPrecondition, "input_source %q is in use by another client (its input is at byte %d, "+
		"this stream starts at %d): name a stream's input with a random name of its own", src, end, off)
}

// sourceEndLocked returns the offset after the last byte of src the
// server knows of, in the attempt's input (when its agent answered the
// open) or in the queue; known is false when it knows of none.
func (t *terminal) sourceEndLocked(src string) (end int64, known bool) {
	if t.conn != nil && !t.opening && t.src == src {
		end, known = t.srcEnd, true
	}
	for _, seg := range t.segs {
		if seg.src == src {
			end, known = max(end, seg.off+int64(seg.n)), true
		}
	}
	return end, known
}

// leave removes sess; the input it held is free again, and the terminal
// goes once it has no stream left, unless it queues input for the job
// (then it is an orphan until the queue is passed on: see reap).
func (ts *terminals) leave(t *terminal, sess *attachSession) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.sessions, sess)
	if t.holder == sess {
		t.holder = nil
		t.broadcastLocked()
	}
	if len(t.sessions) > 0 || ts.m[t.job.ID] != t {
		return
	}
	if t.pendingLocked() && ts.orphans < maxOrphans {
		t.orphan = true
		ts.orphans++
		return
	}
	delete(ts.m, t.job.ID)
}

// reap removes t once it is an orphan with nothing left to pass on.
func (ts *terminals) reap(t *terminal) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.orphan && !t.pendingLocked() && ts.m[t.job.ID] == t {
		t.orphan = false
		ts.orphans--
		delete(ts.m, t.job.ID)
	}
}

// get returns the terminal of a job, or nil.
func (ts *terminals) get(id string) *terminal {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.m[id]
}

// changed is told every new version of a job (cluster.Config.OnChange): a
// job that started, moved to another attempt or ended is bound anew. It
// does not block.
func (ts *terminals) changed(j *job.Job) {
	if t := ts.get(j.ID); t != nil {
		t.mu.Lock()
		t.updateLocked(j)
		t.unlockReap()
	}
}

// workerChanged is told when a worker's agent stream opens or closes: its
// jobs' input goes to the new stream, opened anew there.
func (ts *terminals) workerChanged(worker string) {
	ts.mu.Lock()
	var ours []*terminal
	for _, t := range ts.m {
		ours = append(ours, t)
	}
	ts.mu.Unlock()
	for _, t := range ours {
		t.mu.Lock()
		if t.job.Worker == worker {
			t.bindLocked()
			t.flushLocked()
		}
		t.unlockReap()
	}
}

// credit applies an agent's InputCredit received on conn.
func (ts *terminals) credit(conn *agentConn, c *pb.InputCredit) {
	t := ts.get(c.GetJobId())
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.unlockReap()
	if conn != t.conn || int(c.GetAttempt()) != t.attempt {
		return // for an earlier attempt or stream
	}
	if c.GetOpened() {
		if !t.opening {
			return
		}
		t.opening, t.next = false, c.GetOffset()
		// The bytes at the end of the agent's input came from src: a
		// client that sends them again is not repeated (flushLocked).
		t.src, t.srcEnd = c.GetSource(), c.GetSourceOffset()
		if t.srcEnd < 0 || t.srcEnd > maxSourceOffset {
			t.src, t.srcEnd = "", 0 // not an offset a source can have
		}
	}
	t.limit = max(t.limit, c.GetLimit())
	if c.GetClosed() && !t.closed {
		t.closed = true
		t.dropQueueLocked()
		t.broadcastLocked()
	}
	t.flushLocked()
	t.ackLocked(c.GetWritten())
}

// terminal is one job's input; see the top of the file. Its fields are
// guarded by mu.
type terminal struct {
	ts  *terminals
	reg *registry

	mu       sync.Mutex
	job      *job.Job // the latest version seen
	sessions map[*attachSession]struct{}
	orphan   bool           // in ts.m with no stream, for its queue (guarded by ts.mu too)
	holder   *attachSession // the stream whose input goes to the job; nil: none
	queue    []byte         // received, not yet passed on; at most attachWindow
	segs     []inputSeg     // where the bytes of queue come from, in order
	ended    bool           // the holder ended the input: each attempt gets EOF after the queue
	size     *pb.TerminalSize
	sizeSent bool // size went to the current attempt

	// The attempt the input goes to, on the agent stream it was opened on.
	conn     *agentConn // nil: none (the job is not running, or its agent is away)
	attempt  int
	opening  bool  // the open is sent, its answer awaited
	next     int64 // offset of the next byte for the agent
	limit    int64 // the agent takes bytes up to this offset
	inflight int   // messages in the agent's send queue
	eofSent  bool
	closed   bool // the attempt takes no more input
	// src is the source of the last bytes the attempt got and srcEnd the
	// offset after them there (from the agent's open, then as bytes are
	// passed on): they end at the agent's offset next.
	src    string
	srcEnd int64
}

// inputSeg is a run of a terminal's queue from one source: n bytes from
// offset off in src (empty: unnamed).
type inputSeg struct {
	src string
	off int64
	n   int
}

// pendingLocked reports whether the terminal has input to pass on to a
// job that may still take it.
func (t *terminal) pendingLocked() bool {
	return !t.closed && !t.job.State.Terminal() && (len(t.queue) > 0 || (t.ended && !t.eofSent))
}

// dropQueueLocked empties the queue.
func (t *terminal) dropQueueLocked() { t.queue, t.segs = nil, nil }

// ackLocked tells the stream whose source the agent's last bytes came
// from how much of them the agent has written: written is the agent's
// count, and the bytes before t.next from t.src are its last ones.
func (t *terminal) ackLocked(written int64) {
	if t.src == "" || written <= 0 {
		return
	}
	acked := t.srcEnd - (t.next - written)
	for sess := range t.sessions {
		if sess.src == t.src && acked > sess.acked {
			sess.acked = acked
			if t.holder == sess {
				sess.post(t.stateLocked(sess))
			}
		}
	}
}

// updateLocked takes a newer version of the job.
func (t *terminal) updateLocked(j *job.Job) {
	if j.Version < t.job.Version {
		return
	}
	t.job = j
	t.bindLocked()
	t.flushLocked()
}

// bindLocked points the terminal at the job's running attempt on its
// agent's current stream, opening the input there when that changed.
func (t *terminal) bindLocked() {
	j := t.job
	var conn *agentConn
	if j.State == job.Running {
		conn, _ = t.reg.conns.Load(j.Worker)
	}
	if conn == t.conn && j.Attempt == t.attempt {
		if j.State.Terminal() && !t.closed {
			t.closed = true
			t.dropQueueLocked()
			t.broadcastLocked()
		}
		return
	}
	wasClosed := t.closed
	t.conn, t.attempt = conn, j.Attempt
	t.opening, t.next, t.limit, t.inflight, t.eofSent, t.sizeSent = conn != nil, 0, 0, 0, false, false
	t.src, t.srcEnd = "", 0
	t.closed = j.State.Terminal()
	if t.closed {
		t.dropQueueLocked()
	}
	if t.closed != wasClosed {
		t.broadcastLocked()
	}
	if conn != nil {
		t.sendLocked(&pb.JobInput{JobId: j.ID, Attempt: int32(j.Attempt), Open: true})
	}
}

// sendLocked queues one message of the job's input for the agent, counted
// in flight until it is sent.
func (t *terminal) sendLocked(in *pb.JobInput) {
	t.queueLocked(&pb.ServerMessage{Msg: &pb.ServerMessage_Input{Input: in}})
}

func (t *terminal) queueLocked(msg *pb.ServerMessage) {
	conn := t.conn
	t.inflight++
	if !conn.out.pushSent(msg, func() { t.sent(conn) }) {
		conn.cancel(errAgentQueueFull)
	}
}

// sent is called by the agent stream's sender once a message is out.
func (t *terminal) sent(conn *agentConn) {
	t.mu.Lock()
	if t.conn == conn && t.inflight > 0 {
		t.inflight--
		t.flushLocked()
	}
	t.unlockReap()
}

// unlockReap unlocks t.mu, then reaps t if it is an orphan. orphan is
// written under both locks, so reading it under t.mu spares the shared
// ts.mu on the paths that run per keystroke (each message sent, each
// credit) for the terminals that have a stream.
func (t *terminal) unlockReap() {
	orphan := t.orphan
	t.mu.Unlock()
	if orphan {
		t.ts.reap(t)
	}
}

// flushLocked passes on what the agent's credit and the messages in flight
// allow: queued bytes, then the EOF once the queue is empty, and the
// holder's terminal size. What leaves the queue is credited to the holder.
func (t *terminal) flushLocked() {
	if t.conn == nil || t.opening || t.closed {
		return
	}
	if t.size != nil && !t.sizeSent && t.inflight < inputInFlight {
		t.sizeSent = true
		t.queueLocked(&pb.ServerMessage{Msg: &pb.ServerMessage_Resize{Resize: &pb.ResizeJob{
			JobId: t.job.ID, Attempt: int32(t.attempt), Rows: t.size.GetRows(), Cols: t.size.GetCols(),
		}}})
	}
	passed := 0
	for len(t.queue) > 0 {
		seg := &t.segs[0]
		if seg.src != "" && seg.src == t.src && seg.off != t.srcEnd {
			if seg.off > t.srcEnd {
				// The agent never got the bytes between: they are lost,
				// and the rest must not follow as if they were not.
				t.lostLocked(seg, status.Errorf(codes.DataLoss, "input: the job's agent has this client's input up to byte %d, "+
					"and the next byte the server has is %d: %d bytes were lost", t.srcEnd, seg.off, seg.off-t.srcEnd))
				continue
			}
			if t.srcEnd-seg.off > maxResend {
				// Not a client sending again what it sent: another one
				// that picked the same name.
				t.lostLocked(seg, reusedSource(seg.src, seg.off, t.srcEnd))
				continue
			}
			// The agent has these already (a client sending again what
			// it sent before the server restarted).
			n := int(min(int64(seg.n), t.srcEnd-seg.off))
			t.takeLocked(n)
			passed += n
			continue
		}
		if t.next >= t.limit || t.inflight >= inputInFlight {
			break
		}
		n := int(min(int64(seg.n), t.limit-t.next, maxInputMsg))
		t.sendLocked(&pb.JobInput{JobId: t.job.ID, Attempt: int32(t.attempt), Offset: t.next, Data: bytes.Clone(t.queue[:n]),
			Source: seg.src, SourceOffset: seg.off})
		t.next += int64(n)
		t.src, t.srcEnd = seg.src, seg.off+int64(n)
		t.takeLocked(n)
		passed += n
	}
	if len(t.queue) == 0 && t.ended && !t.eofSent && t.inflight < inputInFlight {
		t.eofSent = true
		t.sendLocked(&pb.JobInput{JobId: t.job.ID, Attempt: int32(t.attempt), Offset: t.next, Eof: true})
	}
	if passed > 0 && t.holder != nil {
		t.holder.granted += int64(passed)
		t.holder.post(t.stateLocked(t.holder))
	}
}

// claim makes sess the holder of the input when nobody holds it, and
// reports whether sess just took it.
func (t *terminal) claim(sess *attachSession) (taken bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.holder == sess:
		return false
	case t.holder != nil:
		sess.post(t.stateLocked(sess))
		return false
	}
	t.holder = sess
	sess.granted = sess.received + attachWindow - int64(len(t.queue))
	if sess.size != nil {
		t.size, t.sizeSent = sess.size, false
	}
	t.broadcastLocked()
	t.flushLocked()
	return true
}

// input takes bytes from sess, which must hold the input and stay within
// its credit. Bytes for an input that is closed are dropped.
func (t *terminal) input(sess *attachSession, data []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.holder != sess {
		return status.Error(codes.FailedPrecondition, "input: this stream does not hold the job's input (claim it first)")
	}
	if sess.lost != nil {
		return sess.lost
	}
	if sess.received+int64(len(data)) > sess.granted {
		return status.Errorf(codes.ResourceExhausted, "input: %d bytes beyond the credit granted (%d bytes in all); wait for more credit",
			sess.received+int64(len(data))-sess.granted, sess.granted)
	}
	off := sess.srcBase + sess.received
	if off > maxSourceOffset-int64(len(data)) {
		return invalid("input", "the stream's input would pass byte %d of its source (input_offset %d, %d bytes sent)",
			int64(maxSourceOffset), sess.srcBase, sess.received)
	}
	sess.received += int64(len(data))
	if t.closed || len(data) == 0 {
		return nil
	}
	t.queue = append(t.queue, data...)
	if last := len(t.segs) - 1; last >= 0 && t.segs[last].src == sess.src && t.segs[last].off+int64(t.segs[last].n) == off {
		t.segs[last].n += len(data)
	} else {
		t.segs = append(t.segs, inputSeg{src: sess.src, off: off, n: len(data)})
	}
	t.flushLocked()
	return nil
}

// takeLocked removes the first n bytes of the queue, which belong to its
// first segment.
func (t *terminal) takeLocked(n int) {
	t.queue = t.queue[:copy(t.queue, t.queue[n:])]
	if seg := &t.segs[0]; n < seg.n {
		seg.off += int64(n)
		seg.n -= n
	} else {
		t.segs = t.segs[:copy(t.segs, t.segs[1:])]
	}
}

// lostLocked drops the first segment of the queue, which does not follow
// what the agent has of its source: the bytes between are lost (DataLoss),
// or the source is another client's (FailedPrecondition). The streams of
// that source are told (InputState.lost), so that their client fails
// loudly instead of its job reading on after a gap, and their handler
// ends them with err (lost).
func (t *terminal) lostLocked(seg *inputSeg, err error) {
	for sess := range t.sessions {
		if sess.src == seg.src && sess.lost == nil {
			sess.lost = err
			sess.post(t.stateLocked(sess))
		}
	}
	t.takeLocked(seg.n)
}

// lost returns the DataLoss error of sess once bytes of its input were
// lost, else nil.
func (t *terminal) lost(sess *attachSession) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return sess.lost
}

// end ends the input after what sess sent: EOF for the job.
func (t *terminal) end(sess *attachSession) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.holder != sess {
		return status.Error(codes.FailedPrecondition, "end: this stream does not hold the job's input")
	}
	t.ended = true
	t.flushLocked()
	return nil
}

// resize records the terminal size of sess and applies it to the job's
// PTY while sess holds the input.
func (t *terminal) resize(sess *attachSession, size *pb.TerminalSize) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sess.size = size
	if t.holder == sess {
		t.size, t.sizeSent = size, false
		t.flushLocked()
	}
}

// stateLocked is the InputState sess is to be shown.
func (t *terminal) stateLocked(sess *attachSession) *pb.InputState {
	st := &pb.InputState{Closed: t.closed, Held: t.holder == sess}
	if sess.lost != nil {
		st.Lost = status.Convert(sess.lost).Message()
	}
	switch {
	case t.holder == sess:
		st.Limit, st.Acked = sess.granted, sess.acked
	case t.holder != nil:
		st.Holder = t.holder.name
	}
	return st
}

// broadcastLocked shows every stream the state of the input.
func (t *terminal) broadcastLocked() {
	for sess := range t.sessions {
		sess.post(t.stateLocked(sess))
	}
}

// errAgentQueueFull ends an agent stream whose send queue is full.
var errAgentQueueFull = errors.New("agent send queue full")
