package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/puzpuzpuz/xsync/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/scheduler"
	"github.com/hodei-jobs/hodei/store"
)

// agentConn is one connected agent stream.
type agentConn struct {
	workerID string
	out      outbox
	// cancel ends the stream with a cause: the handler's Recv fails and
	// the handler returns.
	cancel context.CancelCauseFunc

	// Reports that wait for a commit (start, result) run beside the
	// receive loop, so that one agent's jobs share commits instead of
	// queueing behind each other; last chains the reports of one job so
	// they still apply in the order the agent sent them.
	mu   sync.Mutex
	last map[string]chan struct{} // job id → done of its latest report; guarded by mu
}

// report runs fn in its own goroutine after the previous report of the
// same job has been applied. wg tracks the goroutine.
func (c *agentConn) report(wg *sync.WaitGroup, jobID string, fn func()) {
	done := make(chan struct{})
	c.mu.Lock()
	prev := c.last[jobID]
	if c.last == nil {
		c.last = make(map[string]chan struct{}) // most agents are idle most of the time
	}
	c.last[jobID] = done
	c.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		if prev != nil {
			<-prev
		}
		fn()
		c.mu.Lock()
		if c.last[jobID] == done {
			delete(c.last, jobID)
		}
		c.mu.Unlock()
	}()
}

// enqueue queues msg without blocking; a full queue ends the connection.
func (c *agentConn) enqueue(msg *pb.ServerMessage) bool {
	if !c.out.push(msg) {
		c.cancel(errAgentQueueFull)
		return false
	}
	return true
}

// registry holds the connected agents and is the scheduler's Dispatcher.
type registry struct {
	conns *xsync.MapOf[string, *agentConn]
	// assign builds an Assign order, or returns nil when the job cannot
	// be assigned and has been dealt with (Server.assignMsg); set by New.
	assign func(workerID string, j *job.Job) *pb.ServerMessage
}

func newRegistry() *registry { return &registry{conns: xsync.NewMapOf[string, *agentConn]()} }

func (r *registry) Assign(workerID string, j *job.Job) bool {
	c, ok := r.conns.Load(workerID)
	if !ok {
		return false
	}
	msg := r.assign(workerID, j)
	return msg == nil || c.enqueue(msg)
}

func (r *registry) Cancel(workerID string, o cluster.CancelOrder) bool {
	c, ok := r.conns.Load(workerID)
	return ok && c.enqueue(cancelMsg(o))
}

func cancelMsg(o cluster.CancelOrder) *pb.ServerMessage {
	return &pb.ServerMessage{Msg: &pb.ServerMessage_Cancel{Cancel: &pb.CancelJob{
		JobId: o.JobID, Attempt: int32(o.Attempt), GraceMs: o.Grace.Milliseconds(), Reason: o.Reason,
	}}}
}

func ackMsg(a *pb.Ack) *pb.ServerMessage {
	return &pb.ServerMessage{Msg: &pb.ServerMessage_Ack{Ack: a}}
}

// agentService implements AgentService.Connect.
type agentService struct {
	pb.UnimplementedAgentServiceServer
	srv *Server
}

// Connect runs one agent's stream: Hello first, then reports in, orders
// out. The handler's own goroutine receives and applies the reports; the
// orders go out through the outbox, whose sender runs only while some
// wait. An idle agent thus costs the server gRPC's goroutines and none of
// ours, and the handler's stack holds only this loop's frame beneath
// gRPC's (the setup runs in openAgent, which has returned): deep frames at
// the blocking point keep a goroutine's stack large for as long as it
// lives (BenchmarkIdleAgentMemory).
func (a *agentService) Connect(stream pb.AgentService_ConnectServer) error {
	s := a.srv
	// Whoever ends the stream (a newer stream of the worker, a full send
	// queue, a failed send, a revocation) ends it through cancel, which
	// also fails the Recv below (abort.go).
	ctx, cancel := withAbort(stream.Context())
	conn, err := s.openAgent(ctx, cancel, stream)
	if err != nil {
		return err
	}
	defer s.closeAgent(conn)
	conn.out.start()
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			err = errors.New("agent closed the stream")
		}
		if err == nil {
			err = s.handleAgent(ctx, conn, msg)
		}
		if err != nil {
			cancel(err) // no-op when the stream was ended already: its cause stays
			break
		}
	}
	cause := context.Cause(ctx)
	s.log.Info("agent disconnected", "worker", conn.workerID, "cause", cause)
	if st, ok := status.FromError(cause); ok && st.Code() == codes.InvalidArgument {
		return st.Err()
	}
	return nil
}

