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

// recvData reads the agent's stream until n input bytes of job id came,
// checking that they continue from offset from.
func (a *scriptedAgent) recvData(t *testing.T, id string, from int64, n int) []byte {
	t.Helper()
	var got []byte
	for len(got) < n {
		in := a.recvInput()
		if in.GetJobId() != id || in.GetOpen() {
			continue
		}
		if in.GetOffset() != from+int64(len(got)) {
			t.Fatalf("input at agent offset %d, want %d", in.GetOffset(), from+int64(len(got)))
		}
		got = append(got, in.GetData()...)
	}
	return got
}

// TestAttachInputResentIsNotRepeated: a client that names its input and
// sends again, on a new stream, what the agent had not acked (as after a
// server restart) has the bytes the agent already got dropped, the rest
// passed on after them, and is told what the agent has written; one that
// resumes past what the agent got ends with DataLoss rather than leave a
// gap in the job's input.
func TestAttachInputResentIsNotRepeated(t *testing.T) {
	s := setup(t)
	a := connectAgent(t, s, hello("w1", 2))
	id := runningJob(t, s, a, &pb.JobSpec{Command: []string{"cat"}})
	input := make([]byte, 1500)
	for i := range input {
		input[i] = byte('a' + i%26)
	}

	first := attach(t, s.jobs, &pb.AttachOpen{JobId: id, Claim: true, InputSource: "c1"})
	inputState(t, first, nil, func(in *pb.InputState) bool { return in.GetHeld() })
	for open := a.recvInput(); !open.GetOpen(); open = a.recvInput() {
	}
	credit(a, id, &pb.InputCredit{Opened: true, Limit: InputWindowForTest})
	sendInput(t, first, input[:1000])
	if got := a.recvData(t, id, 0, 1000); !bytes.Equal(got, input[:1000]) {
		t.Fatal("the agent got the first 1000 bytes changed")
	}
	credit(a, id, &pb.InputCredit{Limit: InputWindowForTest, Written: 600})
	inputState(t, first, nil, func(in *pb.InputState) bool { return in.GetAcked() == 600 })
	first.CloseSend()
	if _, err := recvErr(first); err != io.EOF {
		t.Fatalf("detach: %v", err)
	}

	// The client comes back (the server restarted under it) and sends
	// again from 600, what was not acked, then new bytes.
	second := attach(t, s.jobs, &pb.AttachOpen{JobId: id, Claim: true, InputSource: "c1", InputOffset: 600})
	inputState(t, second, nil, func(in *pb.InputState) bool { return in.GetHeld() })
	for open := a.recvInput(); !open.GetOpen(); open = a.recvInput() {
	}
	credit(a, id, &pb.InputCredit{Opened: true, Offset: 1000, Limit: InputWindowForTest, Written: 700, Source: "c1", SourceOffset: 1000})
	sendInput(t, second, input[600:])
	if got := a.recvData(t, id, 1000, 500); !bytes.Equal(got, input[1000:]) {
		t.Fatalf("after the resend the agent got %q, want the 500 bytes after the first 1000", got)
	}
	inputState(t, second, nil, func(in *pb.InputState) bool { return in.GetAcked() == 700 })
	second.CloseSend()
	if _, err := recvErr(second); err != io.EOF {
		t.Fatalf("detach: %v", err)
	}

	// A client that resumes past what the agent has: bytes were lost.
	third := attach(t, s.jobs, &pb.AttachOpen{JobId: id, Claim: true, InputSource: "c1", InputOffset: 1600})
	inputState(t, third, nil, func(in *pb.InputState) bool { return in.GetHeld() })
	for open := a.recvInput(); !open.GetOpen(); open = a.recvInput() {
	}
	credit(a, id, &pb.InputCredit{Opened: true, Offset: 1500, Limit: InputWindowForTest, Source: "c1", SourceOffset: 1500})
	sendInput(t, third, []byte("more"))
	// The client is told, on the stream or in its end, whichever comes
	// first (the server finds the gap when the bytes or the agent's
	// answer come, whichever is later).
	for {
		m, err := third.Recv()
		if err != nil {
			if status.Code(err) != codes.DataLoss {
				t.Fatalf("a resume past the agent's input: %v, want DataLoss", err)
			}
			break
		}
		if lost := m.GetInput().GetLost(); lost != "" {
			if !strings.Contains(lost, "100 bytes were lost") {
				t.Fatalf("lost: %q, want the 100 bytes missing", lost)
			}
			break
		}
	}
}

