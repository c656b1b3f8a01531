package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/load"
	"github.com/shirou/gopsutil/v3/mem"

	"google.golang.org/protobuf/proto"

	pb "github.com/hodei-jobs/hodei/proto"
)

// logChunk is the most output one LogChunk carries.
const logChunk = 32 << 10

// session is one Connect stream. Messages to the server go through one
// sender goroutine, since a gRPC stream allows one sender at a time: ctrl
// (heartbeats, starts) ahead of out (output, then each result after its
// output), so that liveness never waits behind megabytes of logs.
type session struct {
	a    *Agent
	ctx  context.Context
	ctrl chan *pb.AgentMessage
	out  chan *pb.AgentMessage
	wg   sync.WaitGroup // the sender, heartbeats, starts and every task's pump

	mu sync.Mutex
	// pumped holds the tasks whose pump runs in this session. A pump takes
	// its task out when it ends, at the latest once the server has
	// acknowledged the task's result, so that a long session holds nothing
	// of the tasks it delivered. Guarded by mu.
	pumped map[*task]bool
}

// session runs one stream until it breaks or ctx ends; welcomed runs once
// the server welcomed the agent.
func (a *Agent) session(ctx context.Context, welcomed func()) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stream, err := pb.NewAgentServiceClient(a.conn).Connect(ctx)
	if err != nil {
		return err
	}
	s := &session{a: a, ctx: ctx, ctrl: make(chan *pb.AgentMessage, 64), out: make(chan *pb.AgentMessage, 256),
		pumped: make(map[*task]bool)}
	a.live.Store(s)
	defer a.live.Store(nil)
	defer s.wg.Wait()
	defer cancel(nil)

	hello, tasks := a.hello()
	if err := stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: hello}}); err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	welcome := first.GetWelcome()
	if welcome == nil {
		return errors.New("server did not answer Hello with Welcome")
	}
	before := a.welcomed.Swap(true)
	a.log.Info("connected", "server", a.cfg.Server, "slots", a.cap.Slots, "held", len(tasks))
	welcomed()
	if a.cfg.OnConnect != nil {
		a.cfg.OnConnect(ConnectEvent{Connected: true, Welcomed: before})
	}

	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		for {
			var m *pb.AgentMessage
			select {
			case m = <-s.ctrl:
			default:
				select {
				case <-ctx.Done():
					return
				case m = <-s.ctrl:
				case m = <-s.out:
				}
			}
			if err := stream.Send(m); err != nil {
				cancel(fmt.Errorf("send: %w", err))
				return
			}
		}
	}()
	go func() {
		defer s.wg.Done()
		s.heartbeats(time.Duration(welcome.GetHeartbeatIntervalMs()) * time.Millisecond)
	}()
	for _, t := range tasks {
		s.pump(t)
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			if c := context.Cause(ctx); c != nil && ctx.Err() != nil {
				return c
			}
			return err
		}
		if r := msg.GetReconnect(); r != nil {
			return &serverStopping{reason: r.GetReason()} // the deferred cancel ends the stream
		}
		s.handle(msg)
	}
}

// serverStopping is how a session ends when the server says it is going
// away: the agent reconnects to its next start, as after any outage, and
// says so without a warning.
type serverStopping struct{ reason string }

func (e *serverStopping) Error() string { return "the server is stopping: " + e.reason }

// hello describes what the agent holds: attempts still running, or ended
// with output the server may lack, are "running" (their pumps deliver the
// rest and then the result); results whose output the server holds go in
// "finished".
func (a *Agent) hello() (*pb.Hello, []*task) {
	h := &pb.Hello{
		WorkerId: a.id, Name: a.cfg.Name, Hostname: a.host, Labels: a.cfg.Labels, Version: a.cfg.Version,
		Capacity: pb.FromResources(a.cap), Restarted: !a.welcomed.Load(),
	}
	h.SupervisorsIntact = h.Restarted && a.supsIntact
	tasks := a.snapshotTasks()
	for _, t := range tasks {
		if t.fullyAcked() {
			h.Finished = append(h.Finished, t.outcome())
			continue
		}
		acked := t.ackedOffsets()
		h.Running = append(h.Running, &pb.JobRef{JobId: t.ref.job, Attempt: int32(t.ref.attempt), LogSize: acked[0]})
	}
	return h, tasks
}

