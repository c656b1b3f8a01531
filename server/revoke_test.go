package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestRevokeEndsOpenStreams revokes a token while a Watch it opened is
// waiting for events: the stream ends Unauthenticated at once, and the
// token's next call is refused.
func TestRevokeEndsOpenStreams(t *testing.T) {
	s := setup(t)
	tok, info := s.createToken(t, "viewer")
	jobs := pb.NewJobServiceClient(s.dialToken(t, tok))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := jobs.Watch(ctx, &pb.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// A first event shows the stream is open past the interceptor.
	s.submit(t, &pb.JobSpec{Command: []string{"true"}})
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.admin.RevokeToken(ctx, &pb.RevokeTokenRequest{Id: info.GetId()}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := w.Recv()
		if err == nil {
			continue // events that were already queued
		}
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("watch after revoke: %v, want Unauthenticated", err)
		}
		break
	}
	if _, err := jobs.List(ctx, &pb.ListJobsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("list after revoke: %v", err)
	}
}
