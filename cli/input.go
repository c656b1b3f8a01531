package cli

// The client side of an attach stream (hodei run's input, hodei attach):
// what the user types or pipes goes to the job within the credit the
// server grants; the job's output (for attach) comes back.
//
// Flow control: the client reads its stdin only while it holds fewer than
// maxPending bytes not yet sent, and sends only up to the server's credit.
// A job that does not read its input therefore stops this client from
// reading, and whatever writes to its stdin blocks. Bytes typed or piped
// before the job starts wait here (up to maxPending) and at the server
// (up to its window, 32 KiB): 64 KiB in all, delivered once it starts.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// maxPending is the most input the client holds that it has not sent.
const maxPending = 32 << 10

// maxInputMsg is the most input one message carries (the server's limit).
const maxInputMsg = 16 << 10

// maxUnacked is the most input the client keeps that it sent but the job's
// agent has not yet written, to send again on a new stream: past the
// server's window and the agent's (96 KiB) with room to spare. A server
// that does not ack (one that predates acks) would make it grow without
// end: past it the oldest bytes go, and a resend after that is a gap the
// server refuses (DataLoss).
const maxUnacked = 256 << 10

// attachStream is the generated client stream of Attach.
type attachStream = grpc.BidiStreamingClient[hodeipb.AttachRequest, hodeipb.AttachResponse]

// pumpConfig is what one attach connection does.
type pumpConfig struct {
	jobID    string
	src      io.Reader                    // the input; nil: none (a read-only watcher)
	esc      *escaper                     // escapes in src; nil: none (src is not a terminal)
	claim    bool                         // take the input at the start (hodei run)
	readOnly bool                         // never take it
	output   io.Writer                    // the job's output; nil: not asked for
	notes    io.Writer                    // where notices go (stderr)
	size     func() *hodeipb.TerminalSize // the terminal's size now; nil: none
	// rc rides out the server going away: the stream is opened again, with
	// its backoff, until its timeout; nil: a broken stream ends the pump.
	rc *client.Reconnector
}

// pump moves input to a job and its output back over an attach stream.
// run owns every goroutine it starts; start the pump with run, which
// returns when the job has ended, the user detached, ctx ended, or the
// stream failed.
//
// When the server goes away (cfg.rc), the pump opens a new stream once it
// is back: the output resumes after the last byte written (out), not from
// the last screenful again, and a pump that held the job's input takes it
// again at once, before another client can. Keys typed meanwhile wait in
// pending (up to maxPending). The input is named (source) and counted
// from its first byte: the pump keeps what it sent until the server says
// the job's agent has written it (InputState.acked), sends it again on the
// new stream, and the server drops what the agent already had, so that no
// byte is lost or repeated.
type pump struct {
	cfg pumpConfig
	cl  *client.Client
	// out is where the output stands: the next byte to write. It belongs
	// to the stream under way (its receiving goroutine), and between
	// streams to session, which resumes from it.
	out client.LogCursor

	mu       sync.Mutex // guards the fields below
	pending  []byte     // read, not yet sent
	source   string     // names the input to the server (AttachOpen.input_source)
	unacked  []byte     // sent, not yet written to the job; at most maxUnacked
	base     int64      // the offset in the input of unacked[0]
	resend   int        // of unacked, the bytes sent on the current stream
	srcEOF   bool       // the input ended after pending
	endSent  bool
	sent     int64 // input bytes sent on the current stream
	limit    int64 // the server's credit on it
	held     bool
	holder   string // who holds the input when another stream does
	closed   bool   // the job takes no more input
	refused  string // why a claim was refused
	claimed  bool   // a claim is sent on the current stream
	resized  bool   // the size changed since it was last sent
	told     string // the last notice printed, so as not to repeat it
	detached bool
	failed   string       // why the input stopped while the keys are still read for the escapes
	ended    *hodeipb.Job // the job as it ended
	room     chan struct{}
	wake     chan struct{}
	detach   chan struct{} // closed on ~.
}

func newPump(cl *client.Client, cfg pumpConfig) *pump {
	return &pump{cfg: cfg, cl: cl, room: make(chan struct{}, 1), wake: make(chan struct{}, 1),
		detach: make(chan struct{}), resized: cfg.size != nil, source: rand.Text()}
}

