package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/auth"
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
	id := s.submit(t, &pb.JobSpec{Command: []string{"true"}})
	w, err := jobs.Watch(ctx, &pb.WatchRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	// The job's current state comes first: the stream is open past the
	// interceptor.
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

// TestScopedTokenSeesOnlyItsTenants lists, watches and fetches with a
// token limited to two tenants: jobs of a third are left out of every
// answer and are not found by id.
func TestScopedTokenSeesOnlyItsTenants(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	for _, name := range []string{"a", "b", "c"} {
		s.setTenant(t, &pb.Tenant{Name: name})
	}
	mine := map[string]bool{}
	var other string
	for i := range 9 {
		tenant := []string{"a", "b", "c"}[i%3]
		id := s.submit(t, &pb.JobSpec{Tenant: tenant, Command: []string{"true"}})
		if tenant == "c" {
			other = id
		} else {
			mine[id] = true
		}
	}
	tok, _ := s.createToken(t, "viewer", "a", "b")
	jobs := pb.NewJobServiceClient(s.dialToken(t, tok))
	seen := map[string]bool{}
	for page := ""; ; {
		resp, err := jobs.List(ctx, &pb.ListJobsRequest{PageSize: 2, PageToken: page})
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range resp.GetJobs() {
			if !mine[j.GetId()] {
				t.Errorf("listed job %s of tenant %s", j.GetId(), j.GetSpec().GetTenant())
			}
			seen[j.GetId()] = true
		}
		if page = resp.GetNextPageToken(); page == "" {
			break
		}
	}
	if len(seen) != len(mine) {
		t.Errorf("listed %d of its %d jobs", len(seen), len(mine))
	}
	// Asking for another tenant's jobs is refused, as its usage is
	// (TestForeignTenantFilterIsDenied).
	if _, err := jobs.List(ctx, &pb.ListJobsRequest{Tenant: "c"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("list of tenant c: %v, want PermissionDenied", err)
	}
	if _, err := jobs.Get(ctx, &pb.GetJobRequest{Id: other}); status.Code(err) != codes.NotFound {
		t.Errorf("get a job of tenant c: %v, want NotFound", err)
	}
	tenants, err := pb.NewAdminServiceClient(s.dialToken(t, tok)).ListTenants(ctx, &pb.ListTenantsRequest{})
	if err != nil || len(tenants.GetTenants()) != 2 {
		t.Errorf("tenants seen: %v, %v", tenants, err)
	}
}

// TestGateCutsEveryStreamOfAKey tracks several streams under one token and
// one under another, ends some, and revokes the token: exactly its streams
// still open are cut, and nothing stays tracked once all have ended.
func TestGateCutsEveryStreamOfAKey(t *testing.T) {
	g := &gate{streams: make(map[string]*openStream)}
	tok, other := &auth.Identity{TokenID: "t1"}, &auth.Identity{TokenID: "t2"}
	cut := make(map[int]error)
	track := func(id *auth.Identity, n int) func() {
		return g.track(id, func(err error) { cut[n] = err })
	}
	var ends []func()
	for n := range 4 {
		ends = append(ends, track(tok, n))
	}
	endOther := track(other, 9)
	ends[0]() // the oldest
	ends[2]() // one in the middle
	g.cut("token:t1", errRevoked)
	if len(cut) != 2 || cut[1] != errRevoked || cut[3] != errRevoked {
		t.Fatalf("cut %v, want streams 1 and 3", cut)
	}
	ends[1]()
	ends[3]()
	endOther()
	if len(g.streams) != 0 {
		t.Fatalf("still tracked: %v", g.streams)
	}
}
