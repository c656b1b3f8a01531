package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/hodei-jobs/hodei/proto"
)

// fakeKind is a job a fakeServer hands out and the output it prints.
type fakeKind struct {
	spec     *pb.JobSpec
	out, err int64 // bytes of output and stderr
}

// fakeJobs are the jobs a fakeServer hands out in turn by default: a PTY
// job and a pipes job with stderr, so that both spools of an attempt are
// exercised.
var fakeJobs = []fakeKind{
	{&pb.JobSpec{Command: []string{"/bin/echo", "ok"}}, int64(len("ok\r\n")), 0},
	{&pb.JobSpec{Command: []string{"/bin/sh", "-c", "echo ok; echo no >&2"}, NoPty: true}, int64(len("ok\n")), int64(len("no\n"))},
}

// errDropped ends a stream on which a fakeServer dropped a result.
var errDropped = status.Error(codes.Unavailable, "fake server dropped the stream")

// fakeServer is an in-process AgentService for one agent. It assigns the
// jobs that run queues, at most parallel at a time, and keeps of each job
// only what a real server keeps until it takes the result: the bytes it
// holds of each stream. It acknowledges output by (job, attempt, offset) as
// the real server does, and takes a result once it holds all of its output.
// With dropEvery > 0 every dropEvery-th result of a job it holds ends the
// stream instead of being taken, so the agent must deliver it again after
// reconnecting. With endOnOutput a job ends at the server (cancelled, say)
// when its first output arrives: the server answers that chunk as stale,
// which tells the agent to forget a job still running.
type fakeServer struct {
	pb.UnimplementedAgentServiceServer
	parallel    int
	dropEvery   int
	endOnOutput bool
	kinds       []fakeKind // default fakeJobs
	addr        string
	gs          *grpc.Server
	wg          sync.WaitGroup // Serve and each stream's receiver
	kick        chan struct{}  // new work queued: wakes the stream's loop

	mu      sync.Mutex
	jobs    map[string]*fakeJob // assigned and not taken yet
	queued  int                 // jobs to assign
	next    int                 // jobs assigned so far, for their ids
	taken   int                 // results taken
	results int                 // results received of held jobs, for dropEvery
	drops   int                 // streams dropped
	stale   int                 // results received of jobs not held
	err     error               // the first wrong report
	changed chan struct{}       // closed and replaced when taken or err change
}

// fakeJob is what the fake server holds of one assigned job.
type fakeJob struct {
	assign  *pb.ServerMessage
	held    [2]int64 // bytes held per stream (output, stderr)
	wantOut int64
	wantErr int64
}

// startFake serves f on a loopback port and runs an agent against it until
// the test ends.
func startFake(tb testing.TB, f *fakeServer) *Agent {
	tb.Helper()
	f.jobs, f.kick, f.changed = make(map[string]*fakeJob), make(chan struct{}, 1), make(chan struct{})
	if f.kinds == nil {
		f.kinds = fakeJobs
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f.addr = lis.Addr().String()
	f.gs = grpc.NewServer()
	pb.RegisterAgentServiceServer(f.gs, f)
	f.wg.Go(func() { _ = f.gs.Serve(lis) })

	a, err := New(Config{Server: f.addr, DataDir: tb.TempDir(), Slots: int64(f.parallel), Name: "fake", Insecure: true})
	if err != nil {
		f.gs.Stop()
		f.wg.Wait()
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			tb.Errorf("agent Run: %v", err)
		}
		f.gs.Stop()
		f.wg.Wait()
	})
	return a
}

// run queues n more jobs and waits until the server has taken their
// results.
func (f *fakeServer) run(tb testing.TB, n int) {
	tb.Helper()
	f.mu.Lock()
	f.queued += n
	want := f.taken + f.queued + len(f.jobs)
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
	deadline := time.After(10 * time.Minute)
	for {
		f.mu.Lock()
		taken, err, changed := f.taken, f.err, f.changed
		f.mu.Unlock()
		if err != nil {
			tb.Fatal(err)
		}
		if taken >= want {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			tb.Fatalf("the server took %d of %d results", taken, want)
		}
	}
}