// openAgent reads the Hello, registers the stream and reconciles the
// worker's jobs, queueing the Welcome and the orders that follow. On error
// the stream is unregistered again.
func (s *Server) openAgent(ctx context.Context, cancel context.CancelCauseFunc, stream pb.AgentService_ConnectServer) (_ *agentConn, err error) {
	first, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	hello := first.GetHello()
	if hello == nil {
		return nil, invalid("hello", "the first message on the stream must be a Hello")
	}
	w, err := workerFromHello(hello)
	if err != nil {
		return nil, toStatus(err)
	}
	// The certificate names the worker; the Hello may not name another.
	id := auth.FromContext(ctx)
	certified := id != nil && id.Worker != ""
	if certified && id.Worker != w.ID {
		return nil, denied("this certificate speaks for worker %s, not %s", id.Worker, w.ID)
	}
	conn := &agentConn{workerID: w.ID, cancel: cancel}
	conn.out.send = stream.Send
	conn.out.fail = func(err error) { cancel(fmt.Errorf("send to agent: %w", err)) }

	cfg := s.sched.Config()
	conn.enqueue(&pb.ServerMessage{Msg: &pb.ServerMessage_Welcome{Welcome: &pb.Welcome{
		WorkerId: w.ID, HeartbeatIntervalMs: cfg.Heartbeat.Milliseconds(), LeaseMs: cfg.Lease.Milliseconds(),
	}}})
	// Results the agent kept while it was away come first, so that the
	// reconcile below does not mistake those jobs for lost ones.
	// The stream is registered before the scheduler learns the worker is
	// connected, so that every assignment from then on reaches it.
	since := s.now()
	if old, loaded := s.agents.conns.LoadAndStore(w.ID, conn); loaded {
		old.cancel(errors.New("replaced by a new connection from the same worker"))
	}
	defer func() {
		if err != nil {
			s.closeAgent(conn)
		}
	}()
	held := refs(hello.GetRunning())
	for _, f := range hello.GetFinished() {
		held = append(held, cluster.Ref{JobID: f.GetJobId(), Attempt: int(f.GetAttempt())})
		conn.enqueue(ackMsg(s.finished(ctx, w.ID, f)))
	}
	rc, err := s.sched.WorkerHello(ctx, cluster.Hello{Worker: w, Running: held, Restarted: hello.GetRestarted(),
		SupervisorsIntact: hello.GetSupervisorsIntact(), Since: since})
	if err != nil {
		return nil, toStatus(err)
	}
	// A revocation or removal between the interceptor's check and this
	// stream being tracked would miss it; the binding is marked revoked
	// (or deleted) before streams are cut, so looking again now closes
	// the gap.
	if b, ok := s.gate.agents.Load(w.ID); ok && b.Revoked() {
		s.sched.Revoke(w.ID)
		return nil, denied("worker %s was revoked", w.ID)
	} else if !ok && certified {
		return nil, denied("worker %s was removed", w.ID)
	}
	for _, j := range rc.Assign {
		if msg := s.assignMsg(w.ID, j); msg != nil {
			conn.enqueue(msg)
		}
	}
	for _, o := range rc.Cancel {
		conn.enqueue(cancelMsg(o))
	}
	s.terms.workerChanged(w.ID) // input of its jobs goes to this stream
	s.log.Info("agent connected", "worker", w.ID, "name", w.Name, "slots", w.Capacity.Slots,
		"assign", len(rc.Assign), "cancel", len(rc.Cancel))
	return conn, nil
}

