package cli

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/server"
)

// fakeAudit is an AdminService that answers ListAudit only.
type fakeAudit struct {
	hodeipb.UnimplementedAdminServiceServer

	mu      sync.Mutex // guards every field below
	records []*hodeipb.AuditRecord
	err     error
	reqs    []*hodeipb.ListAuditRequest
}

func (f *fakeAudit) ListAudit(_ context.Context, req *hodeipb.ListAuditRequest) (*hodeipb.ListAuditResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	if f.err != nil {
		return nil, f.err
	}
	return &hodeipb.ListAuditResponse{Records: f.records}, nil
}

func (f *fakeAudit) lastReq(t *testing.T) *hodeipb.ListAuditRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) != 1 {
		t.Fatalf("%d ListAudit calls, want 1", len(f.reqs))
	}
	return f.reqs[0]
}

// auditHarness serves f on 127.0.0.1:0 until the test ends and returns its
// address.
func auditHarness(t *testing.T, f *fakeAudit) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hodeipb.RegisterAdminServiceServer(srv, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

func testAuditRecords() []*hodeipb.AuditRecord {
	return []*hodeipb.AuditRecord{
		{
			TimeUnixNano: testNow.Add(-time.Minute).UnixNano(), TokenId: "01JTOKAAAAAAAAAAAAAAAAAAA2", TokenName: "ci",
			Role: "submitter", Scope: []string{"team-a"}, Tenant: "team-b", Action: "/hodei.v1.JobService/Cancel",
			Target: "01JAAAAAAAAAAAAAAAAAAAAAA1", Result: "NotFound", Message: "job 01JAAAAAAAAAAAAAAAAAAAAAA1 not found",
			Peer: "10.0.0.7:53412",
		},
		{
			TimeUnixNano: testNow.Add(-time.Hour).UnixNano(), TokenId: "01JTOKAAAAAAAAAAAAAAAAAAA1", TokenName: "root",
			Role: "admin", Tenant: "team-a", Action: "/hodei.v1.AdminService/SetTenant", Target: "team-a",
			Result: job.AuditOK, Peer: "127.0.0.1:40000",
		},
		{
			TimeUnixNano: testNow.Add(-2 * time.Hour).UnixNano(), Action: "POST /v1/jobs",
			Result: "Unauthenticated", Message: "no token\tgiven", Peer: "192.0.2.1:1234",
		},
	}
}

func TestAudit(t *testing.T) {
	t.Run("LsTable", func(t *testing.T) {
		f := &fakeAudit{records: testAuditRecords()}
		r := runApp(t, "--addr", auditHarness(t, f), "audit", "ls")
		r.wantOK(t)
		checkGolden(t, "audit-ls", r.stdout)
	})
	t.Run("LsJSON", func(t *testing.T) {
		f := &fakeAudit{records: testAuditRecords()}
		r := runApp(t, "--addr", auditHarness(t, f), "audit", "ls", "-o", "json")
		r.wantOK(t)
		var got []map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("%v\n%s", err, r.stdout)
		}
		if len(got) != 3 {
			t.Fatalf("got %d records, want 3", len(got))
		}
		want := map[string]any{
			"time": "2026-03-14T15:08:26Z", "token_id": "01JTOKAAAAAAAAAAAAAAAAAAA2", "token_name": "ci",
			"role": "submitter", "scope": []any{"team-a"}, "tenant": "team-b", "action": "/hodei.v1.JobService/Cancel",
			"target": "01JAAAAAAAAAAAAAAAAAAAAAA1", "result": "NotFound",
			"message": "job 01JAAAAAAAAAAAAAAAAAAAAAA1 not found", "peer": "10.0.0.7:53412",
		}
		for k, v := range want {
			if !jsonEqual(got[0][k], v) {
				t.Errorf("%s = %v, want %v", k, got[0][k], v)
			}
		}
		if s, ok := got[1]["scope"].([]any); !ok || len(s) != 0 {
			t.Errorf("scope of an unscoped token = %v, want []", got[1]["scope"])
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		want *hodeipb.ListAuditRequest
	}{
		{"NoFilter", nil, &hodeipb.ListAuditRequest{}},
		{"SinceDuration", []string{"--since", "24h"}, &hodeipb.ListAuditRequest{SinceUnixNano: testNow.Add(-24 * time.Hour).UnixNano()}},
		{"SinceDays", []string{"--since", "7d"}, &hodeipb.ListAuditRequest{SinceUnixNano: testNow.Add(-7 * 24 * time.Hour).UnixNano()}},
		{"SinceTime", []string{"--since", "2026-03-01T00:00:00Z"}, &hodeipb.ListAuditRequest{SinceUnixNano: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()}},
		{"ActorActionLimit", []string{"--actor", "ci", "--action", "Cancel", "--limit", "50"}, &hodeipb.ListAuditRequest{Actor: "ci", Action: "Cancel", Limit: 50}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeAudit{}
			r := runApp(t, append([]string{"--addr", auditHarness(t, f), "audit", "ls"}, tc.args...)...)
			r.wantOK(t)
			if got := f.lastReq(t); !proto.Equal(got, tc.want) {
				t.Errorf("request = %v, want %v", got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"SinceNotATime", []string{"--since", "yesterday"}, `--since: "yesterday" is neither a duration before now`},
		{"SinceNegative", []string{"--since", "-1h"}, "--since: -1h must be more than 0 before now"},
		{"SinceFuture", []string{"--since", "2999-01-01T00:00:00Z"}, "--since: 2999-01-01T00:00:00Z is in the future"},
		{"SinceFarDays", []string{"--since", "200000d"}, "--since: 200000d before now is before 1970"},
		{"LimitTooBig", []string{"--limit", "10001"}, "--limit: must be between 1 and 10000"},
		{"LimitNegative", []string{"--limit", "-1"}, "--limit: must be between 1 and 10000"},
		{"Argument", []string{"extra"}, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeAudit{}
			r := runApp(t, append([]string{"--addr", auditHarness(t, f), "audit", "ls"}, tc.args...)...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want usage error %q", r.code, r.stderr, tc.want)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.reqs) != 0 {
				t.Errorf("a refused command line called the server")
			}
		})
	}
	t.Run("PermissionDenied", func(t *testing.T) {
		f := &fakeAudit{err: status.Error(codes.PermissionDenied, "role operator may not list the audit trail")}
		r := runApp(t, "--addr", auditHarness(t, f), "audit", "ls")
		if r.code != exitFailure || r.stderr != "hodei: role operator may not list the audit trail\n" {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

// jsonEqual compares a decoded JSON value with a wanted one.
func jsonEqual(got, want any) bool {
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	return string(g) == string(w)
}

func TestShortAction(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"GRPC", "/hodei.v1.JobService/Submit", "Submit"},
		{"GRPCNoSlash", "hodei.v1.AdminService/SetTenant", "SetTenant"},
		{"HTTP", "POST /v1/jobs", "POST /v1/jobs"},
		{"Path", "/v1/jobs/01JX", "/v1/jobs/01JX"},
		{"Empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := shortAction(tc.in); got != tc.want {
				t.Errorf("shortAction(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestServeAuditRetention(t *testing.T) {
	cfg, err := parseServe(t)
	if err != nil || cfg.AuditRetention != server.DefaultAuditRetention {
		t.Errorf("default audit-retention = %s, %v; want %s", cfg.AuditRetention, err, server.DefaultAuditRetention)
	}
	cfg, err = parseServe(t, "--audit-retention", "720h")
	if err != nil || cfg.AuditRetention != 720*time.Hour {
		t.Errorf("--audit-retention 720h = %s, %v", cfg.AuditRetention, err)
	}
	_, err = parseServe(t, "--audit-retention", "-1h")
	if code := exitCode(context.Background(), err); code != exitUsage || !strings.Contains(err.Error(), "--audit-retention: must not be negative") {
		t.Errorf("--audit-retention -1h: %v (exit %d), want a usage error", err, code)
	}
}
