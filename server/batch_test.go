package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// trueSpecs returns n specs of `true` in tenant ("" for the default).
func trueSpecs(n int, tenant string) []*pb.JobSpec {
	specs := make([]*pb.JobSpec, n)
	for i := range specs {
		specs[i] = &pb.JobSpec{Command: []string{"true"}, Tenant: tenant}
	}
	return specs
}

// wantBatchField fails unless err carries a BadRequest detail on field.
func wantBatchField(t *testing.T, err error, field string) {
	t.Helper()
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 && br.GetFieldViolations()[0].GetField() == field {
			return
		}
	}
	t.Fatalf("error %v has no BadRequest detail on %s", err, field)
}

func TestSubmitBatch(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	specs := trueSpecs(3, "")
	specs[1].Name = "second"
	resp, err := s.jobs.SubmitBatch(ctx, &pb.SubmitBatchRequest{Specs: specs})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetIds()) != 3 {
		t.Fatalf("ids = %v, want 3", resp.GetIds())
	}
	j, err := s.jobs.Get(ctx, &pb.GetJobRequest{Id: resp.GetIds()[1]})
	if err != nil || j.GetSpec().GetName() != "second" || j.GetState() != pb.JobState_JOB_STATE_PENDING {
		t.Fatalf("second job = %v, %v; want the PENDING job named second", j, err)
	}
	recs := s.waitAuditFor(t, "the batch's record", func(rs []*pb.AuditRecord) bool {
		for _, r := range rs {
			if r.GetAction() == pb.JobService_SubmitBatch_FullMethodName {
				return true
			}
		}
		return false
	})
	for _, r := range recs {
		if r.GetAction() == pb.JobService_SubmitBatch_FullMethodName {
			want := resp.GetIds()[0] + " … " + resp.GetIds()[2] + " (3 jobs)"
			if r.GetTarget() != want || r.GetTenant() != job.DefaultTenant || r.GetResult() != "OK" {
				t.Fatalf("audit record %v, want target %q in tenant default", r, want)
			}
		}
	}
}

func TestSubmitBatchRefusedWhole(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	badAt := func(i int, f func(*pb.JobSpec)) []*pb.JobSpec {
		specs := trueSpecs(4, "")
		f(specs[i])
		return specs
	}
	for _, tt := range []struct {
		name   string
		specs  []*pb.JobSpec
		code   codes.Code
		field  string
		prefix string
	}{
		{"Empty", nil, codes.InvalidArgument, "specs", "specs: must not be empty"},
		{"OverMax", trueSpecs(job.MaxBatch+1, ""), codes.InvalidArgument, "specs", "specs: 10001 specs are more than the limit of 10000"},
		{"EmptyCommand", badAt(2, func(s *pb.JobSpec) { s.Command = nil }), codes.InvalidArgument, "specs[2].command", "specs[2].command: must not be empty"},
		{"Timeout", badAt(0, func(s *pb.JobSpec) { s.TimeoutMs = -1 }), codes.InvalidArgument, "specs[0].timeout", "specs[0].timeout: must not be negative"},
		{"UnknownDependency", badAt(3, func(s *pb.JobSpec) { s.DependsOn = []string{"01ARZ3NDEKTSV4RRFFQ69G5FAV"} }),
			codes.InvalidArgument, "specs[3].after", `specs[3].after: "01ARZ3NDEKTSV4RRFFQ69G5FAV" is not a known job`},
		{"UnknownTenant", badAt(1, func(s *pb.JobSpec) { s.Tenant = "nope" }), codes.NotFound, "specs[1]", `specs[1]: tenant "nope" does not exist`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.jobs.SubmitBatch(ctx, &pb.SubmitBatchRequest{Specs: tt.specs})
			wantStatus(t, err, tt.code, tt.prefix)
			if !strings.HasPrefix(status.Convert(err).Message(), tt.prefix) {
				t.Fatalf("message %q, want it to start with %q", status.Convert(err).Message(), tt.prefix)
			}
			wantBatchField(t, err, tt.field)
		})
	}
	t.Run("InvalidUTF8", func(t *testing.T) {
		// SubmitBatchRequest{specs: [{command: ["true"]}, {command: ["a\xffb"]}]}
		req := append(wireMessage(1, wireString(4, "true")), wireMessage(1, wireString(4, "a\xffb"))...)
		var resp []byte
		err := s.conn.Invoke(ctx, pb.JobService_SubmitBatch_FullMethodName, req, &resp, grpc.ForceCodecV2(rawCodec{}))
		wantInvalid(t, err, "specs[1].command[0]", "is not valid UTF-8")
	})
	t.Run("InvalidUTF8Large", func(t *testing.T) {
		// Large enough to be decoded in parallel: the bad spec is still
		// named.
		var req []byte
		for i := range 2 * parallelSpecs {
			cmd := "true"
			if i == parallelSpecs+7 {
				cmd = "a\xffb"
			}
			req = append(req, wireMessage(1, wireString(4, cmd))...)
		}
		var resp []byte
		err := s.conn.Invoke(ctx, pb.JobService_SubmitBatch_FullMethodName, req, &resp, grpc.ForceCodecV2(rawCodec{}))
		wantInvalid(t, err, fmt.Sprintf("specs[%d].command[0]", parallelSpecs+7), "is not valid UTF-8")
	})
	s.wantNothingStored(t)
}

