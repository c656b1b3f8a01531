package cli

import (
	"bytes"
	"context"
	"flag"
	"net"
	"os"
	"path/filepath"
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
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/pki"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/cli")

func TestMain(m *testing.M) {
	agent.MaybeSupervise(Version) // the agents under test start their supervisors from this binary
	// Stored logins (hodei login, serve --dev) go to a temporary dir,
	// never the user's own, and the environment names no server.
	dir, err := os.MkdirTemp("", "hodei-cli-test-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_CONFIG_HOME", dir)
	for _, v := range []string{"HODEI_TOKEN", "HODEI_CA_FILE", "HODEI_ADDR"} {
		os.Unsetenv(v)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))
}

// testNow is the clock of every test run: AGE and LAST SEEN are relative to it.
var testNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// harness is a fake server on 127.0.0.1:0 and a way to run the app at it.
type harness struct {
	addr  string
	jobs  *fakeJobs
	admin *fakeAdmin
}

func newHarness(t *testing.T) *harness {
	return startHarness(t)
}

// newTLSHarness is a fake server over TLS, with a CA made in a temporary
// dir: caFile is its certificate, for --ca-file.
func newTLSHarness(t *testing.T) (h *harness, caFile string) {
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
	return startHarness(t, grpc.Creds(credentials.NewTLS(pki.ServerConfig(cert, nil)))), filepath.Join(dir, pki.CAFile)
}

func startHarness(t *testing.T, opts ...grpc.ServerOption) *harness {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{addr: lis.Addr().String(), jobs: &fakeJobs{}, admin: &fakeAdmin{}}
	srv := grpc.NewServer(opts...)
	hodeipb.RegisterJobServiceServer(srv, h.jobs)
	hodeipb.RegisterAdminServiceServer(srv, h.admin)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return h
}

// result is what one run of the app printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// run runs `hodei --addr <fake> args…`.
func (h *harness) run(t *testing.T, args ...string) result {
	t.Helper()
	return runApp(t, append([]string{"--addr", h.addr}, args...)...)
}

// runApp runs `hodei args…` in-process with the test clock.
func runApp(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	// An empty stdin, never the terminal go test may have been run from.
	e := &env{now: func() time.Time { return testNow }, poll: time.Millisecond, stdin: strings.NewReader("")}
	code := run(context.Background(), append([]string{"hodei"}, args...), &stdout, &stderr, e)
	return result{stdout.String(), stderr.String(), code}
}

// wantOK fails unless r exited 0 with nothing on stderr.
func (r result) wantOK(t *testing.T) {
	t.Helper()
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

// checkGolden compares got with testdata/cli/<name>/stdout.golden, or
// rewrites the file under -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("..", "testdata", "cli", name, "stdout.golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// ---- fake JobService ----

type fakeJobs struct {
	hodeipb.UnimplementedJobServiceServer

	mu        sync.Mutex // guards every field below
	err       error      // returned by every call when set
	submitted []*hodeipb.JobSpec
	authz     []string // authorization metadata of each call
	jobs      []*hodeipb.Job
	listReqs  []*hodeipb.ListJobsRequest
	cancels   []*hodeipb.CancelJobRequest
	logReqs   []*hodeipb.LogsRequest
	logChunks [][]byte
	logsErr   error // returned by Logs when set

	// listGate, when set, runs before List answers, without the lock; an
	// error is List's answer.
	listGate func(context.Context, *hodeipb.ListJobsRequest) error
	// total and totalAtLeast, when set, are List's count.
	total        int64
	totalAtLeast bool
	resolves     []string // the prefixes Resolve was asked

	arrays       []string // the array of each Submit that set one
	arrayCancels []*hodeipb.CancelArrayRequest
	runs         []*hodeipb.PipelineSpec   // pipelines accepted by RunPipeline
	pipelines    []*hodeipb.PipelineStatus // ListPipelines's answer
	progress     []*hodeipb.PipelineStatus // GetPipeline's answers in turn, the last one repeated
	pipeCancels  []*hodeipb.CancelPipelineRequest

	batches     [][]*hodeipb.JobSpec // the specs of each SubmitBatch, refused ones included
	refuseBatch func(call int) error // when set, the answer of SubmitBatch call (from 0), nil: accept
}

// call records the metadata of one call and returns the configured error.
func (f *fakeJobs) call(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.authz = append(f.authz, strings.Join(md.Get("authorization"), ","))
	return f.err
}

func (f *fakeJobs) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeJobs) Submit(ctx context.Context, req *hodeipb.SubmitRequest) (*hodeipb.SubmitResponse, error) {
	if err := f.call(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submitted = append(f.submitted, req.GetSpec())
	if req.GetArray() != "" {
		f.arrays = append(f.arrays, req.GetArray())
		return &hodeipb.SubmitResponse{Id: "01J0000000000000000000ARAY",
			Ids: []string{"01J00000000000000000000010", "01J00000000000000000000011"}}, nil
	}
	return &hodeipb.SubmitResponse{Id: "01J00000000000000000000001"}, nil
}

func (f *fakeJobs) submits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.submitted)
}