// send queues m on ch for the sender; false when the session ended.
func (s *session) send(ch chan *pb.AgentMessage, m *pb.AgentMessage) bool {
	select {
	case ch <- m:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// handle applies one message from the server.
func (s *session) handle(msg *pb.ServerMessage) {
	a := s.a
	switch m := msg.GetMsg().(type) {
	case *pb.ServerMessage_Assign:
		// The task is known at once, so that a Cancel right behind finds
		// it; the fork and exec run beside the receive loop, several at once.
		j := m.Assign.GetJob()
		t, fresh := a.reserve(ref{j.GetId(), int(j.GetAttempt())})
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if fresh {
				a.start(t, m.Assign)
			}
			s.pump(t)
		}()
	case *pb.ServerMessage_Cancel:
		c := m.Cancel
		t := a.task(ref{c.GetJobId(), int(c.GetAttempt())})
		if t == nil {
			return
		}
		grace := time.Duration(c.GetGraceMs()) * time.Millisecond
		if grace <= 0 {
			grace = a.cfg.KillGrace
		}
		s.wg.Add(1)
		go func() { // the attempt may still be starting
			defer s.wg.Done()
			<-t.ready
			if t.att != nil {
				a.log.Info("stopping job", "job", t.ref.job, "attempt", t.ref.attempt, "reason", c.GetReason(), "grace", grace)
				t.att.Stop(c.GetReason(), grace)
			}
		}()
	case *pb.ServerMessage_Ack:
		s.ack(m.Ack)
	case *pb.ServerMessage_Input:
		s.handleInput(m.Input)
	case *pb.ServerMessage_Resize:
		s.handleResize(m.Resize)
	}
}

func (s *session) ack(ack *pb.Ack) {
	t := s.a.task(ref{ack.GetJobId(), int(ack.GetAttempt())})
	if t == nil {
		return
	}
	select {
	case <-t.ready:
	default:
		return // still starting: nothing of it was sent yet
	}
	switch {
	case ack.GetResult() && ack.GetFinished():
		if ack.GetError() != "" {
			s.a.log.Info("result rejected", "job", t.ref.job, "attempt", t.ref.attempt, "why", ack.GetError())
		}
		s.a.forget(t)
	case ack.GetResult():
		// The result came before all of its output: send the rest, then
		// the result again.
		t.rewind(pb.LogStream_LOG_STREAM_OUTPUT, ack.GetLogOffset())
		t.rewind(pb.LogStream_LOG_STREAM_STDERR, ack.GetStderrOffset())
	case ack.GetError() != "":
		t.rewind(ack.GetStream(), ack.GetLogOffset())
	default:
		t.ack(ack.GetStream(), ack.GetLogOffset())
	}
}

// pump starts the goroutine that delivers a task: its start, its output
// from what the server holds, then its result. One runs per task at a time
// in a session, and none for a task the server has acknowledged.
func (s *session) pump(t *task) {
	s.mu.Lock()
	skip := s.pumped[t] || t.isGone()
	if !skip {
		s.pumped[t] = true
	}
	s.mu.Unlock()
	if skip {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.pumped, t)
			s.mu.Unlock()
		}()
		s.deliver(t)
	}()
}

