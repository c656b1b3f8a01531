package server

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/hodei-jobs/hodei/proto"
)

// runningJob submits spec, has the scripted agent start it and waits
// until it is RUNNING.
func runningJob(t *testing.T, s *sut, a *scriptedAgent, spec *pb.JobSpec) string {
	t.Helper()
	id := s.submit(t, spec)
	for a.recv().GetAssign().GetJob().GetId() != id {
	}
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Started{Started: &pb.JobStarted{JobId: id, Attempt: 1, StartedUnixNano: time.Now().UnixNano()}}})
	s.waitJob(t, id, func(j *pb.Job) bool { return j.GetState() == pb.JobState_JOB_STATE_RUNNING })
	return id
}

// attach opens an Attach stream with open and reads its Attached.
func attach(t *testing.T, jobs pb.JobServiceClient, open *pb.AttachOpen) pb.JobService_AttachClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := jobs.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Open{Open: open}}); err != nil {
		t.Fatal(err)
	}
	m, err := st.Recv()
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if m.GetAttached().GetJobId() != open.GetJobId() {
		t.Fatalf("first attach message %v, want Attached", m)
	}
	return st
}

// inputState reads an attach stream until an InputState that cond
// accepts, collecting the output on the way.
func inputState(t *testing.T, st pb.JobService_AttachClient, out *bytes.Buffer, cond func(*pb.InputState) bool) *pb.InputState {
	t.Helper()
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("attach recv: %v", err)
		}
		if out != nil {
			out.Write(m.GetOutput().GetData())
		}
		if in := m.GetInput(); in != nil && cond(in) {
			return in
		}
	}
}

// recvInput reads the agent's stream until a JobInput.
func (a *scriptedAgent) recvInput() *pb.JobInput {
	a.t.Helper()
	for {
		if in := a.recv().GetInput(); in != nil {
			return in
		}
	}
}

func sendInput(t *testing.T, st pb.JobService_AttachClient, data []byte) {
	t.Helper()
	if err := st.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Input{Input: data}}); err != nil {
		t.Fatal(err)
	}
}

func credit(a *scriptedAgent, id string, c *pb.InputCredit) {
	c.JobId, c.Attempt = id, 1
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Credit{Credit: c}})
}