// closeAgent unregisters the stream of conn (the scheduler learns the
// worker is gone unless a newer stream replaced it), then ends the stream
// and waits for its sender: nothing is sent after the handler returns.
// The stream is ended first so that a send blocked on flow control
// returns.
func (s *Server) closeAgent(conn *agentConn) {
	s.agents.conns.Compute(conn.workerID, func(cur *agentConn, loaded bool) (*agentConn, bool) {
		gone := loaded && cur == conn
		if gone {
			// Inside the Compute: a newer stream of the worker registers
			// through it too, so its Hello cannot come in between and be
			// undone by a late WorkerGone. WorkerGone does not block.
			s.sched.WorkerGone(conn.workerID)
		}
		return cur, gone || !loaded
	})
	conn.cancel(nil)
	conn.out.close()
	s.terms.workerChanged(conn.workerID)
}

// handleAgent applies one message from an agent. An error ends the stream.
func (s *Server) handleAgent(ctx context.Context, conn *agentConn, msg *pb.AgentMessage) error {
	var stats *cluster.Stats
	if hb := msg.GetHeartbeat(); hb != nil {
		stats = &cluster.Stats{CPUPercent: hb.GetCpuPercent(), MemoryUsedMiB: hb.GetMemoryUsedMib(), Load1: hb.GetLoad1(),
			UndeliveredResults: int(hb.GetUndeliveredResults()), UnackedLogBytes: hb.GetUnackedLogBytes()}
	}
	if !s.sched.Heartbeat(conn.workerID, stats) {
		return errors.New("worker was declared lost; reconnect to reconcile")
	}
	switch m := msg.GetMsg().(type) {
	case *pb.AgentMessage_Heartbeat:
		s.stopStale(ctx, conn, m.Heartbeat.GetRunning())
	case *pb.AgentMessage_Started:
		st := m.Started
		conn.report(&s.wg, st.GetJobId(), func() { s.started(ctx, conn, st) })
	case *pb.AgentMessage_Log:
		if _, ok := pb.LogStream_name[int32(m.Log.GetStream())]; !ok {
			return invalid("log.stream", "%d is not a log stream", m.Log.GetStream())
		}
		// Appends stay in the receive loop: they are ordered by offset and
		// a job's result is handled only after all chunks before it.
		conn.enqueue(ackMsg(s.appendLog(ctx, conn.workerID, m.Log)))
	case *pb.AgentMessage_Finished:
		f := m.Finished
		conn.report(&s.wg, f.GetJobId(), func() { conn.enqueue(ackMsg(s.finished(ctx, conn.workerID, f))) })
	case *pb.AgentMessage_Credit:
		s.terms.credit(conn, m.Credit)
	case *pb.AgentMessage_Goodbye:
		s.sched.WorkerLeaving(conn.workerID)
		if m.Goodbye.GetDrain() {
			s.log.Info("agent draining: no new jobs for it; it waits for its running jobs", "worker", conn.workerID, "running", m.Goodbye.GetRunning())
			return nil
		}
		s.log.Info("agent detaching: its jobs keep running under its supervisor until it reconnects", "worker", conn.workerID, "running", m.Goodbye.GetRunning())
		return errAgentDetached
	case *pb.AgentMessage_Hello:
		return invalid("hello", "sent twice on one stream")
	default:
		return invalid("msg", "unknown agent message")
	}
	return nil
}

// errAgentDetached ends the stream of an agent that said a detaching
// Goodbye.
var errAgentDetached = errors.New("agent detached (its jobs keep running; it reconnects when restarted)")

// stopStale orders the agent to stop the attempts it holds that the server
// no longer wants there: a reconcile that raced with the end of an attempt
// (a lost worker's, say) is caught up at the next heartbeat.
func (s *Server) stopStale(ctx context.Context, conn *agentConn, held []*pb.JobRef) {
	for _, r := range held {
		cur, err := s.sched.Get(ctx, r.GetJobId())
		if err == nil && cur.Attempt == int(r.GetAttempt()) && cur.Worker == conn.workerID && cur.State.Active() {
			continue
		}
		conn.enqueue(cancelMsg(cluster.CancelOrder{JobID: r.GetJobId(), Attempt: int(r.GetAttempt()),
			Grace: s.sched.Config().KillGrace, Reason: "stale attempt"}))
	}
}

