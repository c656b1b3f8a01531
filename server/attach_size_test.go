package server

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// recvResize reads the agent's stream until a ResizeJob.
func (a *scriptedAgent) recvResize() *pb.ResizeJob {
	a.t.Helper()
	for {
		if r := a.recv().GetResize(); r != nil {
			return r
		}
	}
}

// TestAttachSizes: a terminal size past what a PTY takes is clamped to
// job.MaxPTYSize, in AttachOpen and in a resize, and the stream goes on;
// a size of 0 is no terminal size and ends the stream with
// InvalidArgument.
func TestAttachSizes(t *testing.T) {
	s := setup(t)
	a := connectAgent(t, s, hello("w1", 2))
	id := runningJob(t, s, a, &pb.JobSpec{Command: []string{"sh"}})

	st := attach(t, s.jobs, &pb.AttachOpen{JobId: id, Claim: true, Size: &pb.TerminalSize{Rows: 1200, Cols: 1 << 31}})
	inputState(t, st, nil, func(in *pb.InputState) bool { return in.GetHeld() })
	for open := a.recvInput(); !open.GetOpen(); open = a.recvInput() {
	}
	credit(a, id, &pb.InputCredit{Opened: true, Limit: InputWindowForTest})
	if r := a.recvResize(); r.GetRows() != 1200 || r.GetCols() != job.MaxPTYSize {
		t.Fatalf("the agent got %dx%d, want 1200x%d", r.GetRows(), r.GetCols(), job.MaxPTYSize)
	}
	for _, size := range []*pb.TerminalSize{{Rows: 24, Cols: 1500}, {Rows: 70000, Cols: 80}} {
		if err := st.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Resize{Resize: size}}); err != nil {
			t.Fatal(err)
		}
		want := &pb.TerminalSize{Rows: min(size.GetRows(), job.MaxPTYSize), Cols: min(size.GetCols(), job.MaxPTYSize)}
		if r := a.recvResize(); r.GetRows() != want.GetRows() || r.GetCols() != want.GetCols() {
			t.Fatalf("resize %v reached the agent as %dx%d, want %v", size, r.GetRows(), r.GetCols(), want)
		}
	}
	// The stream still carries input.
	sendInput(t, st, []byte("x"))
	if in := a.recvInput(); string(in.GetData()) != "x" {
		t.Fatalf("after the resizes the agent got %v, want the input x", in)
	}

	if err := st.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Resize{Resize: &pb.TerminalSize{Rows: 0, Cols: 80}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := recvErr(st); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a resize to 0x80: %v, want InvalidArgument", err)
	}
}