func (f *fakeJobs) lists() []*hodeipb.ListJobsRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.listReqs)
}

func (f *fakeJobs) cancelReqs() []*hodeipb.CancelJobRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cancels)
}

func (f *fakeJobs) lastSpec(t *testing.T) *hodeipb.JobSpec {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.submitted) != 1 {
		t.Fatalf("server got %d submits, want 1", len(f.submitted))
	}
	return f.submitted[0]
}

func (f *fakeJobs) Get(ctx context.Context, req *hodeipb.GetJobRequest) (*hodeipb.Job, error) {
	if err := f.call(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, j := range f.jobs {
		if j.GetId() == req.GetId() {
			return j, nil
		}
	}
	return nil, errNotFound(req.GetId())
}

// List pages through f.jobs (in reverse with newest_first); the page
// token is the index to start at. With count, the total is every job, or
// f.total when set.
func (f *fakeJobs) List(ctx context.Context, req *hodeipb.ListJobsRequest) (*hodeipb.ListJobsResponse, error) {
	if err := f.call(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	gate := f.listGate
	f.mu.Unlock()
	if gate != nil {
		if err := gate(ctx, req); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listReqs = append(f.listReqs, proto.CloneOf(req))
	jobs := f.jobs
	if req.GetNewestFirst() {
		jobs = slices.Clone(jobs)
		slices.Reverse(jobs)
	}
	start, _ := strconv.Atoi(req.GetPageToken())
	size := int(req.GetPageSize())
	if size == 0 {
		size = 100
	}
	end := min(start+size, len(jobs))
	resp := &hodeipb.ListJobsResponse{Jobs: jobs[start:end]}
	if end < len(jobs) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	if req.GetCount() {
		resp.Total, resp.TotalIsLowerBound = int64(len(jobs)), f.totalAtLeast
		if f.total > 0 {
			resp.Total = f.total
		}
	}
	return resp, nil
}

// Resolve finds jobs by a prefix of their ids, ignoring case; other kinds
// are not implemented, as on a server from before prefixes.
func (f *fakeJobs) Resolve(ctx context.Context, req *hodeipb.ResolveRequest) (*hodeipb.ResolveResponse, error) {
	if err := f.call(ctx); err != nil {
		return nil, err
	}
	if req.GetKind() != hodeipb.IdKind_ID_KIND_JOB {
		return nil, status.Error(codes.Unimplemented, "not implemented")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resolves = append(f.resolves, req.GetPrefix())
	var found []string
	for _, j := range f.jobs {
		if strings.HasPrefix(j.GetId(), strings.ToUpper(req.GetPrefix())) {
			found = append(found, j.GetId())
		}
	}
	switch len(found) {
	case 0:
		return nil, status.Errorf(codes.NotFound, "no job id starts with %q", req.GetPrefix())
	case 1:
		return &hodeipb.ResolveResponse{Id: found[0]}, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "%q is the start of %d job ids; give more of the one you mean:\n  %s",
		req.GetPrefix(), len(found), strings.Join(found, "\n  "))
}

func (f *fakeJobs) Cancel(ctx context.Context, req *hodeipb.CancelJobRequest) (*hodeipb.Job, error) {
	if err := f.call(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancels = append(f.cancels, req)
	for _, j := range f.jobs {
		if j.GetId() == req.GetId() {
			c := proto.CloneOf(j)
			c.State = hodeipb.JobState_JOB_STATE_CANCELLED
			c.Reason = req.GetReason()
			return c, nil
		}
	}
	return nil, errNotFound(req.GetId())
}

func (f *fakeJobs) Logs(req *hodeipb.LogsRequest, stream grpc.ServerStreamingServer[hodeipb.LogData]) error {
	if err := f.call(stream.Context()); err != nil {
		return err
	}
	f.mu.Lock()
	f.logReqs = append(f.logReqs, req)
	chunks, logsErr := f.logChunks, f.logsErr
	f.mu.Unlock()
	if logsErr != nil {
		return logsErr
	}
	// The chunks are the output of the attempt asked for (0: attempt 1),
	// sent from the offset asked for.
	attempt := max(req.GetAttempt(), 1)
	var off int64
	for _, c := range chunks {
		end := off + int64(len(c))
		if end > req.GetOffset() {
			skip := max(req.GetOffset()-off, 0)
			if err := stream.Send(&hodeipb.LogData{Attempt: attempt, Offset: off + skip, Data: c[skip:]}); err != nil {
				return err
			}
		}
		off = end
	}
	return nil
}

// ---- fake AdminService ----

type fakeAdmin struct {
	hodeipb.UnimplementedAdminServiceServer

	mu          sync.Mutex // guards every field below
	workers     []*hodeipb.Worker
	drained     []string
	snapshot    [][]byte
	snapshotErr error                   // sent after the chunks
	tenants     []*hodeipb.TenantStatus // served in this order
	tenantSets  []*hodeipb.SetTenantRequest
	tenantDels  []string
}

func (f *fakeAdmin) ListWorkers(context.Context, *hodeipb.ListWorkersRequest) (*hodeipb.ListWorkersResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &hodeipb.ListWorkersResponse{Workers: f.workers}, nil
}

func (f *fakeAdmin) DrainWorker(_ context.Context, req *hodeipb.DrainWorkerRequest) (*hodeipb.Worker, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.workers {
		if w.GetId() == req.GetId() {
			f.drained = append(f.drained, req.GetId())
			c := proto.CloneOf(w)
			c.State = hodeipb.WorkerState_WORKER_STATE_DRAINING
			return c, nil
		}
	}
	return nil, errNotFound(req.GetId())
}

func (f *fakeAdmin) Snapshot(_ *hodeipb.SnapshotRequest, stream grpc.ServerStreamingServer[hodeipb.SnapshotChunk]) error {
	f.mu.Lock()
	chunks, err := f.snapshot, f.snapshotErr
	f.mu.Unlock()
	for _, c := range chunks {
		if err := stream.Send(&hodeipb.SnapshotChunk{Data: c}); err != nil {
			return err
		}
	}
	return err
}

func (f *fakeAdmin) tenant(name string) (int, *hodeipb.TenantStatus) {
	for i, st := range f.tenants {
		if st.GetTenant().GetName() == name {
			return i, st
		}
	}
	return -1, nil
}

// SetTenant records the request and stores its tenant as given, without
// merging: tests check what the CLI sends.
func (f *fakeAdmin) SetTenant(_ context.Context, req *hodeipb.SetTenantRequest) (*hodeipb.TenantStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tenantSets = append(f.tenantSets, proto.CloneOf(req))
	st := &hodeipb.TenantStatus{Tenant: proto.CloneOf(req.GetTenant()), BurstState: hodeipb.BurstState_BURST_STATE_NONE}
	if i, _ := f.tenant(req.GetTenant().GetName()); i >= 0 {
		f.tenants[i] = st
	} else {
		f.tenants = append(f.tenants, st)
	}
	return st, nil
}

func (f *fakeAdmin) sets() []*hodeipb.SetTenantRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.tenantSets)
}

func (f *fakeAdmin) GetTenant(_ context.Context, req *hodeipb.GetTenantRequest) (*hodeipb.TenantStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, st := f.tenant(req.GetName()); st != nil {
		return st, nil
	}
	return nil, status.Errorf(codes.NotFound, "tenant %q not found", req.GetName())
}

func (f *fakeAdmin) ListTenants(context.Context, *hodeipb.ListTenantsRequest) (*hodeipb.ListTenantsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &hodeipb.ListTenantsResponse{Tenants: f.tenants}, nil
}

// DeleteTenant refuses "default" and tenants with queued jobs, as the real
// server does.
func (f *fakeAdmin) DeleteTenant(_ context.Context, req *hodeipb.DeleteTenantRequest) (*hodeipb.DeleteTenantResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, st := f.tenant(req.GetName())
	switch {
	case req.GetName() == "default":
		return nil, status.Error(codes.FailedPrecondition, `tenant "default": the default tenant cannot be deleted`)
	case st == nil:
		return nil, status.Errorf(codes.NotFound, "tenant %q not found", req.GetName())
	case st.GetQueued() > 0:
		return nil, status.Errorf(codes.FailedPrecondition, "tenant %q has %d jobs that are not finished; cancel them or wait", req.GetName(), st.GetQueued())
	}
	f.tenants = slices.Delete(f.tenants, i, i+1)
	f.tenantDels = append(f.tenantDels, req.GetName())
	return &hodeipb.DeleteTenantResponse{}, nil
}

func errNotFound(id string) error {
	return status.Errorf(codes.NotFound, "%s not found", id)
}