// started records that an attempt started; a start the server no longer
// wants is stopped.
func (s *Server) started(ctx context.Context, conn *agentConn, st *pb.JobStarted) {
	// StartedAt is the server's receive time, not the agent's clock: it
	// times the server's timeout backstop, and hosts' clocks drift.
	ref := cluster.Ref{JobID: st.GetJobId(), Attempt: int(st.GetAttempt())}
	err := s.sched.JobStarted(ctx, conn.workerID, ref, s.now())
	switch {
	case err == nil:
	case errors.Is(err, job.ErrConflict), errors.Is(err, job.ErrNotFound):
		s.log.Info("stale start rejected", "worker", conn.workerID, "job", ref.JobID, "attempt", ref.Attempt, "err", err)
		conn.enqueue(cancelMsg(cluster.CancelOrder{JobID: ref.JobID, Attempt: ref.Attempt, Grace: s.sched.Config().KillGrace, Reason: "stale attempt"}))
	default:
		// Not recorded (the store failed or is closing): the agent
		// reports the start again after it reconnects.
		conn.cancel(fmt.Errorf("record start of %s: %w", ref.JobID, err))
	}
}

// appendLog stores one chunk and acknowledges how much of the log is held.
func (s *Server) appendLog(ctx context.Context, workerID string, c *pb.LogChunk) *pb.Ack {
	ack := &pb.Ack{JobId: c.GetJobId(), Attempt: c.GetAttempt(), Stream: c.GetStream()}
	j, err := s.sched.Get(ctx, c.GetJobId())
	// Once the job has ended its log is closed: a result is recorded only
	// after the whole log (and a lost worker's attempt has no more).
	if err != nil || int(c.GetAttempt()) != j.Attempt || j.Worker != workerID || j.State.Terminal() {
		// Output is taken only for the current attempt, from the worker
		// it was assigned to. Nothing will ever take this: tell the agent
		// to forget the attempt, as for a stale result.
		ack.Result, ack.Finished = true, true
		ack.Error = fmt.Sprintf("attempt %d of job %s is not assigned to %s", c.GetAttempt(), c.GetJobId(), workerID)
		return ack
	}
	size, err := s.logsOf(c.GetStream()).Append(c.GetJobId(), int(c.GetAttempt()), c.GetOffset(), c.GetData())
	ack.LogOffset = size
	if err != nil {
		ack.Error = err.Error() // a gap: the agent re-sends from LogOffset
	}
	s.metrics.logBytes.Add(float64(len(c.GetData())))
	s.logSignals.fire(c.GetJobId())
	return ack
}

// finished records an attempt's result once its whole log is stored and
// durable, and acknowledges it. A stale result is acknowledged as finished
// (the agent forgets it) with the reason it was rejected.
func (s *Server) finished(ctx context.Context, workerID string, f *pb.JobFinished) *pb.Ack {
	id, attempt := f.GetJobId(), int(f.GetAttempt())
	ack := &pb.Ack{JobId: id, Attempt: f.GetAttempt(), Result: true}
	// A result the server cannot take is acknowledged as finished at once,
	// before any question of missing output, or the agent would re-send
	// that output forever.
	if cur, err := s.sched.Get(ctx, id); err != nil || cur.Attempt != attempt || cur.Worker != workerID || !cur.State.Active() {
		ack.Finished = true
		ack.Error = fmt.Sprintf("stale report: attempt %d of job %q is not running on %s", attempt, id, workerID)
		return ack
	}
	// An attempt that wrote nothing (most trivial jobs) has no log to
	// check or make durable: two failed stats per job were 3% of the
	// server's CPU at a thousand jobs a second.
	if f.GetLogSize() > 0 || f.GetStderrSize() > 0 {
		size, err := s.logs.Size(id, attempt)
		if err != nil {
			ack.Error = err.Error()
			return ack
		}
		errSize, err := s.errs.Size(id, attempt)
		if err != nil {
			ack.Error = err.Error()
			return ack
		}
		ack.LogOffset, ack.StderrOffset = size, errSize
		if size < f.GetLogSize() || errSize < f.GetStderrSize() {
			ack.Error = fmt.Sprintf("log has %d of %d bytes and stderr %d of %d; send the rest, then the result again",
				size, f.GetLogSize(), errSize, f.GetStderrSize())
			return ack
		}
		if err := errors.Join(syncIfAny(s.logs, id, attempt, size), syncIfAny(s.errs, id, attempt, errSize)); err != nil {
			ack.Error = err.Error()
			return ack
		}
	}
	_, err := s.sched.JobFinished(ctx, workerID, scheduler.Finish{
		JobID:    id,
		Attempt:  attempt,
		Outcome:  outcomeOf(f.GetOutcome()),
		ExitCode: int(f.GetExitCode()),
		Signal:   int(f.GetSignal()),
		Reason:   f.GetReason(),
		Lost:     f.GetOutputLost(),
		Usage: job.Usage{CPUTime: time.Duration(f.GetUsage().GetCpuTimeNs()), MaxRSSKiB: f.GetUsage().GetMaxRssKib(),
			Wall: time.Duration(f.GetUsage().GetWallTimeNs())},
		Ended: agentTime(f.GetFinishedUnixNano()),
	})
	switch {
	case err == nil, errors.Is(err, job.ErrConflict), errors.Is(err, job.ErrNotFound):
		ack.Finished = true
		if err != nil {
			ack.Error = err.Error()
			s.log.Info("stale result rejected", "worker", workerID, "job", id, "attempt", attempt, "err", err)
		}
		_ = s.logs.Close(id, attempt)
		_ = s.errs.Close(id, attempt)
		s.logSignals.fire(id)
	default:
		ack.Error = err.Error() // not recorded: the agent keeps it and retries
	}
	return ack
}

