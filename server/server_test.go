package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/cluster"
	pb "github.com/hodei-jobs/hodei/proto"
)

func TestMain(m *testing.M) {
	agent.MaybeSupervise("") // the agents under test start their supervisors from this binary
	goleak.VerifyTestMain(m)
}

// sut is a running server on loopback with a client connection to it.
type sut struct {
	srv   *Server
	conn  *grpc.ClientConn // with the admin token
	jobs  pb.JobServiceClient
	admin pb.AdminServiceClient
	dir   string

	mu         sync.Mutex
	agentConns map[string]*grpc.ClientConn // worker id → mTLS connection; guarded by mu
}

// setup starts a server in t.TempDir() on 127.0.0.1:0 and stops it, waiting
// for every goroutine, in t.Cleanup.
func setup(t testing.TB, configure ...func(*Config)) *sut {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{DataDir: dir, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Settings: cluster.Settings{Heartbeat: 100 * time.Millisecond, Lease: 2 * time.Second, KillGrace: time.Second}}
	for _, c := range configure {
		c(&cfg)
	}
	srv, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	s := &sut{srv: srv, dir: cfg.DataDir, agentConns: make(map[string]*grpc.ClientConn)}
	t.Cleanup(func() {
		s.mu.Lock()
		for _, c := range s.agentConns {
			c.Close()
		}
		s.mu.Unlock()
		if s.conn != nil {
			s.conn.Close()
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	s.conn = s.dialToken(t, s.adminToken(t))
	s.jobs, s.admin = pb.NewJobServiceClient(s.conn), pb.NewAdminServiceClient(s.conn)
	return s
}

// httpGet returns the body of GET path on the server's HTTP address and
// fails the test unless the answer is 200 OK.
func (s *sut) httpGet(t *testing.T, path string) string {
	t.Helper()
	req, err := http.NewRequest("GET", s.httpURL(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.adminToken(t))
	resp, err := s.httpClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	return string(b)
}

func (s *sut) submit(t *testing.T, spec *pb.JobSpec) string {
	t.Helper()
	resp, err := s.jobs.Submit(context.Background(), &pb.SubmitRequest{Spec: spec})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return resp.GetId()
}

// waitJob polls Get until cond holds or the deadline passes.
func (s *sut) waitJob(t *testing.T, id string, cond func(*pb.Job) bool) *pb.Job {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, err := s.jobs.Get(context.Background(), &pb.GetJobRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s stuck in %s (reason %q)", id, j.GetState(), j.GetReason())
		}
		watchOnce(t, s, id, j.GetVersion())
	}
}

// watchOnce blocks until the job's version moves past v (or a short
// deadline, after which the caller polls again).
func watchOnce(t *testing.T, s *sut, id string, v uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	w, err := s.jobs.Watch(ctx, &pb.WatchRequest{JobId: id})
	if err != nil {
		return
	}
	for {
		ev, err := w.Recv()
		if err != nil || ev.GetJob().GetVersion() > v {
			return
		}
	}
}

// scriptedAgent speaks the real agent protocol from the test.
type scriptedAgent struct {
	t      testing.TB
	stream pb.AgentService_ConnectClient
	cancel context.CancelFunc
}

func connectAgent(t testing.TB, s *sut, hello *pb.Hello) *scriptedAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := pb.NewAgentServiceClient(s.agentConn(t, hello.GetWorkerId())).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := &scriptedAgent{t: t, stream: stream, cancel: cancel}
	t.Cleanup(a.close)
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: hello}})
	if w := a.recv().GetWelcome(); w == nil || w.GetWorkerId() != hello.GetWorkerId() {
		t.Fatalf("first server message is not a Welcome for %s", hello.GetWorkerId())
	}
	return a
}

func (a *scriptedAgent) close() {
	a.stream.CloseSend()
	a.cancel()
}

func (a *scriptedAgent) send(m *pb.AgentMessage) {
	a.t.Helper()
	if err := a.stream.Send(m); err != nil {
		a.t.Fatalf("agent send: %v", err)
	}
}

func (a *scriptedAgent) recv() *pb.ServerMessage {
	a.t.Helper()
	m, err := a.stream.Recv()
	if err != nil {
		a.t.Fatalf("agent recv: %v", err)
	}
	return m
}