func signalChan(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// detachC is closed when the user typed the escape sequence to detach.
func (p *pump) detachC() <-chan struct{} { return p.detach }

// resize notes that the terminal's size changed.
func (p *pump) resize() {
	p.mu.Lock()
	p.resized = true
	p.mu.Unlock()
	signalChan(p.wake)
}

// run reads the input (in a goroutine that stop ends: see readInput) and
// talks to the server until the job ends (it returns the job), the user
// detaches (nil job, nil error), ctx ends, or the stream fails. With
// cfg.rc, a server that went away is dialled again with its backoff, and
// run fails with its *client.UnreachableError once it gives up.
func (p *pump) run(ctx context.Context, stopInput func()) (*hodeipb.Job, error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		if stopInput != nil {
			stopInput()
		}
		wg.Wait()
	}()
	if _, isFile := p.cfg.src.(*os.File); isFile && stopInput == nil {
		// A file that cannot be closed under a Read (a socket): the
		// goroutine ends when its Read returns, at the latest with the
		// process. Regular files, the usual case, do not wait.
		go p.readInput(ctx)
	} else if p.cfg.src != nil {
		wg.Go(func() { p.readInput(ctx) })
	}
	// A detach lets a stream under way pass on what was typed before it,
	// for detachWait; a stream that is still being opened to a server
	// that is away (or one that does not answer) is then given up.
	sessCtx, stopSess := context.WithCancel(ctx)
	defer stopSess()
	wg.Go(func() {
		select {
		case <-p.detach:
		case <-ctx.Done():
			return
		}
		select {
		case <-time.After(detachWait):
			stopSess()
		case <-ctx.Done():
		}
	})
	var err error
	if p.cfg.rc == nil {
		err = p.session(sessCtx, func() {})
	} else {
		// A detach ends the wait between tries, not a stream under way,
		// which passes on what was sent before it closes.
		waitCtx, stopWait := context.WithCancel(ctx)
		defer stopWait()
		wg.Go(func() {
			select {
			case <-p.detach:
				stopWait()
			case <-ctx.Done():
			}
		})
		err = p.cfg.rc.Do(waitCtx, func(_ context.Context, up func()) error {
			if p.isDetached() {
				return nil
			}
			return p.session(sessCtx, up)
		})
	}
	p.mu.Lock()
	ended, detached, unsent := p.ended, p.detached, len(p.pending)
	p.mu.Unlock()
	switch {
	case detached:
		if unsent > 0 && ended == nil {
			// Beyond the credit (the job was not reading), or the server
			// was away.
			p.note(job.Count(int64(unsent), "byte", "bytes") + " typed before the detach could not be sent")
		}
		return nil, nil
	case ended != nil:
		return ended, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case p.cfg.output == nil && status.Code(err) == codes.FailedPrecondition && p.endedBefore(ctx):
		// hodei run's input, refused because the job ended before the
		// stream opened (a fast job: one with no output has its result
		// taken at once): there is nothing left to send, which is no
		// failure; run's output says how the job ended.
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.ended, nil
	case keepEscapes(p.cfg, err):
		// hodei run's keys, on a terminal that stays raw while the output
		// goes on: say why they no longer reach the job, and keep reading
		// them for the escapes (Enter ~. detaches), not leave the user
		// typing into nothing.
		why := fmt.Sprintf("your keys no longer reach the job: %s", status.Convert(err).Message())
		p.mu.Lock()
		p.failed, p.told = why, why
		p.mu.Unlock()
		p.note(why + " (Enter ~. detaches)")
		select {
		case <-p.detach:
			return nil, nil
		case <-ctx.Done():
			return nil, err
		}
	case status.Code(err) == codes.Unimplemented:
		p.mu.Lock()
		typed := len(p.pending) > 0 || p.cfg.esc != nil
		p.mu.Unlock()
		if typed {
			p.note("this server takes no input (it predates hodei attach): stdin is not connected")
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, err
}

// endedBefore reports whether the job has ended, and records it as
// ended when it has.
func (p *pump) endedBefore(ctx context.Context) bool {
	j, err := p.cl.Get(ctx, p.cfg.jobID)
	if err != nil || !job.State(j.GetState()).Terminal() {
		return false
	}
	p.mu.Lock()
	p.ended = j
	p.mu.Unlock()
	return true
}

// keepEscapes reports whether a pump that failed with err goes on reading
// its keys for the escapes: hodei run's pump on a terminal (its output is
// followed apart), unless the server stayed away (run's output reports
// that and ends) or the server predates input.
func keepEscapes(cfg pumpConfig, err error) bool {
	var gone *client.UnreachableError
	return err != nil && cfg.esc != nil && cfg.output == nil &&
		!errors.As(err, &gone) && status.Code(err) != codes.Unimplemented
}

func (p *pump) isDetached() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.detached
}

// session runs one stream: it opens it, then a goroutine receives while
// this one sends, until the job ends, the user detaches or the stream
// fails. It calls up once the server has answered (Attached). A session
// after the first resumes the output from p.out, and takes the input
// again when the last one held it.
func (p *pump) session(ctx context.Context, up func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := p.cl.Attach(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	claim := p.cfg.claim || p.held
	// A new stream (on a server that may have restarted) starts with no
	// credit, nobody holding the input and no refusal: the server says
	// anew, as soon as the stream joins.
	p.sent, p.limit, p.held, p.claimed, p.endSent = 0, 0, false, claim, false
	p.holder, p.refused = "", ""
	p.resized = false
	// What was sent and not acked goes again, from base: the server drops
	// what the job already has.
	p.resend = 0
	open := &hodeipb.AttachOpen{JobId: p.cfg.jobID, Output: p.cfg.output != nil, ReadOnly: p.cfg.readOnly, Claim: claim,
		InputSource: p.source, InputOffset: p.base}
	if open.Output && p.out.Attempt > 0 {
		open.ResumeAttempt, open.ResumeOffset = p.out.Attempt, p.out.Offset
	}
	p.mu.Unlock()
	if p.cfg.size != nil {
		open.Size = p.cfg.size()
	}
	if err := st.Send(&hodeipb.AttachRequest{Msg: &hodeipb.AttachRequest_Open{Open: open}}); err != nil {
		return recvError(st, err)
	}
	recvErr := make(chan error, 1)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		recvErr <- p.receive(st, up)
	}()
	err = p.send(ctx, st, recvDone)
	if errors.Is(err, errStreamEnded) {
		return <-recvErr
	}
	if err == nil {
		// Detached, or the job ended: half-close, so that the server
		// passes on what was sent and ends the stream; a server that does
		// not within detachWait is left.
		_ = st.CloseSend()
		select {
		case rerr := <-recvErr:
			return rerr
		case <-time.After(detachWait):
		}
	}
	cancel()
	rerr := <-recvErr
	if err != nil {
		return err
	}
	return rerr
}

// detachWait bounds how long a detaching client waits for the server to
// end the stream.
const detachWait = time.Second

// recvError is the error that ended a stream whose Send failed: gRPC
// tells it on Recv.
func recvError(st attachStream, err error) error {
	if errors.Is(err, io.EOF) {
		for {
			if _, rerr := st.Recv(); rerr != nil {
				return rerr
			}
		}
	}
	return err
}

// receive applies the server's messages until the stream ends, calling up
// on the first (Attached). The output is written from p.out on: what a
// resumed stream sends again is cut, and a gap is an error.
func (p *pump) receive(st attachStream, up func()) error {
	for {
		m, err := st.Recv()
		if err != nil {
			signalChan(p.wake)
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		switch m := m.GetMsg().(type) {
		case *hodeipb.AttachResponse_Attached:
			if p.out.Attempt == 0 {
				// The first stream: the output starts at the last screenful
				// and follows the job's later attempts.
				p.out = client.LogCursor{Attempt: m.Attached.GetAttempt(), Offset: m.Attached.GetReplayOffset(), Later: true}
			}
			up()
		case *hodeipb.AttachResponse_Output:
			if p.cfg.output == nil {
				continue
			}
			data, err := p.out.Take(m.Output)
			if err != nil {
				return err
			}
			if len(data) == 0 {
				continue
			}
			if _, err := p.cfg.output.Write(data); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
		case *hodeipb.AttachResponse_Input:
			in := m.Input
			if in.GetLost() != "" {
				signalChan(p.wake)
				return status.Error(codes.DataLoss, in.GetLost())
			}
			p.mu.Lock()
			if in.GetRefused() != "" {
				p.refused, p.claimed = in.GetRefused(), false
			} else {
				p.held, p.holder, p.closed = in.GetHeld(), in.GetHolder(), in.GetClosed()
				if in.GetHeld() {
					p.limit = max(p.limit, in.GetLimit())
					p.ackLocked(in.GetAcked())
				} else {
					p.claimed = false
				}
			}
			p.mu.Unlock()
			signalChan(p.wake)
		case *hodeipb.AttachResponse_Ended:
			p.mu.Lock()
			p.ended = m.Ended.GetJob()
			p.mu.Unlock()
			signalChan(p.wake)
		}
	}
}

// ackLocked forgets the input before acked, which the job's agent has
// written: those bytes need not be sent again. Only bytes sent on the
// current stream are forgotten, so that what it sends stays in order from
// the offset its AttachOpen named (the server drops the rest).
func (p *pump) ackLocked(acked int64) {
	if n := min(acked-p.base, int64(p.resend)); n > 0 {
		p.unacked = p.unacked[:copy(p.unacked, p.unacked[n:])]
		p.base += n
		p.resend -= int(n)
	}
}

// keepLocked adds data, just sent, to what is kept until acked, dropping
// the oldest bytes past maxUnacked.
func (p *pump) keepLocked(data []byte) {
	p.unacked = append(p.unacked, data...)
	p.resend += len(data)
	if over := len(p.unacked) - maxUnacked; over > 0 {
		p.unacked = p.unacked[:copy(p.unacked, p.unacked[over:])]
		p.base += int64(over)
		p.resend -= over
	}
}

// errStreamEnded is send's answer when the receiving side ended first.
var errStreamEnded = errors.New("stream ended")

// send sends what is due whenever something changes: a size, a claim, the
// input within the credit, the end of input. It returns nil when the user
// detached or the job ended, ctx's error when it ended, errStreamEnded
// when recvDone closed (the stream ended), or the stream's error.
func (p *pump) send(ctx context.Context, st attachStream, recvDone <-chan struct{}) error {
	for {
		p.mu.Lock()
		if p.ended != nil {
			p.mu.Unlock()
			return nil
		}
		var msgs []*hodeipb.AttachRequest
		if p.resized && p.cfg.size != nil {
			p.resized = false
			if size := p.cfg.size(); size != nil {
				msgs = append(msgs, &hodeipb.AttachRequest{Msg: &hodeipb.AttachRequest_Resize{Resize: size}})
			}
		}
		wantsInput := len(p.pending) > 0 || p.resend < len(p.unacked) || (p.srcEOF && !p.endSent)
		if wantsInput && !p.held && !p.claimed && p.holder == "" && p.refused == "" && !p.cfg.readOnly && !p.closed && !p.detached {
			p.claimed = true
			msgs = append(msgs, &hodeipb.AttachRequest{Msg: &hodeipb.AttachRequest_Claim{Claim: &hodeipb.InputClaim{}}})
		}
		if p.held && !p.closed {
			// First what an earlier stream sent and the job may not have,
			// then what is new: one input, in order.
			for p.resend < len(p.unacked) && p.sent < p.limit {
				n := int(min(int64(len(p.unacked)-p.resend), p.limit-p.sent, maxInputMsg))
				data := append([]byte(nil), p.unacked[p.resend:p.resend+n]...)
				p.resend += n
				p.sent += int64(n)
				msgs = append(msgs, &hodeipb.AttachRequest{Msg: &hodeipb.AttachRequest_Input{Input: data}})
			}
			for p.resend == len(p.unacked) && len(p.pending) > 0 && p.sent < p.limit {
				n := int(min(int64(len(p.pending)), p.limit-p.sent, maxInputMsg))
				data := append([]byte(nil), p.pending[:n]...)
				p.pending = p.pending[:copy(p.pending, p.pending[n:])]
				p.sent += int64(n)
				p.keepLocked(data)
				msgs = append(msgs, &hodeipb.AttachRequest{Msg: &hodeipb.AttachRequest_Input{Input: data}})
				signalChan(p.room)
			}
			if p.srcEOF && len(p.pending) == 0 && p.resend == len(p.unacked) && !p.endSent {
				p.endSent = true
				msgs = append(msgs, &hodeipb.AttachRequest{Msg: &hodeipb.AttachRequest_End{End: &hodeipb.InputEnd{}}})
			}
		}
		// A detach sends what was typed before it, as far as the credit
		// goes now, and ends the stream.
		// A claim not yet answered is waited for (the input may still be
		// taken); a credit is not (the job is not reading).
		awaiting := p.claimed && !p.held && p.holder == "" && p.refused == "" && !p.closed &&
			(len(p.pending) > 0 || p.resend < len(p.unacked))
		detached := p.detached && len(msgs) == 0 && !awaiting
		p.mu.Unlock()
		if detached {
			return nil
		}
		for _, m := range msgs {
			if err := st.Send(m); errors.Is(err, io.EOF) {
				// The stream ended: its status comes to the receiving
				// goroutine, the one Recv a stream may have at a time.
				select {
				case <-recvDone:
					return errStreamEnded
				case <-ctx.Done():
					return ctx.Err()
				}
			} else if err != nil {
				return err
			}
		}
		if len(msgs) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-recvDone:
			return errStreamEnded
		case <-p.wake:
		}
	}
}

// readInput reads the input into pending, never holding more than
// maxPending, finding escape sequences on a terminal, until the input
// ends, the user detaches or ctx ends. A Read blocked in the input
// returns when the caller's stopInput closes it (or, for an input that
// cannot be closed, when it returns by itself).
func (p *pump) readInput(ctx context.Context) {
	buf := make([]byte, 4096)
	var escaped []byte // the keys of buf with the escapes taken out; reused
	for {
		p.mu.Lock()
		room := maxPending - len(p.pending)
		p.mu.Unlock()
		if room <= 1 { // a held-back ~ may add one byte
			select {
			case <-ctx.Done():
				return
			case <-p.room:
				continue
			}
		}
		n, err := p.cfg.src.Read(buf[:min(len(buf), room-1)])
		if ctx.Err() != nil {
			return
		}
		keys, act := buf[:n], escNone
		if p.cfg.esc != nil {
			escaped, act = p.cfg.esc.feed(escaped[:0], keys)
			keys = escaped
		}
		p.take(keys) // copies them
		switch act {
		case escDetach:
			p.mu.Lock()
			p.detached = true
			p.mu.Unlock()
			close(p.detach)
			signalChan(p.wake)
			return
		case escHelp:
			fmt.Fprint(p.cfg.notes, "\r\n"+escapeHelp)
		}
		if err != nil {
			// The end of the input (or an input that cannot be read): the
			// job gets its EOF once what was read is sent.
			p.mu.Lock()
			p.srcEOF = true
			p.mu.Unlock()
			signalChan(p.wake)
			return
		}
	}
}

// take queues keys for the job, unless they cannot reach it: then they
// are dropped and the user is told why, once per reason.
func (p *pump) take(keys []byte) {
	if len(keys) == 0 {
		return
	}
	p.mu.Lock()
	why := ""
	switch {
	case p.failed != "":
		why = p.failed
	case p.cfg.readOnly:
		why = "read-only: your keys are not sent (Enter ~. detaches)"
	case p.refused != "":
		why = "your keys are not sent: " + p.refused
	case p.closed:
		why = "the job takes no more input"
	case p.holder != "" && !p.held:
		why = fmt.Sprintf("%s holds the job's input: your keys are not sent until it detaches", p.holder)
	default:
		p.pending = append(p.pending, keys...)
	}
	repeat := why == p.told
	if why != "" {
		p.told = why
	}
	p.mu.Unlock()
	if why != "" && !repeat {
		p.note(why)
	}
	signalChan(p.wake)
}

// note prints a notice on its own line (the terminal may be raw).
func (p *pump) note(msg string) {
	if p.cfg.notes != nil {
		fmt.Fprintf(p.cfg.notes, "\r\nhodei: %s\r\n", msg)
	}
}
