package server

// JobService.Attach: a client watches a job's output (from the last
// screenful) and, holding the job's input, types into it. The relaying of
// input is terminal.go's.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/store"
)

// replayMax bounds the output an attach replays: the last screenful is
// looked for in at most this many bytes at the end of the log. A screen of
// 24 to 100 lines of ordinary output, colours included, fits well within
// it; reading more would cost every attach for output no screen shows.
const replayMax = 64 << 10

// attachInputAction is the audit action of taking a job's input.
const attachInputAction = "/hodei.v1.JobService/Attach (input)"

// attachSession is one Attach stream. Its input accounting (received,
// granted, size) is guarded by the mutex of the terminal it joined; the
// InputState to send next by mu.
type attachSession struct {
	name     string // who, as other streams are shown the holder
	readOnly bool
	src      string // the client's input (AttachOpen.input_source); empty: unnamed
	srcBase  int64  // the offset there of the stream's first input byte

	received int64 // input bytes received on the stream
	granted  int64 // the stream may send input up to this many bytes
	acked    int64 // the agent has written src's input up to this offset
	lost     error // bytes of src's input were lost: the stream ends with it
	size     *pb.TerminalSize

	mu   sync.Mutex
	note *pb.InputState // to send; nil: nothing new
	wake chan struct{}  // has a value when note is set
}

func newAttachSession(ctx context.Context, open *pb.AttachOpen) *attachSession {
	name := "a client"
	if id := auth.FromContext(ctx); id != nil && id.Name != "" {
		name = id.Name
	}
	return &attachSession{name: name, readOnly: open.GetReadOnly(), size: clampSize(open.GetSize()), wake: make(chan struct{}, 1),
		src: open.GetInputSource(), srcBase: open.GetInputOffset()}
}

// post sets the InputState to send, replacing one not yet sent.
func (s *attachSession) post(st *pb.InputState) {
	s.mu.Lock()
	s.note = st
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take returns the InputState to send, or nil.
func (s *attachSession) take() *pb.InputState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.note
	s.note = nil
	return st
}

// refuse tells the stream why it may not take the input.
func (s *attachSession) refuse(why string) { s.post(&pb.InputState{Refused: why}) }

// Attach runs one attach stream: AttachOpen first, then input, resizes,
// the end of input and claims in; the output and the state of the input
// out, from a goroutine of the handler's; AttachEnded once the job has
// ended, after which the server ends the stream (status OK) without
// waiting for the client to half-close. A client half-close detaches:
// the handler returns.
func (js *jobService) Attach(stream pb.JobService_AttachServer) error {
	s := js.srv
	ctx, abort := withAbort(stream.Context())
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return invalid("open", "the first message of an attach stream must be an AttachOpen")
	}
	j, err := s.jobNamed(ctx, "job_id", open.GetJobId())
	if err != nil {
		return err
	}
	if err := checkAttach(j, open); err != nil {
		return err
	}
	release, err := s.following.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	sess := newAttachSession(ctx, open)
	t, err := s.terms.join(j, sess)
	if err != nil {
		return err
	}
	defer s.terms.leave(t, sess)

	outCtx, stopOut := context.WithCancel(ctx)
	var (
		wg     sync.WaitGroup
		outErr error
	)
	outDone := make(chan struct{})
	wg.Go(func() {
		defer close(outDone)
		if outErr = s.attachOut(outCtx, stream, sess, j, open); outErr != nil && outCtx.Err() == nil {
			abort(outErr) // ends the Recv
		}
	})
	defer func() { stopOut(); wg.Wait() }()
	// The client's messages are read by a goroutine of the server's, so
	// that the handler can return (and the stream end with status OK)
	// once the end is sent, while that goroutine still waits in Recv: it
	// returns as the stream ends, after the handler at the latest.
	in, handled := make(chan attachRecv), make(chan struct{})
	defer close(handled)
	s.wg.Go(func() { recvAttach(stream, in, handled) })

	if open.GetClaim() && !j.State.Terminal() { // a resumed stream of an ended job only gets the rest
		s.claimInput(ctx, t, sess, j)
	}
	for {
		select {
		case <-outDone:
			if outErr != nil {
				return outErr
			}
			if outCtx.Err() == nil {
				return nil // AttachEnded is sent: the job has ended
			}
			outDone = nil // the stream is ending: Recv says how
		case r := <-in:
			if r.err == io.EOF {
				return nil // detached
			}
			if r.err != nil {
				stopOut()
				wg.Wait()
				if outErr != nil {
					return outErr
				}
				return r.err
			}
			if err := s.attachIn(ctx, t, sess, j, r.msg); err != nil {
				return err
			}
			if err := t.lost(sess); err != nil {
				return err
			}
		}
	}
}

// attachRecv is one Recv's result on an attach stream.
type attachRecv struct {
	msg *pb.AttachRequest
	err error
}

// recvAttach passes what stream receives to in, until Recv fails (the
// client half-closed, or the stream ended) or handled is closed (the
// handler returned, which ends the stream and so the Recv).
func recvAttach(stream pb.JobService_AttachServer, in chan<- attachRecv, handled <-chan struct{}) {
	for {
		msg, err := stream.Recv()
		select {
		case in <- attachRecv{msg, err}:
		case <-handled:
			return
		}
		if err != nil {
			return
		}
	}
}