// recvAck reads messages until an Ack arrives.
func (a *scriptedAgent) recvAck() *pb.Ack {
	a.t.Helper()
	for {
		if ack := a.recv().GetAck(); ack != nil {
			return ack
		}
	}
}

func hello(id string, slots int64) *pb.Hello {
	return &pb.Hello{WorkerId: id, Name: id, Hostname: "test", Capacity: &pb.Resources{Slots: slots, CpuMillis: 4000, MemoryMib: 4096}}
}

func TestScriptedAgentRunsJob(t *testing.T) {
	s := setup(t)
	a := connectAgent(t, s, hello("w1", 2))
	id := s.submit(t, &pb.JobSpec{Command: []string{"echo", "hi"}})

	assign := a.recv().GetAssign()
	if assign.GetJob().GetId() != id || assign.GetJob().GetAttempt() != 1 {
		t.Fatalf("assign = %v, want job %s attempt 1", assign, id)
	}
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Started{Started: &pb.JobStarted{JobId: id, Attempt: 1, StartedUnixNano: time.Now().UnixNano()}}})
	s.waitJob(t, id, func(j *pb.Job) bool { return j.GetState() == pb.JobState_JOB_STATE_RUNNING })

	// Output with every byte value, sent in chunks, one of them twice.
	var out []byte
	for i := range 3 * 256 {
		out = append(out, byte(i))
	}
	chunks := [][2]int{{0, 300}, {300, 600}, {300, 600}, {600, len(out)}}
	for _, c := range chunks {
		a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Log{Log: &pb.LogChunk{JobId: id, Attempt: 1, Offset: int64(c[0]), Data: out[c[0]:c[1]]}}})
		if ack := a.recvAck(); ack.GetLogOffset() != int64(c[1]) || ack.GetError() != "" {
			t.Fatalf("ack after chunk %v = %v", c, ack)
		}
	}
	// A chunk past the end is a gap: refused, with the offset to resend from.
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Log{Log: &pb.LogChunk{JobId: id, Attempt: 1, Offset: int64(len(out) + 10), Data: []byte("x")}}})
	if ack := a.recvAck(); ack.GetLogOffset() != int64(len(out)) || ack.GetError() == "" {
		t.Fatalf("ack after a gap = %v, want an error and offset %d", ack, len(out))
	}
	// A result claiming more output than stored is held back.
	fin := &pb.JobFinished{JobId: id, Attempt: 1, Outcome: pb.Outcome_OUTCOME_EXITED, ExitCode: 0, LogSize: int64(len(out) + 1)}
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Finished{Finished: fin}})
	if ack := a.recvAck(); ack.GetFinished() {
		t.Fatalf("result with missing output accepted: %v", ack)
	}
	fin.LogSize = int64(len(out))
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Finished{Finished: fin}})
	if ack := a.recvAck(); !ack.GetFinished() || ack.GetError() != "" {
		t.Fatalf("ack of result = %v", ack)
	}
	j := s.waitJob(t, id, func(j *pb.Job) bool { return j.GetState() == pb.JobState_JOB_STATE_COMPLETED })
	if j.GetExitCode() != 0 || j.GetWorker() != "w1" {
		t.Fatalf("job = %v", j)
	}
	stored, err := os.ReadFile(filepath.Join(s.dir, "logs", id, "1.log"))
	if err != nil || !bytes.Equal(stored, out) {
		t.Fatalf("stored log differs from the output (%d vs %d bytes): %v", len(stored), len(out), err)
	}
	// The same result again is stale: acknowledged, rejected, nothing changes.
	fin.ExitCode = 7
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Finished{Finished: fin}})
	if ack := a.recvAck(); !ack.GetFinished() || ack.GetError() == "" {
		t.Fatalf("duplicate result ack = %v, want finished with an error", ack)
	}
	again, _ := s.jobs.Get(context.Background(), &pb.GetJobRequest{Id: id})
	if again.GetVersion() != j.GetVersion() || again.GetExitCode() != 0 {
		t.Fatalf("duplicate result changed the job: %v", again)
	}
	// The log streams back byte-exact.
	if got := readLogs(t, s, id, false); !bytes.Equal(got, out) {
		t.Fatalf("Logs returned %d bytes, want %d identical", len(got), len(out))
	}
}

func readLogs(t *testing.T, s *sut, id string, follow bool) []byte {
	t.Helper()
	stream, err := s.jobs.Logs(context.Background(), &pb.LogsRequest{Id: id, Follow: follow})
	if err != nil {
		t.Fatal(err)
	}
	return collect(t, stream.Recv, (*pb.LogData).GetData)
}

// collect reads a stream to its end and joins the bytes of its messages.
func collect[M any](t *testing.T, recv func() (M, error), data func(M) []byte) []byte {
	t.Helper()
	var got []byte
	for {
		m, err := recv()
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, data(m)...)
	}
}

func TestStaleAttemptAfterWorkerLost(t *testing.T) {
	s := setup(t, func(c *Config) { c.Lease = 300 * time.Millisecond })
	a1 := connectAgent(t, s, hello("w1", 1))
	id := s.submit(t, &pb.JobSpec{Command: []string{"true"}, Retries: 1, BackoffMs: 1})
	if got := a1.recv().GetAssign().GetJob().GetId(); got != id {
		t.Fatalf("assign %s", got)
	}
	a1.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Started{Started: &pb.JobStarted{JobId: id, Attempt: 1}}})
	// w1 goes silent (no heartbeats) and is lost; w2 arrives and gets attempt 2.
	s.waitJob(t, id, func(j *pb.Job) bool { return j.GetAttempt() == 2 })
	a2 := connectAgent(t, s, hello("w2", 1))
	assign := a2.recv().GetAssign()
	if assign.GetJob().GetId() != id || assign.GetJob().GetAttempt() != 2 {
		t.Fatalf("w2 got %v, want attempt 2 of %s", assign, id)
	}
	// w1 was declared lost: its next message closes its stream, so that it
	// reconnects and reconciles.
	a1.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Heartbeat{Heartbeat: &pb.Heartbeat{}}})
	if _, err := a1.stream.Recv(); err == nil {
		t.Fatal("a lost worker's stream stayed open")
	}
	// Back with the old attempt still running, it is told to stop it, and
	// its late result is rejected; the job stays with w2.
	a1 = connectAgent(t, s, &pb.Hello{WorkerId: "w1", Capacity: &pb.Resources{Slots: 1}, Running: []*pb.JobRef{{JobId: id, Attempt: 1}}})
	if c := a1.recv().GetCancel(); c.GetJobId() != id || c.GetAttempt() != 1 {
		t.Fatalf("reconnected w1 got %v, want a stop order for attempt 1", c)
	}
	a1.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Finished{Finished: &pb.JobFinished{JobId: id, Attempt: 1, Outcome: pb.Outcome_OUTCOME_EXITED}}})
	if ack := a1.recvAck(); !ack.GetFinished() || !strings.Contains(ack.GetError(), "stale") {
		t.Fatalf("stale result ack = %v", ack)
	}
	j, _ := s.jobs.Get(context.Background(), &pb.GetJobRequest{Id: id})
	if j.GetState() != pb.JobState_JOB_STATE_SCHEDULED || j.GetWorker() != "w2" || j.GetAttempt() != 2 {
		t.Fatalf("after stale report job = %v", j)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	s := setup(t)
	s.setTenant(t, &pb.Tenant{Name: "team-a"})
	s.submit(t, &pb.JobSpec{Command: []string{"true"}, Tenant: "team-a"})
	if got := s.httpGet(t, "/healthz"); got != "ok\n" {
		t.Fatalf("/healthz = %q", got)
	}
	m := s.httpGet(t, "/metrics")
	for _, want := range []string{
		`hodei_jobs{state="PENDING",tenant="team-a"} 1`,
		`hodei_jobs_submitted_total{tenant="team-a"} 1`,
		`hodei_dispatch_latency_seconds_bucket`,
		`hodei_workers{state="READY"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestErrorsMapToStatusCodes(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"SubmitNoSpec", func() error { _, err := s.jobs.Submit(ctx, &pb.SubmitRequest{}); return err }, codes.InvalidArgument},
		{"GetBadID", func() error { _, err := s.jobs.Get(ctx, &pb.GetJobRequest{Id: "nope"}); return err }, codes.InvalidArgument},
		{"GetUnknown", func() error {
			_, err := s.jobs.Get(ctx, &pb.GetJobRequest{Id: "01ARZ3NDEKTSV4RRFFQ69G5FAV"})
			return err
		}, codes.NotFound},
		{"ListPageSize", func() error { _, err := s.jobs.List(ctx, &pb.ListJobsRequest{PageSize: 5000}); return err }, codes.InvalidArgument},
		{"DrainUnknown", func() error { _, err := s.admin.DrainWorker(ctx, &pb.DrainWorkerRequest{Id: "x"}); return err }, codes.NotFound},
		{"GetBadPrefix", func() error { _, err := s.jobs.Get(ctx, &pb.GetJobRequest{Id: "01J!"}); return err }, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(tt.call()); got != tt.code {
				t.Fatalf("code %s, want %s", got, tt.code)
			}
		})
	}
}

func TestLogsFollowUntilTheJobEnds(t *testing.T) {
	s := setup(t)
	a := connectAgent(t, s, hello("w1", 1))
	id := s.submit(t, &pb.JobSpec{Command: []string{"true"}})
	a.recv() // Assign
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Started{Started: &pb.JobStarted{JobId: id, Attempt: 1}}})
	got := make(chan []byte, 1)
	go func() {
		stream, err := s.jobs.Logs(context.Background(), &pb.LogsRequest{Id: id, Follow: true})
		if err != nil {
			got <- nil
			return
		}
		var b []byte
		for {
			d, err := stream.Recv()
			if err != nil {
				got <- b
				return
			}
			b = append(b, d.GetData()...)
		}
	}()
	var want []byte
	for i := range 50 {
		chunk := bytes.Repeat([]byte{byte('a' + i%26)}, 1000+i)
		a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Log{Log: &pb.LogChunk{JobId: id, Attempt: 1, Offset: int64(len(want)), Data: chunk}}})
		a.recvAck()
		want = append(want, chunk...)
	}
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Finished{Finished: &pb.JobFinished{JobId: id, Attempt: 1, Outcome: pb.Outcome_OUTCOME_EXITED, LogSize: int64(len(want))}}})
	a.recvAck()
	select {
	case b := <-got:
		if !bytes.Equal(b, want) {
			t.Fatalf("follower got %d bytes, want %d identical", len(b), len(want))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follower did not end when the job did")
	}
}

func TestReportsForUnknownJobsAreForgotten(t *testing.T) {
	s := setup(t)
	a := connectAgent(t, s, hello("w1", 1))
	const gone = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
	// Output of a job the server does not know: the agent is told to forget it.
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Log{Log: &pb.LogChunk{JobId: gone, Attempt: 1, Data: []byte("x")}}})
	if ack := a.recvAck(); !ack.GetResult() || !ack.GetFinished() || ack.GetError() == "" {
		t.Fatalf("ack of output of an unknown job = %v", ack)
	}
	// So is its result, however much output it claims.
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Finished{Finished: &pb.JobFinished{JobId: gone, Attempt: 1, LogSize: 1 << 20}}})
	if ack := a.recvAck(); !ack.GetFinished() || ack.GetError() == "" {
		t.Fatalf("ack of the result of an unknown job = %v", ack)
	}
}

func TestLogReadersLeaveNoSignals(t *testing.T) {
	s := setup(t)
	id := s.submit(t, &pb.JobSpec{Command: []string{"true"}})
	if _, err := s.jobs.Cancel(context.Background(), &pb.CancelJobRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	readLogs(t, s, id, false)
	readLogs(t, s, id, true) // ends at once: the job is terminal
	s.srv.logSignals.mu.Lock()
	n := len(s.srv.logSignals.m)
	s.srv.logSignals.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d log signals left after the readers ended", n)
	}
}

func TestHelloWithAbsurdCapacityIsRefused(t *testing.T) {
	s := setup(t)
	stream, err := pb.NewAgentServiceClient(s.agentConn(t, "huge")).Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: hello("huge", 1<<40)}})
	_, err = stream.Recv()
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "hello.capacity.slots") {
		t.Fatalf("hello with 2^40 slots: %v", err)
	}
}