// changedLocked wakes run.
func (f *fakeServer) changedLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// failLocked records a wrong report.
func (f *fakeServer) failLocked(format string, args ...any) {
	if f.err == nil {
		f.err = fmt.Errorf(format, args...)
		f.changedLocked()
	}
}

// Connect serves one agent's stream: one goroutine receives, this one
// sends whatever the server has to say.
func (f *fakeServer) Connect(stream pb.AgentService_ConnectServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "hello: the first message must be a Hello")
	}
	welcome := &pb.Welcome{WorkerId: hello.GetWorkerId(), HeartbeatIntervalMs: time.Hour.Milliseconds()}
	if err := stream.Send(&pb.ServerMessage{Msg: &pb.ServerMessage_Welcome{Welcome: welcome}}); err != nil {
		return err
	}
	ctx := stream.Context()
	msgs := make(chan *pb.AgentMessage)
	f.wg.Go(func() {
		defer close(msgs)
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	})
	out := f.reconcile(hello)
	for {
		out = f.assign(out)
		for _, m := range out {
			if err := stream.Send(m); err != nil {
				return err
			}
		}
		out = out[:0]
		select {
		case <-ctx.Done():
			return nil
		case <-f.kick:
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			reply, drop := f.handle(m)
			if drop {
				return errDropped
			}
			if reply != nil {
				out = append(out, reply)
			}
		}
	}
}

// reconcile answers a Hello: the results the agent kept are taken as if
// sent again, and jobs assigned to it that it does not hold (their Assign
// was lost with the stream) are assigned again.
func (f *fakeServer) reconcile(hello *pb.Hello) []*pb.ServerMessage {
	var out []*pb.ServerMessage
	held := map[string]bool{}
	for _, r := range hello.GetRunning() {
		held[r.GetJobId()] = true
	}
	for _, res := range hello.GetFinished() {
		held[res.GetJobId()] = true
		f.mu.Lock()
		out = append(out, f.finishedLocked(res, false))
		f.mu.Unlock()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, j := range f.jobs {
		if !held[id] {
			out = append(out, j.assign)
		}
	}
	return out
}

// assign appends to out the Assign of each queued job there is room
// for.
func (f *fakeServer) assign(out []*pb.ServerMessage) []*pb.ServerMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.queued > 0 && len(f.jobs) < f.parallel {
		kind := f.kinds[f.next%len(f.kinds)]
		id := fmt.Sprintf("job-%07d", f.next)
		f.next++
		f.queued--
		j := &fakeJob{wantOut: kind.out, wantErr: kind.err, assign: &pb.ServerMessage{
			Msg: &pb.ServerMessage_Assign{Assign: &pb.Assign{Job: &pb.Job{Id: id, Attempt: 1, Spec: kind.spec}}},
		}}
		f.jobs[id] = j
		out = append(out, j.assign)
	}
	return out
}

// handle applies one agent message and returns the server's answer, or
// drop when the stream is to end without one.
func (f *fakeServer) handle(m *pb.AgentMessage) (reply *pb.ServerMessage, drop bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch m := m.GetMsg().(type) {
	case *pb.AgentMessage_Log:
		return f.logLocked(m.Log), false
	case *pb.AgentMessage_Finished:
		if j := f.jobs[m.Finished.GetJobId()]; j != nil {
			f.results++
			if f.dropEvery > 0 && f.results%f.dropEvery == 0 {
				f.drops++
				return nil, true
			}
		}
		return f.finishedLocked(m.Finished, true), false
	}
	return nil, false // Started, Heartbeat
}

func ackMsg(a *pb.Ack) *pb.ServerMessage {
	return &pb.ServerMessage{Msg: &pb.ServerMessage_Ack{Ack: a}}
}