// checkAttach refuses what an attach to j cannot do. A stream that
// resumes (its client reconnects) may find the job ended: it gets the rest
// of the output and the end.
func checkAttach(j *job.Job, open *pb.AttachOpen) error {
	resume := open.GetResumeAttempt()
	switch {
	case resume < 0 || int(resume) > j.Attempt:
		return invalid("resume_attempt", "%d must be between 1 and %d (0: not resuming)", resume, j.Attempt)
	case open.GetResumeOffset() < 0:
		return invalid("resume_offset", "%d must not be negative", open.GetResumeOffset())
	case resume > 0 && !open.GetOutput():
		return invalid("resume_attempt", "resuming takes a stream that asks for the output")
	case j.State.Terminal() && resume == 0:
		return status.Errorf(codes.FailedPrecondition, "job %s has ended (%s): hodei logs %s shows its output", j.ID, j.State, j.ID)
	case open.GetOutput() && j.Spec.NoPTY:
		return status.Errorf(codes.FailedPrecondition, "job %s runs without a PTY (--no-pty), so there is no terminal to attach to: "+
			"hodei logs -f %s follows its output", j.ID, j.ID)
	case open.GetReadOnly() && open.GetClaim():
		return invalid("claim", "a read-only stream cannot take the input")
	case len(open.GetInputSource()) > maxSourceName:
		return invalid("input_source", "is %d bytes; at most %d", len(open.GetInputSource()), maxSourceName)
	case open.GetInputOffset() < 0 || open.GetInputOffset() > maxSourceOffset:
		return invalid("input_offset", "%d must be between 0 and %d", open.GetInputOffset(), int64(maxSourceOffset))
	case !open.GetReadOnly() && j.Spec.NoPTY && j.Spec.Stdin == job.StdinNone:
		return status.Errorf(codes.FailedPrecondition, "job %s was submitted without stdin (--no-pty and no input): it reads /dev/null", j.ID)
	}
	return checkSize("size", open.GetSize(), true)
}

// checkSize checks a terminal size; a nil one is allowed where optional.
// A size of 0 is no terminal's: InvalidArgument. A size past what a PTY
// takes is not the client's mistake (it is its terminal's size) and is
// clamped by clampSize, not refused.
func checkSize(field string, size *pb.TerminalSize, optional bool) error {
	if size == nil && optional {
		return nil
	}
	if r, c := size.GetRows(), size.GetCols(); r < 1 || c < 1 {
		return invalid(field, "%dx%d: rows and cols must be at least 1", r, c)
	}
	return nil
}

// clampSize returns size with its rows and cols at most job.MaxPTYSize;
// nil stays nil.
func clampSize(size *pb.TerminalSize) *pb.TerminalSize {
	if size == nil || (size.GetRows() <= job.MaxPTYSize && size.GetCols() <= job.MaxPTYSize) {
		return size
	}
	return &pb.TerminalSize{Rows: min(size.GetRows(), job.MaxPTYSize), Cols: min(size.GetCols(), job.MaxPTYSize)}
}

// attachIn applies one message from the client.
func (s *Server) attachIn(ctx context.Context, t *terminal, sess *attachSession, j *job.Job, msg *pb.AttachRequest) error {
	switch m := msg.GetMsg().(type) {
	case *pb.AttachRequest_Input:
		if len(m.Input) > maxInputMsg {
			return invalid("input", "%d bytes in one message; at most %d", len(m.Input), maxInputMsg)
		}
		return t.input(sess, m.Input)
	case *pb.AttachRequest_Resize:
		if err := checkSize("resize", m.Resize, false); err != nil {
			return err
		}
		t.resize(sess, clampSize(m.Resize))
	case *pb.AttachRequest_End:
		return t.end(sess)
	case *pb.AttachRequest_Claim:
		s.claimInput(ctx, t, sess, j)
	case *pb.AttachRequest_Open:
		return invalid("open", "sent twice on one stream")
	default:
		return invalid("msg", "unknown attach message")
	}
	return nil
}

// claimInput gives sess the job's input if nobody holds it and the caller
// may write to the job: the role that may cancel jobs in its tenant. Both
// the grant and a refusal for the role are audited; the input itself is
// not recorded. A refusal is told to the stream, which goes on watching.
func (s *Server) claimInput(ctx context.Context, t *terminal, sess *attachSession, j *job.Job) {
	if sess.readOnly {
		sess.refuse("this stream is read-only")
		return
	}
	id := auth.FromContext(ctx)
	if id != nil {
		if err := id.Allow(auth.Cancel); err != nil {
			deny := denied("%s: typing into a job takes the right to cancel it", err)
			s.auditCall(ctx, id, attachInputAction, &pb.AttachOpen{JobId: j.ID}, s.jobPB(j), deny)
			sess.refuse(status.Convert(deny).Message())
			return
		}
	}
	if aerr := s.auditLog.Failing(); aerr != nil {
		sess.refuse(fmt.Sprintf("the audit log cannot be written (%v): input is refused until it can", aerr))
		return
	}
	if t.claim(sess) {
		s.auditCall(ctx, id, attachInputAction, &pb.AttachOpen{JobId: j.ID}, s.jobPB(j), nil)
	}
}

