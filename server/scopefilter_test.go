package server

import (
	"context"
	"io"
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestForeignTenantFilterIsDenied checks that a token limited to tenant b
// that asks for tenant a's jobs, events, schedules or usage is refused
// (PermissionDenied, 403) in the same words by every one of them, over
// gRPC and REST, rather than answered with an empty list or a stream that
// stays silent; its own tenant is answered.
func TestForeignTenantFilterIsDenied(t *testing.T) {
	s := setup(t)
	s.setTenant(t, &pb.Tenant{Name: "a", Weight: 1})
	s.setTenant(t, &pb.Tenant{Name: "b", Weight: 1})
	tok, _ := s.createToken(t, "submitter", "b")
	conn := s.dialToken(t, tok)
	jobs, admin := pb.NewJobServiceClient(conn), pb.NewAdminServiceClient(conn)
	ctx := context.Background()
	const want = `tenant "a" is outside this token's tenants [b]`

	_, err := jobs.List(ctx, &pb.ListJobsRequest{Tenant: "a"})
	wantStatus(t, err, codes.PermissionDenied, want)
	_, err = jobs.CronList(ctx, &pb.CronListRequest{Tenant: "a"})
	wantStatus(t, err, codes.PermissionDenied, want)
	_, err = admin.GetUsage(ctx, &pb.GetUsageRequest{Tenant: "a"})
	wantStatus(t, err, codes.PermissionDenied, want)
	_, err = jobs.ListPipelines(ctx, &pb.ListPipelinesRequest{Tenant: "a"})
	wantStatus(t, err, codes.PermissionDenied, want)
	w, err := jobs.Watch(ctx, &pb.WatchRequest{Tenant: "a"})
	if err == nil {
		_, err = w.Recv()
	}
	wantStatus(t, err, codes.PermissionDenied, want)

	for _, path := range []string{"/v1/jobs?tenant=a", "/v1/pipelines?tenant=a", "/v1/cron?tenant=a", "/v1/usage?tenant=a", "/v1/events?tenant=a"} {
		r := s.rest(t, tok, "GET", path, nil)
		if e := r.httpErr(t); r.status != http.StatusForbidden || e.GetMessage() != want || e.GetField() != "" && e.GetField() != "tenant" {
			t.Errorf("GET %s: %d %s, want 403 %q", path, r.status, r.body, want)
		}
	}

	// Its own tenant: answered.
	if _, err := jobs.List(ctx, &pb.ListJobsRequest{Tenant: "b"}); err != nil {
		t.Errorf("list b: %v", err)
	}
	if _, err := admin.GetUsage(ctx, &pb.GetUsageRequest{Tenant: "b"}); err != nil {
		t.Errorf("usage b: %v", err)
	}
	req, err := http.NewRequest("GET", s.httpURL("/v1/events?tenant=b"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := s.httpClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		t.Errorf("events of b: %d %s", resp.StatusCode, b)
	}
}
