package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/pki"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// server is a fake JobService and AdminService.
type server struct {
	hodeipb.UnimplementedJobServiceServer
	hodeipb.UnimplementedAdminServiceServer

	mu      sync.Mutex // guards the fields below
	authz   []string
	nJobs   int // List serves jobs "0" … nJobs-1
	pages   int // List calls so far
	logs    [][]byte
	snap    [][]byte
	snapErr error
	tenants map[string]*hodeipb.Tenant
	fields  [][]string // of each SetTenant call
	arrays  []string   // array of each Submit call that set one
	cancels []*hodeipb.CancelPipelineRequest
	runs    []*hodeipb.PipelineSpec
}

func (s *server) Submit(ctx context.Context, req *hodeipb.SubmitRequest) (*hodeipb.SubmitResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.authz = append(s.authz, strings.Join(md.Get("authorization"), ","))
	s.mu.Unlock()
	if len(req.GetSpec().GetCommand()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "spec.command: must not be empty")
	}
	if req.GetArray() != "" {
		return s.submitArray(req)
	}
	return &hodeipb.SubmitResponse{Id: "01J0000000000000000000000A"}, nil
}

func (s *server) Get(_ context.Context, req *hodeipb.GetJobRequest) (*hodeipb.Job, error) {
	return nil, status.Errorf(codes.NotFound, "job %s not found", req.GetId())
}

func (s *server) List(_ context.Context, req *hodeipb.ListJobsRequest) (*hodeipb.ListJobsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pages++
	start, _ := strconv.Atoi(req.GetPageToken())
	end := min(start+int(req.GetPageSize()), s.nJobs)
	resp := &hodeipb.ListJobsResponse{}
	for i := start; i < end; i++ {
		resp.Jobs = append(resp.Jobs, &hodeipb.Job{Id: strconv.Itoa(i)})
	}
	if end < s.nJobs {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}

func (s *server) Logs(req *hodeipb.LogsRequest, stream grpc.ServerStreamingServer[hodeipb.LogData]) error {
	for _, c := range s.logs {
		if err := stream.Send(&hodeipb.LogData{Data: c}); err != nil {
			return err
		}
	}
	return nil
}

func (s *server) Watch(req *hodeipb.WatchRequest, stream grpc.ServerStreamingServer[hodeipb.JobEvent]) error {
	for _, st := range []hodeipb.JobState{hodeipb.JobState_JOB_STATE_RUNNING, hodeipb.JobState_JOB_STATE_COMPLETED} {
		if err := stream.Send(&hodeipb.JobEvent{Job: &hodeipb.Job{Id: req.GetJobId(), State: st}}); err != nil {
			return err
		}
	}
	return nil
}

func (s *server) Snapshot(_ *hodeipb.SnapshotRequest, stream grpc.ServerStreamingServer[hodeipb.SnapshotChunk]) error {
	for _, c := range s.snap {
		if err := stream.Send(&hodeipb.SnapshotChunk{Data: c}); err != nil {
			return err
		}
	}
	return s.snapErr
}

func (s *server) SetTenant(_ context.Context, req *hodeipb.SetTenantRequest) (*hodeipb.TenantStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tenants == nil {
		s.tenants = make(map[string]*hodeipb.Tenant)
	}
	s.tenants[req.GetTenant().GetName()] = req.GetTenant()
	s.fields = append(s.fields, req.GetFields())
	return &hodeipb.TenantStatus{Tenant: req.GetTenant()}, nil
}

func (s *server) GetTenant(_ context.Context, req *hodeipb.GetTenantRequest) (*hodeipb.TenantStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tenants[req.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "tenant %q not found", req.GetName())
	}
	return &hodeipb.TenantStatus{Tenant: t}, nil
}

func (s *server) ListTenants(context.Context, *hodeipb.ListTenantsRequest) (*hodeipb.ListTenantsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &hodeipb.ListTenantsResponse{}
	for _, name := range slices.Sorted(maps.Keys(s.tenants)) {
		resp.Tenants = append(resp.Tenants, &hodeipb.TenantStatus{Tenant: s.tenants[name]})
	}
	return resp, nil
}

func (s *server) DeleteTenant(_ context.Context, req *hodeipb.DeleteTenantRequest) (*hodeipb.DeleteTenantResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.GetName() == "default" {
		return nil, status.Error(codes.FailedPrecondition, "the default tenant cannot be deleted")
	}
	delete(s.tenants, req.GetName())
	return &hodeipb.DeleteTenantResponse{}, nil
}

// setup serves srv over bufconn and returns a client dialled to it.
func setup(t *testing.T, srv *server, opts ...client.Option) *client.Client {
	return setupWith(t, srv, nil, opts...)
}