// TestAttachInputFlowControl relays input from a client to the agent: the
// server passes on no more than the agent's credit, credits the client
// what it passed on, keeps the order, and ends a client that sends beyond
// its credit.
func TestAttachInputFlowControl(t *testing.T) {
	s := setup(t)
	a := connectAgent(t, s, hello("w1", 2))
	id := runningJob(t, s, a, &pb.JobSpec{Command: []string{"cat"}})

	st := attach(t, s.jobs, &pb.AttachOpen{JobId: id, Claim: true, Size: &pb.TerminalSize{Rows: 30, Cols: 100}})
	held := inputState(t, st, nil, func(in *pb.InputState) bool { return in.GetHeld() })
	if held.GetLimit() != attachWindow {
		t.Fatalf("the holder's first credit is %d, want the window %d", held.GetLimit(), attachWindow)
	}
	if open := a.recvInput(); !open.GetOpen() || open.GetJobId() != id {
		t.Fatalf("agent got %v, want the open of %s's input", open, id)
	}
	// The agent gives 1000 bytes; the client sends 5000 within its credit.
	credit(a, id, &pb.InputCredit{Opened: true, Offset: 0, Limit: 1000})
	var want []byte
	for i := range 5 {
		chunk := bytes.Repeat([]byte{'a' + byte(i)}, 1000)
		want = append(want, chunk...)
		sendInput(t, st, chunk)
	}
	var got []byte
	var resized bool
	for len(got) < 1000 {
		m := a.recv()
		if r := m.GetResize(); r != nil {
			resized = r.GetRows() == 30 && r.GetCols() == 100
			continue
		}
		in := m.GetInput()
		if in == nil {
			continue
		}
		if in.GetOffset() != int64(len(got)) {
			t.Fatalf("input at offset %d, want %d", in.GetOffset(), len(got))
		}
		got = append(got, in.GetData()...)
	}
	if len(got) != 1000 || !resized {
		t.Fatalf("the agent got %d bytes (resized %v), want exactly its credit of 1000 and the holder's size", len(got), resized)
	}
	// More credit: the rest comes, in order, and the client is credited.
	credit(a, id, &pb.InputCredit{Limit: 1000 + InputWindowForTest})
	for len(got) < len(want) {
		in := a.recvInput()
		if in.GetOffset() != int64(len(got)) {
			t.Fatalf("input at offset %d, want %d", in.GetOffset(), len(got))
		}
		got = append(got, in.GetData()...)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the agent got the input out of order or changed")
	}
	inputState(t, st, nil, func(in *pb.InputState) bool { return in.GetLimit() == attachWindow+5000 })

	// The end of input follows the data.
	if err := st.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_End{End: &pb.InputEnd{}}}); err != nil {
		t.Fatal(err)
	}
	if eof := a.recvInput(); !eof.GetEof() || eof.GetOffset() != 5000 {
		t.Fatalf("agent got %v, want the EOF at 5000", eof)
	}

	// A client that sends beyond its credit is cut off: here the agent of
	// another job gives none, so the server holds the window and no more.
	id2 := runningJob(t, s, a, &pb.JobSpec{Command: []string{"sleep", "1000"}})
	st = attach(t, s.jobs, &pb.AttachOpen{JobId: id2, Claim: true})
	inputState(t, st, nil, func(in *pb.InputState) bool { return in.GetHeld() })
	for open := a.recvInput(); !open.GetOpen() || open.GetJobId() != id2; open = a.recvInput() {
	}
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Credit{Credit: &pb.InputCredit{JobId: id2, Attempt: 1, Opened: true}}})
	sendInput(t, st, bytes.Repeat([]byte("x"), maxInputMsg))
	sendInput(t, st, bytes.Repeat([]byte("x"), maxInputMsg))
	sendInput(t, st, bytes.Repeat([]byte("x"), maxInputMsg))
	for {
		_, err := st.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("input beyond the credit: %v, want ResourceExhausted", err)
		}
		break
	}
}

// InputWindowForTest is a credit larger than any test sends.
const InputWindowForTest = 1 << 20

// TestAttachInputHolder: the first stream to claim holds the input; others
// are told who holds it and get it once the holder detaches; a viewer
// token and a read-only stream are refused, the viewer audited.
func TestAttachInputHolder(t *testing.T) {
	s := setup(t)
	a := connectAgent(t, s, hello("w1", 2))
	id := runningJob(t, s, a, &pb.JobSpec{Command: []string{"sh"}})

	first := attach(t, s.jobs, &pb.AttachOpen{JobId: id, Output: true})
	second := attach(t, s.jobs, &pb.AttachOpen{JobId: id, Output: true})
	claim := &pb.AttachRequest{Msg: &pb.AttachRequest_Claim{Claim: &pb.InputClaim{}}}
	if err := first.Send(claim); err != nil {
		t.Fatal(err)
	}
	inputState(t, first, nil, func(in *pb.InputState) bool { return in.GetHeld() })
	if err := second.Send(claim); err != nil {
		t.Fatal(err)
	}
	other := inputState(t, second, nil, func(in *pb.InputState) bool { return in.GetHolder() != "" })
	if other.GetHeld() || other.GetHolder() != "admin" {
		t.Fatalf("second stream sees %v, want the input held by admin", other)
	}
	sendInput(t, second, []byte("x")) // not the holder: refused
	if _, err := recvErr(second); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("input from a stream that does not hold it: %v, want FailedPrecondition", err)
	}
	third := attach(t, s.jobs, &pb.AttachOpen{JobId: id, Output: true})
	if err := first.CloseSend(); err != nil { // detach
		t.Fatal(err)
	}
	if _, err := recvErr(first); err != io.EOF {
		t.Fatalf("detached stream ended with %v, want a clean end", err)
	}
	inputState(t, third, nil, func(in *pb.InputState) bool { return !in.GetHeld() && in.GetHolder() == "" })
	if err := third.Send(claim); err != nil {
		t.Fatal(err)
	}
	inputState(t, third, nil, func(in *pb.InputState) bool { return in.GetHeld() })

	ro := attach(t, s.jobs, &pb.AttachOpen{JobId: id, Output: true, ReadOnly: true})
	if err := ro.Send(claim); err != nil {
		t.Fatal(err)
	}
	if r := inputState(t, ro, nil, func(in *pb.InputState) bool { return in.GetRefused() != "" }); !strings.Contains(r.GetRefused(), "read-only") {
		t.Fatalf("read-only claim refused with %q", r.GetRefused())
	}
	viewer, _ := s.createToken(t, "viewer")
	vs := attach(t, pb.NewJobServiceClient(s.dialToken(t, viewer)), &pb.AttachOpen{JobId: id, Output: true})
	if err := vs.Send(claim); err != nil {
		t.Fatal(err)
	}
	if r := inputState(t, vs, nil, func(in *pb.InputState) bool { return in.GetRefused() != "" }); !strings.Contains(r.GetRefused(), "cancel") {
		t.Fatalf("viewer claim refused with %q, want the right it lacks", r.GetRefused())
	}
	s.waitAuditFor(t, "the viewer's refused input", func(rs []*pb.AuditRecord) bool {
		for _, r := range rs {
			if r.GetAction() == attachInputAction && r.GetResult() == "PermissionDenied" && r.GetTarget() == id {
				return true
			}
		}
		return false
	})
}

// recvErr reads until the stream ends and returns how.
func recvErr(st pb.JobService_AttachClient) (*pb.AttachResponse, error) {
	for {
		m, err := st.Recv()
		if err != nil {
			return m, err
		}
	}
}

// TestAttachReplaysAndEnds: an attach starts with the last screenful of
// the output, follows it, and ends with the job's end.
func TestAttachReplaysAndEnds(t *testing.T) {
	s := setup(t)
	a := connectAgent(t, s, hello("w1", 2))
	id := runningJob(t, s, a, &pb.JobSpec{Command: []string{"sh"}})
	out := []byte("one\r\ntwo\r\nthree\r\n$ ")
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Log{Log: &pb.LogChunk{JobId: id, Attempt: 1, Data: out}}})
	a.recvAck()

	st := attach(t, s.jobs, &pb.AttachOpen{JobId: id, Output: true, Size: &pb.TerminalSize{Rows: 2, Cols: 80}})
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Log{Log: &pb.LogChunk{JobId: id, Attempt: 1, Offset: int64(len(out)), Data: []byte("exit\r\n")}}})
	a.recvAck()
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Finished{Finished: &pb.JobFinished{JobId: id, Attempt: 1,
		Outcome: pb.Outcome_OUTCOME_EXITED, ExitCode: 3, LogSize: int64(len(out)) + 6}}})
	var got bytes.Buffer
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("attach ended with %v before AttachEnded", err)
		}
		got.Write(m.GetOutput().GetData())
		if e := m.GetEnded(); e != nil {
			if e.GetJob().GetState() != pb.JobState_JOB_STATE_FAILED || e.GetJob().GetExitCode() != 3 {
				t.Fatalf("ended with %v, want FAILED exit 3", e.GetJob())
			}
			break
		}
	}
	if want := "three\r\n$ exit\r\n"; got.String() != want {
		t.Fatalf("attach output %q, want the last two lines then the rest: %q", got.String(), want)
	}
	// A job that has ended cannot be attached to.
	st, err := s.jobs.Attach(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Open{Open: &pb.AttachOpen{JobId: id}}})
	if _, err := st.Recv(); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "hodei logs") {
		t.Fatalf("attach to an ended job: %v, want FailedPrecondition pointing to hodei logs", err)
	}
}