// deliver sends a task's start, output and result, and again what the
// server asks for, until the server acknowledges the result (t.gone) or the
// session ends.
func (s *session) deliver(t *task) {
	<-t.ready
	if t.att != nil {
		select {
		case <-t.att.StartDone(): // a reattached attempt may still be starting
		case <-s.ctx.Done():
			return
		}
		if pid, at, ok := t.att.Started(); ok {
			if !s.send(s.ctrl, &pb.AgentMessage{Msg: &pb.AgentMessage_Started{Started: &pb.JobStarted{
				JobId: t.ref.job, Attempt: int32(t.ref.attempt), StartedUnixNano: at.UnixNano(), Pid: int32(pid),
			}}}) {
				return
			}
		}
	}
	backoff := time.Duration(0)
	// pause waits a little longer each time the server asks for output
	// again, in case what it lacks cannot be had (or it cannot store it).
	pause := func() bool {
		backoff = min(max(2*backoff, 100*time.Millisecond), 10*time.Second)
		select {
		case <-time.After(backoff):
			return true
		case <-t.gone:
			return false
		case <-s.ctx.Done():
			return false
		}
	}
	var lost error // the spool could not be read: the output after the server's offsets is gone
	for {
		if lost == nil {
			ctx, stop := context.WithCancel(s.ctx)
			from := t.ackedOffsets()
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for i, stream := range []pb.LogStream{pb.LogStream_LOG_STREAM_OUTPUT, pb.LogStream_LOG_STREAM_STDERR} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = s.sendStream(ctx, t, stream, from[stream])
				}()
			}
			// A resync while sending restarts both streams from the server's offsets.
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			resynced := false
			select {
			case <-done:
			case <-t.resync:
				resynced = true
			}
			stop()
			<-done
			if s.ctx.Err() != nil || t.isGone() {
				return // acknowledged: forget closed its spools under the streams
			}
			if resynced {
				if !pause() {
					return
				}
				continue
			}
			if lost = errors.Join(errs...); errors.Is(lost, errSpoolClosed) {
				// Only giving the attempt up closes its spools (the server
				// fenced it, or it was forgotten): nothing is lost that
				// anyone still wants.
				s.a.log.Info("output of a given-up attempt not sent", "job", t.ref.job, "attempt", t.ref.attempt)
				return
			} else if lost != nil {
				s.a.log.Error("output lost", "job", t.ref.job, "attempt", t.ref.attempt, "err", lost)
			}
		}
		select {
		case <-t.ended:
		case <-t.gone:
		case <-s.ctx.Done():
			return
		}
		if t.isGone() {
			return // acknowledged (or forgotten while running): nothing left to send
		}
		res := t.outcome()
		if lost == nil && (t.out.Size() < res.GetLogSize() || t.errs.Size() < res.GetStderrSize()) {
			lost = fmt.Errorf("the spool holds %d+%d of %d+%d bytes", t.out.Size(), t.errs.Size(), res.GetLogSize(), res.GetStderrSize())
			s.a.log.Error("output lost", "job", t.ref.job, "attempt", t.ref.attempt, "err", lost)
		}
		if lost != nil {
			// Report what the server holds, and why the rest is missing.
			acked := t.ackedOffsets()
			res = proto.CloneOf(res)
			res.LogSize, res.StderrSize = acked[0], acked[1]
			res.OutputLost = strings.TrimPrefix(res.GetOutputLost()+"; "+lost.Error(), "; ")
		}
		if !s.send(s.out, &pb.AgentMessage{Msg: &pb.AgentMessage_Finished{Finished: res}}) {
			return
		}
		select {
		case <-t.gone:
			return
		case <-t.resync:
		case <-s.ctx.Done():
			return
		}
		// The server did not take the result: re-send what it lacks.
		if !pause() {
			return
		}
	}
}

// sendStream sends a stream from offset to its end (the process closed
// it). It returns nil at the end, ctx's error when stopped first, or the
// error that keeps the rest of the stream from being read.
func (s *session) sendStream(ctx context.Context, t *task, stream pb.LogStream, off int64) error {
	sp := t.spool(stream)
	for {
		data, eof, err := sp.Read(ctx, off, logChunk)
		if len(data) > 0 {
			chunk := &pb.LogChunk{JobId: t.ref.job, Attempt: int32(t.ref.attempt), Offset: off, Data: data, Stream: stream}
			select {
			case s.out <- &pb.AgentMessage{Msg: &pb.AgentMessage_Log{Log: chunk}}:
			case <-ctx.Done():
				return ctx.Err()
			}
			off += int64(len(data))
		}
		if err != nil || eof {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
}

// heartbeats reports liveness and host usage every interval.
func (s *session) heartbeats(every time.Duration) {
	if every <= 0 {
		every = 5 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		hb := &pb.Heartbeat{}
		if p, err := cpu.Percent(0, false); err == nil && len(p) == 1 {
			hb.CpuPercent = p[0]
		}
		if vm, err := mem.VirtualMemory(); err == nil {
			hb.MemoryUsedMib = int64(vm.Used >> 20)
		}
		if l, err := load.Avg(); err == nil {
			hb.Load1 = l.Load1
		}
		for _, t := range s.a.snapshotTasks() { // running, or ended and not yet delivered
			hb.Running = append(hb.Running, &pb.JobRef{JobId: t.ref.job, Attempt: int32(t.ref.attempt)})
			hb.UnackedLogBytes += t.unacked()
		}
		hb.UndeliveredResults = int32(s.a.journal.undelivered())
		if !s.send(s.ctrl, &pb.AgentMessage{Msg: &pb.AgentMessage_Heartbeat{Heartbeat: hb}}) {
			return
		}
		if !s.a.idle(s.ctx, tick.C) {
			return
		}
	}
}