// attachOut sends the stream's output side: Attached, then (when asked)
// the job's output from the last screenful, or from where a resuming
// client stands, following its attempts, and the state of the input as it
// changes; AttachEnded once the job has ended and everything was sent. It
// returns nil then, or when ctx ends.
func (s *Server) attachOut(ctx context.Context, stream pb.JobService_AttachServer, sess *attachSession, j *job.Job, open *pb.AttachOpen) error {
	attempt, offset := j.Attempt, int64(0)
	if r := open.GetResumeAttempt(); r > 0 {
		attempt, offset = int(r), open.GetResumeOffset()
	} else if open.GetOutput() {
		rows := int(clampSize(open.GetSize()).GetRows())
		if rows == 0 {
			rows = job.DefaultRows
		}
		var err error
		if offset, err = replayFrom(s.logs, j.ID, attempt, rows); err != nil {
			return toStatus(err)
		}
	}
	if err := stream.Send(&pb.AttachResponse{Msg: &pb.AttachResponse_Attached{Attached: &pb.Attached{
		JobId: j.ID, Attempt: int32(attempt), State: pb.JobState(j.State), ReplayOffset: offset,
	}}}); err != nil {
		return err
	}
	notes := func() error {
		if st := sess.take(); st != nil {
			return stream.Send(&pb.AttachResponse{Msg: &pb.AttachResponse_Input{Input: st}})
		}
		return nil
	}
	var (
		buf []byte
		out pb.JobService_LogsServer = attachLog{stream, notes}
	)
	if open.GetOutput() {
		buf = make([]byte, logChunk)
	}
	output := func() (int64, error) {
		if buf == nil {
			return 0, nil
		}
		return s.sendLog(out, s.logs, j.ID, attempt, offset, buf)
	}
	for {
		changed, release := s.logSignals.wait(j.ID)
		cur, err := s.sched.Get(ctx, j.ID)
		if err != nil {
			release()
			return toStatus(err)
		}
		if err := notes(); err != nil {
			release()
			return err
		}
		n, err := output()
		offset += n
		if err != nil {
			release()
			return err
		}
		if cur.Attempt == attempt && !cur.State.Terminal() {
			err := awaitOutput(ctx, changed, sess.wake, notes)
			release()
			if err != nil {
				return err
			}
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		release()
		n, err = output() // what arrived between the read and the state
		offset += n
		if err != nil {
			return err
		}
		if cur.Attempt != attempt {
			attempt, offset = attempt+1, 0
			continue
		}
		if err := notes(); err != nil {
			return err
		}
		return stream.Send(&pb.AttachResponse{Msg: &pb.AttachResponse_Ended{Ended: &pb.AttachEnded{Job: s.jobPB(cur)}}})
	}
}

// awaitOutput waits until changed is closed (output came, or a new
// version of the job) or ctx ends. Meanwhile it sends the state of the
// input whenever it changes (wake): a credit comes per keystroke passed
// on, and needs no new read of the job or its log.
func awaitOutput(ctx context.Context, changed, wake <-chan struct{}, notes func() error) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			return nil
		case <-wake:
			if err := notes(); err != nil {
				return err
			}
		}
	}
}

// attachLog is an attach stream as sendLog sends to it: each chunk of
// output goes out as an Output, followed by what notes has, so that
// credits are not held up behind a lot of output.
type attachLog struct {
	pb.JobService_AttachServer
	notes func() error
}

func (a attachLog) Send(d *pb.LogData) error {
	if err := a.JobService_AttachServer.Send(&pb.AttachResponse{Msg: &pb.AttachResponse_Output{Output: d}}); err != nil {
		return err
	}
	return a.notes()
}

// replayFrom returns where the last screenful of an attempt's output
// starts: after the rows-th line end from the end, looked for within the
// last replayMax bytes (after the first line end there when the screen
// has more lines than that holds, so as not to start inside a line).
func replayFrom(logs *store.Logs, id string, attempt, rows int) (int64, error) {
	size, err := logs.Size(id, attempt)
	if err != nil || size == 0 {
		return 0, err
	}
	start := max(0, size-replayMax)
	f, err := logs.Open(id, attempt)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	tail := make([]byte, size-start)
	n, err := f.ReadAt(tail, start)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	return start + int64(screenStart(tail[:n], rows, start == 0)), nil
}

// screenStart returns the index in tail where its last rows lines begin
// (the last one may be partial: a prompt). With fewer line ends than rows
// it starts at 0 when tail is the whole output (whole), else after its
// first line end, so as not to start inside a line.
func screenStart(tail []byte, rows int, whole bool) int {
	end := len(tail)
	for range rows {
		i := bytes.LastIndexByte(tail[:end], '\n')
		if i < 0 {
			if first := bytes.IndexByte(tail, '\n'); first >= 0 && !whole {
				return first + 1
			}
			return 0
		}
		end = i
	}
	return end + 1
}
