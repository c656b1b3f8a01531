package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestRemoveWorkerUnbindsItsCertificate removes a worker once its agent
// left: until then the removal is refused, and afterwards the certificate
// the agent joined with no longer connects.
func TestRemoveWorkerUnbindsItsCertificate(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	a := connectAgent(t, s, hello("w1", 1))
	for _, tc := range []struct {
		id   string
		code codes.Code
		msg  string
	}{
		{"", codes.InvalidArgument, "id"},
		{"nope", codes.NotFound, "nope"},
		{"w1", codes.FailedPrecondition, "a connected worker cannot be removed"},
	} {
		_, err := s.admin.RemoveWorker(ctx, &pb.RemoveWorkerRequest{Id: tc.id})
		if st := status.Convert(err); st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
			t.Fatalf("remove %q: %v, want %s with %q", tc.id, err, tc.code, tc.msg)
		}
	}
	a.close()
	deadline := time.Now().Add(10 * time.Second)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		_, err := s.admin.RemoveWorker(ctx, &pb.RemoveWorkerRequest{Id: "w1"})
		if err == nil {
			break
		}
		if status.Code(err) != codes.FailedPrecondition || time.Now().After(deadline) {
			t.Fatalf("remove after the agent left: %v", err)
		}
		<-poll.C // polling the server's view of the stream, to a deadline
	}
	resp, err := s.admin.ListWorkers(ctx, &pb.ListWorkersRequest{})
	if err != nil || len(resp.GetWorkers()) != 0 {
		t.Fatalf("workers after remove: %v, %v", resp.GetWorkers(), err)
	}
	stream, err := pb.NewAgentServiceClient(s.agentConn(t, "w1")).Connect(ctx)
	if err == nil {
		// A refused stream may end before the Send: its status is the
		// Recv's (a Send then reports only io.EOF).
		_ = stream.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: hello("w1", 1)}})
		_, err = stream.Recv()
	}
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), "never joined") {
		t.Fatalf("the removed worker's certificate: %v, want PermissionDenied", err)
	}
}

// TestListOneWorker lists one worker by id (what `workers drain --wait`
// asks for), and NotFound for an id that names none.
func TestListOneWorker(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	connectAgent(t, s, hello("w1", 1))
	connectAgent(t, s, hello("w2", 1))
	resp, err := s.admin.ListWorkers(ctx, &pb.ListWorkersRequest{Id: "w2"})
	if err != nil || len(resp.GetWorkers()) != 1 || resp.GetWorkers()[0].GetId() != "w2" {
		t.Fatalf("list w2: %v, %v", resp.GetWorkers(), err)
	}
	_, err = s.admin.ListWorkers(ctx, &pb.ListWorkersRequest{Id: "w3"})
	if st := status.Convert(err); st.Code() != codes.NotFound || !strings.Contains(st.Message(), "worker w3") {
		t.Fatalf("list w3: %v, want NotFound naming it", err)
	}
}