// TestDecodeBatch checks that a large SubmitBatch request decoded in
// parallel is the request protobuf decodes, and that bytes it does not
// expect are left to protobuf.
func TestDecodeBatch(t *testing.T) {
	want := &pb.SubmitBatchRequest{}
	for i := range 3*parallelSpecs + 5 {
		want.Specs = append(want.Specs, &pb.JobSpec{Name: fmt.Sprint("j", i), Command: []string{"echo", fmt.Sprint(i)},
			Labels: map[string]string{"i": fmt.Sprint(i)}, Env: map[string]string{"A": "b"}, TimeoutMs: int64(i)})
	}
	data, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var got pb.SubmitBatchRequest
	if !decodeBatch(data, &got) || !proto.Equal(want, &got) {
		t.Fatalf("decodeBatch: %d specs, equal %v", len(got.Specs), proto.Equal(want, &got))
	}
	fit := proto.CloneOf(want)
	fit.RequireFit = true
	fitData, err := proto.Marshal(fit)
	if err != nil {
		t.Fatal(err)
	}
	var gotFit pb.SubmitBatchRequest
	if !decodeBatch(fitData, &gotFit) || !proto.Equal(fit, &gotFit) {
		t.Fatalf("decodeBatch with require_fit: %d specs, require_fit %v", len(gotFit.Specs), gotFit.RequireFit)
	}
	for name, bad := range map[string][]byte{
		"OtherField": append(slices.Clone(data), wireString(2, "x")...),
		"Truncated":  data[:len(data)-3],
		"BadSpec":    append(slices.Clone(data), wireMessage(1, []byte{0xff})...),
	} {
		var got pb.SubmitBatchRequest
		if decodeBatch(bad, &got) {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestSubmitBatchOverQueuedLimit(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	s.setTenant(t, &pb.Tenant{Name: "small", MaxQueued: 10}, "max_queued")
	_, err := s.jobs.SubmitBatch(ctx, &pb.SubmitBatchRequest{Specs: trueSpecs(11, "small")})
	wantStatus(t, err, codes.ResourceExhausted, `tenant "small" is at its max-queued limit of 10 (0 jobs queued, 11 more asked for)`)
	s.wantNothingStored(t)
	if _, err := s.jobs.SubmitBatch(ctx, &pb.SubmitBatchRequest{Specs: trueSpecs(10, "small")}); err != nil {
		t.Fatalf("a batch up to the limit: %v", err)
	}
}

// TestSubmitBatchTenantScope checks that a token limited to a tenant
// submits a batch there, and that one spec outside its scope, by tenant or
// by dependency, fails the whole batch.
func TestSubmitBatchTenantScope(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	s.setTenant(t, &pb.Tenant{Name: "team-a"})
	foreign := s.submit(t, &pb.JobSpec{Command: []string{"true"}}) // of the default tenant
	tok, _ := s.createToken(t, "submitter", "team-a")
	jobs := pb.NewJobServiceClient(s.dialToken(t, tok))

	resp, err := jobs.SubmitBatch(ctx, &pb.SubmitBatchRequest{Specs: trueSpecs(2, "")})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range resp.GetIds() {
		if j, err := jobs.Get(ctx, &pb.GetJobRequest{Id: id}); err != nil || j.GetSpec().GetTenant() != "team-a" {
			t.Fatalf("job %s = %v, %v; want it in the token's tenant", id, j, err)
		}
	}

	outside := trueSpecs(3, "team-a")
	outside[2].Tenant = job.DefaultTenant
	_, err = jobs.SubmitBatch(ctx, &pb.SubmitBatchRequest{Specs: outside})
	wantStatus(t, err, codes.PermissionDenied, `specs[2]: tenant "default" is outside this token's tenants`)
	wantBatchField(t, err, "specs[2]")

	foreignDep := trueSpecs(3, "team-a")
	foreignDep[1].DependsOn = []string{foreign}
	_, err = jobs.SubmitBatch(ctx, &pb.SubmitBatchRequest{Specs: foreignDep})
	wantStatus(t, err, codes.InvalidArgument, "specs[1].after: ", "is not a known job")

	// Only the first batch's two jobs were stored.
	list, err := s.jobs.List(ctx, &pb.ListJobsRequest{Tenant: "team-a"})
	if err != nil || len(list.GetJobs()) != 2 {
		t.Fatalf("team-a holds %d jobs (%v), want 2", len(list.GetJobs()), err)
	}
}

// TestBatchFieldOf checks that the client finds the spec a refused batch
// names in the status the server sends.
func TestBatchFieldOf(t *testing.T) {
	s := setup(t)
	specs := trueSpecs(3, "")
	specs[1].Command = nil
	_, err := client.New(s.conn).SubmitBatch(context.Background(), specs)
	i, field, rule, ok := client.BatchFieldOf(err)
	if !ok || i != 1 || field != "command" || !strings.HasPrefix(rule, "must not be empty") {
		t.Fatalf("BatchFieldOf(%v) = %d, %q, %q, %v; want spec 1, command", err, i, field, rule, ok)
	}
}