// setupTLS is setup over TLS, with a CA and server certificate made in a
// temporary dir; the client verifies the server against that CA.
func setupTLS(t *testing.T, srv *server, opts ...client.Option) *client.Client {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.EnsureCA(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.EnsureServerCert(dir, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.ClientConfig(ca.PEM(), nil, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	return setupWith(t, srv, []grpc.ServerOption{grpc.Creds(credentials.NewTLS(pki.ServerConfig(cert, nil)))},
		append(opts, client.WithTLS(cfg))...)
}

func setupWith(t *testing.T, srv *server, sopts []grpc.ServerOption, opts ...client.Option) *client.Client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(sopts...)
	hodeipb.RegisterJobServiceServer(gs, srv)
	hodeipb.RegisterAdminServiceServer(gs, srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	dialer := grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) })
	c, err := client.Dial(context.Background(), "passthrough:///bufnet", append(opts, client.WithDialOptions(dialer))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
		gs.Stop()
		<-done
	})
	return c
}

func TestTokenIsNeverSentInPlaintext(t *testing.T) {
	srv := &server{}
	c := setup(t, srv, client.WithToken("s3cret"))
	if _, err := c.Submit(context.Background(), &hodeipb.JobSpec{Command: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, a := range srv.authz {
		if a != "" {
			t.Errorf("authorization = %q over plaintext, want none", a)
		}
	}
}

func TestSubmit(t *testing.T) {
	srv := &server{}
	c := setupTLS(t, srv, client.WithToken("s3cret"))
	ctx := context.Background()

	id, err := c.Submit(ctx, &hodeipb.JobSpec{Command: []string{"true"}})
	if err != nil || id != "01J0000000000000000000000A" {
		t.Fatalf("Submit = %q, %v", id, err)
	}
	_, err = c.Submit(ctx, &hodeipb.JobSpec{})
	if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "spec.command: must not be empty" {
		t.Errorf("Submit(empty) error = %v, want the server's InvalidArgument status", err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, a := range srv.authz {
		if a != "Bearer s3cret" {
			t.Errorf("authorization = %q, want Bearer s3cret", a)
		}
	}
}

func TestNoToken(t *testing.T) {
	srv := &server{}
	c := setup(t, srv)
	if _, err := c.Submit(context.Background(), &hodeipb.JobSpec{Command: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	if srv.authz[0] != "" {
		t.Errorf("authorization = %q, want none", srv.authz[0])
	}
}

func TestGetNotFound(t *testing.T) {
	c := setup(t, &server{})
	_, err := c.Get(context.Background(), "01JX")
	if status.Code(err) != codes.NotFound {
		t.Errorf("Get error = %v, want NotFound", err)
	}
}

func TestListAll(t *testing.T) {
	for _, tc := range []struct {
		name      string
		jobs      int
		stopAfter int // 0: never
		wantJobs  int
		wantPages int
	}{
		{"Empty", 0, 0, 0, 1},
		{"OnePage", 3, 0, 3, 1},
		{"ExactPages", 20, 0, 20, 2},
		{"ManyPages", 25, 0, 25, 3},
		{"StopEarly", 25, 12, 12, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &server{nJobs: tc.jobs}
			c := setup(t, srv)
			req := &hodeipb.ListJobsRequest{PageSize: 10, Tenant: "ml"}
			var ids []string
			for j, err := range c.ListAll(context.Background(), req) {
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, j.GetId())
				if len(ids) == tc.stopAfter {
					break
				}
			}
			if len(ids) != tc.wantJobs {
				t.Errorf("got %d jobs, want %d", len(ids), tc.wantJobs)
			}
			for i, id := range ids {
				if id != strconv.Itoa(i) {
					t.Fatalf("job %d has id %s: out of order or repeated", i, id)
				}
			}
			if srv.pages != tc.wantPages {
				t.Errorf("fetched %d pages, want %d", srv.pages, tc.wantPages)
			}
			if req.GetPageToken() != "" {
				t.Errorf("ListAll changed the request's page token to %q", req.GetPageToken())
			}
		})
	}
}

func TestListAllError(t *testing.T) {
	c := setup(t, &server{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n := 0
	for j, err := range c.ListAll(ctx, nil) {
		n++
		if j != nil || status.Code(err) != codes.Canceled {
			t.Errorf("got %v, %v; want nil, Canceled", j, err)
		}
	}
	if n != 1 {
		t.Errorf("yielded %d times, want once", n)
	}
}

func TestWatch(t *testing.T) {
	c := setup(t, &server{})
	stream, err := c.Watch(context.Background(), &hodeipb.WatchRequest{JobId: "01JX"})
	if err != nil {
		t.Fatal(err)
	}
	var states []hodeipb.JobState
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetJob().GetId() != "01JX" {
			t.Errorf("event for job %q, want 01JX", ev.GetJob().GetId())
		}
		states = append(states, ev.GetJob().GetState())
	}
	if len(states) != 2 || states[1] != hodeipb.JobState_JOB_STATE_COMPLETED {
		t.Errorf("states = %v, want RUNNING, COMPLETED", states)
	}
}

func TestCopyLogs(t *testing.T) {
	chunks := [][]byte{[]byte("a\r\n"), {0, 0xff}, bytes.Repeat([]byte("z"), 100_000)}
	c := setup(t, &server{logs: chunks})
	var buf bytes.Buffer
	if err := c.CopyLogs(context.Background(), &hodeipb.LogsRequest{Id: "01JX", Follow: true}, &buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), bytes.Join(chunks, nil)) {
		t.Errorf("copied %d bytes, not the log's %d", buf.Len(), len(bytes.Join(chunks, nil)))
	}

	werr := errors.New("pipe closed")
	err := c.CopyLogs(context.Background(), &hodeipb.LogsRequest{Id: "01JX"}, failWriter{werr})
	if !errors.Is(err, werr) {
		t.Errorf("CopyLogs to a failing writer = %v, want it to wrap %v", err, werr)
	}
}

func TestSnapshot(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		chunks := [][]byte{[]byte("bolt"), bytes.Repeat([]byte{1}, 70_000)}
		c := setup(t, &server{snap: chunks})
		var buf bytes.Buffer
		n, err := c.Snapshot(context.Background(), &buf)
		if err != nil || n != 70_004 || buf.Len() != 70_004 {
			t.Errorf("Snapshot = %d, %v; wrote %d bytes; want 70004", n, err, buf.Len())
		}
	})
	t.Run("ServerError", func(t *testing.T) {
		c := setup(t, &server{snap: [][]byte{[]byte("part")}, snapErr: status.Error(codes.Internal, "boom")})
		n, err := c.Snapshot(context.Background(), io.Discard)
		if n != 4 || status.Code(err) != codes.Internal {
			t.Errorf("Snapshot = %d, %v; want 4, Internal", n, err)
		}
	})
}

func TestTenants(t *testing.T) {
	srv := &server{}
	c := setup(t, srv)
	ctx := context.Background()
	st, err := c.SetTenant(ctx, &hodeipb.Tenant{Name: "ml", Weight: 2}, []string{"weight"})
	if err != nil || st.GetTenant().GetWeight() != 2 {
		t.Fatalf("SetTenant = %v, %v", st, err)
	}
	if _, err := c.SetTenant(ctx, &hodeipb.Tenant{Name: "ci"}, nil); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	fields := srv.fields
	srv.mu.Unlock()
	if len(fields) != 2 || !slices.Equal(fields[0], []string{"weight"}) || fields[1] != nil {
		t.Errorf("fields sent = %q, want [[weight] []]", fields)
	}
	if st, err := c.GetTenant(ctx, "ml"); err != nil || st.GetTenant().GetName() != "ml" {
		t.Errorf("GetTenant = %v, %v", st, err)
	}
	if _, err := c.GetTenant(ctx, "ghost"); status.Code(err) != codes.NotFound {
		t.Errorf("GetTenant(ghost) error = %v, want NotFound", err)
	}
	list, err := c.ListTenants(ctx)
	if err != nil || len(list) != 2 || list[0].GetTenant().GetName() != "ci" {
		t.Errorf("ListTenants = %v, %v; want ci, ml", list, err)
	}
	if err := c.DeleteTenant(ctx, "ml"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTenant(ctx, "default"); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("DeleteTenant(default) error = %v, want FailedPrecondition", err)
	}
	if list, _ := c.ListTenants(ctx); len(list) != 1 {
		t.Errorf("after delete %d tenants, want 1", len(list))
	}
}

func TestUnimplemented(t *testing.T) {
	c := setup(t, &server{})
	if _, err := c.ListWorkers(context.Background()); status.Code(err) != codes.Unimplemented {
		t.Errorf("ListWorkers error = %v, want Unimplemented", err)
	}
}

func TestDialErrors(t *testing.T) {
	if _, err := client.Dial(context.Background(), ""); err == nil {
		t.Error("Dial with an empty address succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := client.Dial(ctx, client.DefaultAddr); !errors.Is(err, context.Canceled) {
		t.Errorf("Dial with a done context = %v, want context.Canceled", err)
	}
}

func TestCloseTwice(t *testing.T) {
	c, err := client.Dial(context.Background(), client.DefaultAddr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }
