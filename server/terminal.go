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
// queue holds when an attempt ends are dropped.

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
)

// terminals holds the terminal of every job with attach streams. Safe for
// concurrent use; lock order: terminals.mu, then a terminal's mu.
type terminals struct {
	reg *registry

	mu sync.Mutex
	m  map[string]*terminal // by job id; guarded by mu
}

func newTerminals(reg *registry) *terminals {
	return &terminals{reg: reg, m: make(map[string]*terminal)}
}

// join adds sess to the terminal of j, making it if needed.
func (ts *terminals) join(j *job.Job, sess *attachSession) *terminal {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := ts.m[j.ID]
	if t == nil {
		t = &terminal{reg: ts.reg, job: j, sessions: make(map[*attachSession]struct{})}
		ts.m[j.ID] = t
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sessions[sess] = struct{}{}
	t.updateLocked(j)
	sess.post(t.stateLocked(sess))
	return t
}

// leave removes sess; the input it held is free again, and the terminal
// goes once it has no stream left.
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
	if len(t.sessions) == 0 && ts.m[t.job.ID] == t {
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
		t.mu.Unlock()
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
		t.mu.Unlock()
	}
}

// credit applies an agent's InputCredit received on conn.
func (ts *terminals) credit(conn *agentConn, c *pb.InputCredit) {
	t := ts.get(c.GetJobId())
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if conn != t.conn || int(c.GetAttempt()) != t.attempt {
		return // for an earlier attempt or stream
	}
	if c.GetOpened() {
		if !t.opening {
			return
		}
		t.opening, t.next = false, c.GetOffset()
	}
	t.limit = max(t.limit, c.GetLimit())
	if c.GetClosed() && !t.closed {
		t.closed, t.queue = true, nil
		t.broadcastLocked()
	}
	t.flushLocked()
}

// terminal is one job's input; see the top of the file. Its fields are
// guarded by mu.
type terminal struct {
	reg *registry

	mu       sync.Mutex
	job      *job.Job // the latest version seen
	sessions map[*attachSession]struct{}
	holder   *attachSession // the stream whose input goes to the job; nil: none
	queue    []byte         // received, not yet passed on; at most attachWindow
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
			t.closed, t.queue = true, nil
			t.broadcastLocked()
		}
		return
	}
	wasClosed := t.closed
	t.conn, t.attempt = conn, j.Attempt
	t.opening, t.next, t.limit, t.inflight, t.eofSent, t.sizeSent = conn != nil, 0, 0, 0, false, false
	t.closed = j.State.Terminal()
	if t.closed {
		t.queue = nil
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
	defer t.mu.Unlock()
	if t.conn == conn && t.inflight > 0 {
		t.inflight--
		t.flushLocked()
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
	for len(t.queue) > 0 && t.next < t.limit && t.inflight < inputInFlight {
		n := int(min(int64(len(t.queue)), t.limit-t.next, maxInputMsg))
		t.sendLocked(&pb.JobInput{JobId: t.job.ID, Attempt: int32(t.attempt), Offset: t.next, Data: bytes.Clone(t.queue[:n])})
		t.next += int64(n)
		t.queue = t.queue[:copy(t.queue, t.queue[n:])]
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
	if sess.received+int64(len(data)) > sess.granted {
		return status.Errorf(codes.ResourceExhausted, "input: %d bytes beyond the credit granted (%d bytes in all); wait for more credit",
			sess.received+int64(len(data))-sess.granted, sess.granted)
	}
	sess.received += int64(len(data))
	if t.closed {
		return nil
	}
	t.queue = append(t.queue, data...)
	t.flushLocked()
	return nil
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
	switch {
	case t.holder == sess:
		st.Limit = sess.granted
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