// agentTime is a time an agent reported, zero when it sent none.
func agentTime(unixNano int64) time.Time {
	if unixNano <= 0 {
		return time.Time{}
	}
	return time.Unix(0, unixNano)
}

// syncIfAny makes a log durable when the attempt wrote one.
func syncIfAny(l *store.Logs, id string, attempt int, size int64) error {
	if size == 0 {
		return nil
	}
	return l.Sync(id, attempt)
}

func outcomeOf(o pb.Outcome) scheduler.Outcome {
	switch o {
	case pb.Outcome_OUTCOME_START_FAILED:
		return scheduler.StartFailed
	case pb.Outcome_OUTCOME_KILLED:
		return scheduler.Killed
	case pb.Outcome_OUTCOME_TIMED_OUT:
		return scheduler.TimedOut
	}
	return scheduler.Exited
}

func refs(rs []*pb.JobRef) []cluster.Ref {
	out := make([]cluster.Ref, 0, len(rs))
	for _, r := range rs {
		out = append(out, cluster.Ref{JobID: r.GetJobId(), Attempt: int(r.GetAttempt())})
	}
	return out
}

// workerFromHello checks a Hello and returns the worker it describes.
func workerFromHello(h *pb.Hello) (*job.Worker, error) {
	id := h.GetWorkerId()
	switch {
	case id == "" || len(id) > job.MaxIDLen:
		return nil, job.Invalid("hello.worker_id", "must be 1–%d bytes", job.MaxIDLen)
	case h.GetCapacity().GetSlots() < 1 || h.GetCapacity().GetSlots() > job.MaxWorkerSlots:
		return nil, job.Invalid("hello.capacity.slots", "%d must be between 1 and %d", h.GetCapacity().GetSlots(), job.MaxWorkerSlots)
	case h.GetCapacity().GetCpuMillis() < 0 || h.GetCapacity().GetMemoryMib() < 0:
		return nil, job.Invalid("hello.capacity", "cpu and memory must not be negative")
	}
	if err := job.CheckWorkerInfo(h.GetName(), h.GetHostname(), h.GetVersion(), h.GetLabels()); err != nil {
		fe := err.(*job.FieldError)
		return nil, job.Invalid("hello."+fe.Field, "%s", fe.Rule)
	}
	name := h.GetName()
	if name == "" {
		name = h.GetHostname()
	}
	return &job.Worker{
		ID: id, Name: name, Hostname: h.GetHostname(), Labels: h.GetLabels(),
		Capacity: h.GetCapacity().ToResources(), Version: h.GetVersion(),
	}, nil
}