// TestAttachTypedAheadSurvivesDetach: keys sent to a job that has not
// started, by a client that then detaches, reach the job once it starts.
func TestAttachTypedAheadSurvivesDetach(t *testing.T) {
	s := setup(t)
	a := connectAgent(t, s, hello("w1", 2))
	id := s.submit(t, &pb.JobSpec{Command: []string{"sh"}})
	for a.recv().GetAssign().GetJob().GetId() != id {
	}
	st := attach(t, s.jobs, &pb.AttachOpen{JobId: id, Claim: true})
	inputState(t, st, nil, func(in *pb.InputState) bool { return in.GetHeld() })
	sendInput(t, st, []byte("echo one\r"))
	st.CloseSend()
	if _, err := recvErr(st); err != io.EOF {
		t.Fatalf("detach: %v", err)
	}

	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Started{Started: &pb.JobStarted{JobId: id, Attempt: 1}}})
	for open := a.recvInput(); !open.GetOpen() || open.GetJobId() != id; open = a.recvInput() {
	}
	credit(a, id, &pb.InputCredit{Opened: true, Limit: InputWindowForTest})
	if got := a.recvData(t, id, 0, 9); string(got) != "echo one\r" {
		t.Fatalf("the job got %q, want the keys typed ahead", got)
	}
	eventuallyNoTerminal(t, s, id)
}

// eventuallyNoTerminal waits until the server keeps no terminal for id.
func eventuallyNoTerminal(t *testing.T, s *sut, id string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for s.srv.terms.get(id) != nil {
		select {
		case <-deadline:
			t.Fatal("the server still keeps the job's terminal after its queue was passed on")
		case <-tick.C:
		}
	}
}

// openErr opens an Attach stream with open and returns how it ends.
func openErr(t *testing.T, jobs pb.JobServiceClient, open *pb.AttachOpen) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := jobs.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Open{Open: open}}); err != nil {
		t.Fatal(err)
	}
	_, err = recvErr(st)
	return err
}

// TestAttachInputSourceChecked: a named input's offset is bounded (no sum
// overflows); a stream resuming a source past what the server and the
// agent have of it is refused naming input_offset, and one far behind it
// (another client that picked the same name) naming input_source, rather
// than have its input dropped as already delivered.
func TestAttachInputSourceChecked(t *testing.T) {
	s := setup(t)
	a := connectAgent(t, s, hello("w1", 2))
	id := runningJob(t, s, a, &pb.JobSpec{Command: []string{"cat"}})

	err := openErr(t, s.jobs, &pb.AttachOpen{JobId: id, Claim: true, InputSource: "m", InputOffset: 1<<63 - 4})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "input_offset") {
		t.Fatalf("input_offset 2^63-4: %v, want InvalidArgument naming input_offset", err)
	}

	// The victim resumes its input at 1 MiB (it typed that much before).
	const base = 1 << 20
	victim := attach(t, s.jobs, &pb.AttachOpen{JobId: id, Claim: true, InputSource: "v", InputOffset: base})
	inputState(t, victim, nil, func(in *pb.InputState) bool { return in.GetHeld() })
	for open := a.recvInput(); !open.GetOpen(); open = a.recvInput() {
	}
	credit(a, id, &pb.InputCredit{Opened: true, Limit: InputWindowForTest})
	sendInput(t, victim, []byte("secret"))
	if got := a.recvData(t, id, 0, 6); string(got) != "secret" {
		t.Fatalf("the agent got %q", got)
	}

	err = openErr(t, s.jobs, &pb.AttachOpen{JobId: id, InputSource: "v", InputOffset: base + 100})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "input_offset") {
		t.Fatalf("resuming past the source's end: %v, want InvalidArgument naming input_offset", err)
	}
	err = openErr(t, s.jobs, &pb.AttachOpen{JobId: id, InputSource: "v"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "input_source") {
		t.Fatalf("another client reusing the source at 0: %v, want FailedPrecondition naming input_source", err)
	}
	// The owner sending again what it sent is still welcome.
	victim.CloseSend()
	if _, err := recvErr(victim); err != io.EOF {
		t.Fatalf("detach: %v", err)
	}
	again := attach(t, s.jobs, &pb.AttachOpen{JobId: id, Claim: true, InputSource: "v", InputOffset: base})
	inputState(t, again, nil, func(in *pb.InputState) bool { return in.GetHeld() })
	again.CloseSend()
	if _, err := recvErr(again); err != io.EOF {
		t.Fatalf("detach: %v", err)
	}

	// After a server restart only the agent knows the source: the reuse
	// shows once its open is answered.
	rogue := attach(t, s.jobs, &pb.AttachOpen{JobId: id, Claim: true, InputSource: "v"})
	inputState(t, rogue, nil, func(in *pb.InputState) bool { return in.GetHeld() })
	for open := a.recvInput(); !open.GetOpen(); open = a.recvInput() {
	}
	credit(a, id, &pb.InputCredit{Opened: true, Offset: 6, Limit: InputWindowForTest, Source: "v", SourceOffset: base + 6})
	sendInput(t, rogue, []byte("rogue"))
	for {
		m, err := rogue.Recv()
		if err != nil {
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "input_source") {
				t.Fatalf("a reused source after a restart: %v, want FailedPrecondition naming input_source", err)
			}
			break
		}
		if lost := m.GetInput().GetLost(); lost != "" {
			if !strings.Contains(lost, "input_source") {
				t.Fatalf("lost: %q, want the source named", lost)
			}
			break
		}
	}
}