// TestAttachResumes: a client that reconnects asks for the output from
// the next byte it has not printed, not the last screenful again; one that
// comes back after the job ended gets the rest and the end. Resume
// positions that cannot be are InvalidArgument.
func TestAttachResumes(t *testing.T) {
	s := setup(t)
	a := connectAgent(t, s, hello("w1", 2))
	id := runningJob(t, s, a, &pb.JobSpec{Command: []string{"sh"}})
	out := []byte("one\r\ntwo\r\nthree\r\n")
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Log{Log: &pb.LogChunk{JobId: id, Attempt: 1, Data: out}}})
	a.recvAck()

	// readOutput reads the stream's output until want has come whole.
	readOutput := func(st pb.JobService_AttachClient, want string) {
		t.Helper()
		var got bytes.Buffer
		for got.Len() < len(want) {
			m, err := st.Recv()
			if err != nil {
				t.Fatalf("attach: %v after %q, want %q", err, got.String(), want)
			}
			if o := m.GetOutput(); o != nil {
				if o.GetOffset() != 5+int64(got.Len()) {
					t.Fatalf("output at offset %d after %q, want %d", o.GetOffset(), got.String(), 5+got.Len())
				}
				got.Write(o.GetData())
			}
		}
		if got.String() != want {
			t.Fatalf("resumed output %q, want %q", got.String(), want)
		}
	}
	st := attach(t, s.jobs, &pb.AttachOpen{JobId: id, Output: true, ResumeAttempt: 1, ResumeOffset: 5, Size: &pb.TerminalSize{Rows: 1, Cols: 80}})
	readOutput(st, "two\r\nthree\r\n")
	st.CloseSend()

	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Log{Log: &pb.LogChunk{JobId: id, Attempt: 1, Offset: int64(len(out)), Data: []byte("four\r\n")}}})
	a.recvAck()
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Finished{Finished: &pb.JobFinished{JobId: id, Attempt: 1,
		Outcome: pb.Outcome_OUTCOME_EXITED, ExitCode: 3, LogSize: int64(len(out)) + 6}}})
	s.waitJob(t, id, func(j *pb.Job) bool { return j.GetState() == pb.JobState_JOB_STATE_FAILED })

	st = attach(t, s.jobs, &pb.AttachOpen{JobId: id, Output: true, ResumeAttempt: 1, ResumeOffset: 5})
	readOutput(st, "two\r\nthree\r\nfour\r\n")
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("after the rest of the output: %v, want AttachEnded", err)
		}
		if e := m.GetEnded(); e != nil {
			if e.GetJob().GetExitCode() != 3 {
				t.Fatalf("ended with %v, want exit code 3", e.GetJob())
			}
			break
		}
		if m.GetOutput() != nil {
			t.Fatalf("more output after the end of the log: %v", m)
		}
	}

	for _, tc := range []struct {
		name  string
		open  *pb.AttachOpen
		field string
	}{
		{"AttemptNotYet", &pb.AttachOpen{JobId: id, Output: true, ResumeAttempt: 2}, "resume_attempt"},
		{"NegativeAttempt", &pb.AttachOpen{JobId: id, Output: true, ResumeAttempt: -1}, "resume_attempt"},
		{"NegativeOffset", &pb.AttachOpen{JobId: id, Output: true, ResumeAttempt: 1, ResumeOffset: -1}, "resume_offset"},
		{"NoOutput", &pb.AttachOpen{JobId: id, ResumeAttempt: 1}, "resume_attempt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := s.jobs.Attach(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			st.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Open{Open: tc.open}})
			if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("%v, want InvalidArgument naming %s", err, tc.field)
			}
		})
	}
}

func TestScreenStart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tail  string
		rows  int
		whole bool
		want  string
	}{
		{"LastLines", "a\nb\nc\n$ ", 2, true, "c\n$ "},
		{"FewerLines", "a\nb", 5, true, "a\nb"},
		{"FewerLinesInATail", "ial\nb\nc", 5, false, "b\nc"},
		{"NoLineEnd", "abc", 3, false, "abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.tail[screenStart([]byte(tc.tail), tc.rows, tc.whole):]; got != tc.want {
				t.Fatalf("screen %q, want %q", got, tc.want)
			}
		})
	}
}