// logLocked takes the new bytes of a chunk and says how many the server
// holds; a chunk past them is a gap, answered with an error.
func (f *fakeServer) logLocked(c *pb.LogChunk) *pb.ServerMessage {
	ack := &pb.Ack{JobId: c.GetJobId(), Attempt: c.GetAttempt(), Stream: c.GetStream()}
	j := f.jobs[c.GetJobId()]
	if j == nil || c.GetAttempt() != 1 {
		ack.Result, ack.Finished, ack.Error = true, true, "stale output"
		return ackMsg(ack)
	}
	s := c.GetStream()
	if s != pb.LogStream_LOG_STREAM_OUTPUT && s != pb.LogStream_LOG_STREAM_STDERR {
		f.failLocked("job %s: chunk of stream %d", c.GetJobId(), s)
		return nil
	}
	if f.endOnOutput {
		f.takeLocked(c.GetJobId())
		ack.Result, ack.Finished, ack.Error = true, true, "job ended"
		return ackMsg(ack)
	}
	switch end := c.GetOffset() + int64(len(c.GetData())); {
	case c.GetOffset() > j.held[s]:
		ack.Error = fmt.Sprintf("gap: holds %d bytes, chunk at %d", j.held[s], c.GetOffset())
	case end > j.held[s]:
		j.held[s] = end
	}
	ack.LogOffset = j.held[s]
	return ackMsg(ack)
}

// finishedLocked takes a result once the server holds all of its output,
// and checks it; before that it asks for the rest.
func (f *fakeServer) finishedLocked(res *pb.JobFinished, live bool) *pb.ServerMessage {
	id := res.GetJobId()
	ack := &pb.Ack{JobId: id, Attempt: res.GetAttempt(), Result: true}
	j := f.jobs[id]
	if j == nil || res.GetAttempt() != 1 {
		f.stale++
		ack.Finished, ack.Error = true, "stale report"
		return ackMsg(ack)
	}
	if res.GetOutputLost() == "" && (j.held[0] < res.GetLogSize() || j.held[1] < res.GetStderrSize()) {
		ack.LogOffset, ack.StderrOffset = j.held[0], j.held[1]
		return ackMsg(ack)
	}
	switch {
	case res.GetOutcome() != pb.Outcome_OUTCOME_EXITED || res.GetExitCode() != 0 || res.GetOutputLost() != "":
		f.failLocked("job %s ended %s, exit code %d: %s %s", id, res.GetOutcome(), res.GetExitCode(), res.GetReason(), res.GetOutputLost())
	case j.held != [2]int64{j.wantOut, j.wantErr} || res.GetLogSize() != j.wantOut || res.GetStderrSize() != j.wantErr:
		f.failLocked("job %s: server holds %v bytes, result says %d+%d, want %d+%d (live %v)",
			id, j.held, res.GetLogSize(), res.GetStderrSize(), j.wantOut, j.wantErr, live)
	}
	f.takeLocked(id)
	ack.Finished = true
	return ackMsg(ack)
}

// takeLocked ends a job at the server.
func (f *fakeServer) takeLocked(id string) {
	delete(f.jobs, id)
	f.taken++
	f.changedLocked()
}

// footprint is what an agent holds of its tasks.
type footprint struct {
	Tasks     int // in its task table
	Pumps     int // in the current session's set of pumped tasks
	Journaled int // results in its journal
	Spools    int // spool files
}

func (a *Agent) footprint(tb testing.TB) footprint {
	tb.Helper()
	var fp footprint
	a.mu.Lock()
	fp.Tasks = len(a.tasks)
	a.mu.Unlock()
	if s := a.live.Load(); s != nil {
		s.mu.Lock()
		fp.Pumps = len(s.pumped)
		s.mu.Unlock()
	}
	a.journal.mu.Lock()
	fp.Journaled = len(a.journal.pending)
	a.journal.mu.Unlock()
	files, err := os.ReadDir(a.journal.spoolDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		tb.Fatal(err)
	}
	fp.Spools = len(files)
	return fp
}

// waitForgotten waits until the agent holds nothing of any task: the
// server's acknowledgement of a result reaches the agent after the server
// counted it taken.
func waitForgotten(tb testing.TB, a *Agent) {
	tb.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		fp := a.footprint(tb)
		if fp == (footprint{}) {
			return
		}
		select {
		case <-deadline:
			tb.Fatalf("after every result was acknowledged the agent still holds %+v, want nothing", fp)
		case <-tick.C:
		}
	}
}
