package server

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// wantInvalid fails t unless err is InvalidArgument whose message starts
// with field and contains rule.
func wantInvalid(t *testing.T, err error, field, rule string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("code %s (%q), want InvalidArgument", st.Code(), st.Message())
	}
	if !strings.HasPrefix(st.Message(), field+": ") || !strings.Contains(st.Message(), rule) {
		t.Fatalf("message %q, want %s: …%s…", st.Message(), field, rule)
	}
}

// wantNothingStored fails t unless the server holds no job and no pipeline.
func (s *sut) wantNothingStored(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	jobs, err := s.jobs.List(ctx, &pb.ListJobsRequest{})
	if err != nil || len(jobs.GetJobs()) != 0 {
		t.Fatalf("after refused requests List = %d jobs, %v; want none", len(jobs.GetJobs()), err)
	}
	ps, err := s.jobs.ListPipelines(ctx, &pb.ListPipelinesRequest{})
	if err != nil || len(ps.GetPipelines()) != 0 {
		t.Fatalf("after refused requests ListPipelines = %d, %v; want none", len(ps.GetPipelines()), err)
	}
}

func TestLimitsAreRefusedAndNothingIsStored(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	if _, err := s.admin.SetTenant(ctx, &pb.SetTenantRequest{
		Tenant: &pb.Tenant{Name: "ml", MaxRunning: &pb.Resources{MemoryMib: 4096, Slots: 2}},
		Fields: []string{"max_running.memory_mib", "max_running.slots"},
	}); err != nil {
		t.Fatal(err)
	}
	cmd := func(f func(*pb.JobSpec)) *pb.JobSpec {
		spec := &pb.JobSpec{Command: []string{"true"}}
		f(spec)
		return spec
	}
	far := time.Now().Add(job.MaxDeadlineAhead + time.Hour).UnixNano()
	jobs := []struct {
		name  string
		spec  *pb.JobSpec
		field string
		rule  string
	}{
		{"CommandNUL", cmd(func(s *pb.JobSpec) { s.Command = []string{"echo", "a", "b\x00"} }), "command[2]", "contains a NUL byte"},
		{"ScriptNUL", cmd(func(s *pb.JobSpec) { s.Command, s.Script = nil, "echo \x00" }), "script", "contains a NUL byte"},
		{"EnvKeyNUL", cmd(func(s *pb.JobSpec) { s.Env = map[string]string{"A\x00": "v"} }), "env", "contains a NUL byte"},
		{"EnvValueNUL", cmd(func(s *pb.JobSpec) { s.Env = map[string]string{"A": "\x00"} }), "env", `value of "A" contains a NUL byte`},
		{"SecretValueNUL", cmd(func(s *pb.JobSpec) { s.SecretEnv = map[string]string{"T": "x\x00"} }), "secret_env", `value of "T" contains a NUL byte`},
		{"WorkdirNUL", cmd(func(s *pb.JobSpec) { s.Workdir = "/tmp/\x00" }), "workdir", "contains a NUL byte"},
		{"TimeoutOverflow", cmd(func(s *pb.JobSpec) { s.TimeoutMs = math.MaxInt64 }), "timeout", "more than the maximum of 720h0m0s"},
		{"TimeoutJustOverflows", cmd(func(s *pb.JobSpec) { s.TimeoutMs = math.MaxInt64/int64(time.Millisecond) + 1 }), "timeout", "more than the maximum"},
		{"TimeoutMinInt", cmd(func(s *pb.JobSpec) { s.TimeoutMs = math.MinInt64 }), "timeout", "must not be negative"},
		{"BackoffOverflow", cmd(func(s *pb.JobSpec) { s.BackoffMs = math.MaxInt64 }), "backoff", "between 0 and 5m0s"},
		{"DeadlineTooFar", cmd(func(s *pb.JobSpec) { s.DeadlineUnixNano = far }), "deadline", "at most 365 days"},
		{"DeadlineLatest", cmd(func(s *pb.JobSpec) { s.DeadlineUnixNano = math.MaxInt64 }), "deadline", "at most 365 days"},
		{"DeadlineBeforeEpoch", cmd(func(s *pb.JobSpec) { s.DeadlineUnixNano = math.MinInt64 }), "deadline", "not in the future"},
		{"CPUAboveMax", cmd(func(s *pb.JobSpec) { s.Resources = &pb.Resources{CpuMillis: job.MaxCPUMillis + 1} }), "resources.cpu_millis", "4096 cores"},
		{"MemoryAboveMax", cmd(func(s *pb.JobSpec) { s.Resources = &pb.Resources{MemoryMib: math.MaxInt64} }), "resources.memory_mib", "64 TiB"},
		{"MemoryAboveTenant", cmd(func(s *pb.JobSpec) { s.Tenant, s.Resources = "ml", &pb.Resources{MemoryMib: 8192} }),
			"resources.memory_mib", `8192 is more than the running limit of tenant "ml", 4096 MiB`},
		{"SlotsAboveTenant", cmd(func(s *pb.JobSpec) { s.Tenant, s.Resources = "ml", &pb.Resources{Slots: 3} }), "resources.slots", "2 slots"},
	}
	for _, tt := range jobs {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.jobs.Submit(ctx, &pb.SubmitRequest{Spec: tt.spec})
			wantInvalid(t, err, tt.field, tt.rule)
		})
	}
	t.Run("ArrayAboveTenant", func(t *testing.T) {
		_, err := s.jobs.Submit(ctx, &pb.SubmitRequest{Array: "0-9",
			Spec: &pb.JobSpec{Command: []string{"true"}, Tenant: "ml", Resources: &pb.Resources{MemoryMib: 4097}}})
		wantInvalid(t, err, "resources.memory_mib", "could never start")
	})

	step := func(name string, f func(*pb.PipelineStepSpec)) *pb.PipelineStepSpec {
		st := &pb.PipelineStepSpec{Name: name, Spec: &pb.JobSpec{Command: []string{"true"}}}
		f(st)
		return st
	}
	none := func(*pb.PipelineStepSpec) {}
	allToAll := &pb.PipelineSpec{Name: "dag"}
	for i := range 1000 {
		st := step(fmt.Sprintf("s%d", i), none)
		for k := range i {
			st.Needs = append(st.Needs, fmt.Sprintf("s%d", k))
		}
		allToAll.Steps = append(allToAll.Steps, st)
	}
	pipelines := []struct {
		name  string
		spec  *pb.PipelineSpec
		field string
		rule  string
	}{
		{"AllToAll", allToAll, "steps", "the pipeline has 499,500 dependency links; at most 100,000 are allowed (--max-pipeline-links)"},
		{"StepTimeoutOverflow", &pb.PipelineSpec{Steps: []*pb.PipelineStepSpec{step("a", func(st *pb.PipelineStepSpec) { st.Spec.TimeoutMs = math.MaxInt64 })}},
			"steps.a.timeout", "more than the maximum"},
		{"DefaultsBackoffOverflow", &pb.PipelineSpec{Defaults: &pb.JobSpec{BackoffMs: math.MaxInt64}, Steps: []*pb.PipelineStepSpec{step("a", none)}},
			"defaults.backoff", "between 0 and 5m0s"},
		{"StepDeadlineTooFar", &pb.PipelineSpec{Steps: []*pb.PipelineStepSpec{step("a", func(st *pb.PipelineStepSpec) { st.Spec.DeadlineUnixNano = far })}},
			"steps.a.deadline", "at most 365 days"},
		{"StepCommandNUL", &pb.PipelineSpec{Steps: []*pb.PipelineStepSpec{step("a", func(st *pb.PipelineStepSpec) { st.Spec.Command = []string{"\x00"} })}},
			"steps.a.command[0]", "contains a NUL byte"},
		{"MatrixValueNUL", &pb.PipelineSpec{Steps: []*pb.PipelineStepSpec{step("a", func(st *pb.PipelineStepSpec) {
			st.Matrix = []*pb.MatrixAxis{{Key: "os", Values: []string{"linux\x00"}}}
		})}}, "steps.a.matrix.os[0]", "contains a NUL byte"},
		{"StepAboveTenant", &pb.PipelineSpec{Tenant: "ml", Steps: []*pb.PipelineStepSpec{step("train", func(st *pb.PipelineStepSpec) {
			st.Spec.Resources = &pb.Resources{MemoryMib: 5000, Slots: 1}
		})}}, "steps.train.resources.memory_mib", "4096 MiB"},
	}
	for _, tt := range pipelines {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.jobs.RunPipeline(ctx, &pb.RunPipelineRequest{Spec: tt.spec})
			wantInvalid(t, err, tt.field, tt.rule)
		})
	}
	s.wantNothingStored(t)
}

func TestMaxPipelineLinksIsConfigurable(t *testing.T) {
	s := setup(t, func(c *Config) { c.MaxPipelineLinks = 2 })
	ctx := context.Background()
	spec := func(needs ...string) *pb.PipelineSpec {
		steps := []*pb.PipelineStepSpec{{Name: "a", Spec: &pb.JobSpec{Command: []string{"true"}}},
			{Name: "b", Spec: &pb.JobSpec{Command: []string{"true"}}}}
		for _, n := range needs {
			steps = append(steps, &pb.PipelineStepSpec{Name: "c" + n, Spec: &pb.JobSpec{Command: []string{"true"}}, Needs: []string{"a", "b"}})
		}
		return &pb.PipelineSpec{Steps: steps}
	}
	_, err := s.jobs.RunPipeline(ctx, &pb.RunPipelineRequest{Spec: spec("1", "2")})
	wantInvalid(t, err, "steps", "4 dependency links; at most 2 are allowed")
	if _, err := s.jobs.RunPipeline(ctx, &pb.RunPipelineRequest{Spec: spec("1")}); err != nil {
		t.Fatalf("a pipeline at the limit: %v", err)
	}
}

// rawCodec sends and receives bytes as they are, so that a test can send
// what protobuf-go refuses to encode.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// Wire encodings built by hand: the tags and lengths of hodei.proto.
func wireString(num protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
}

func wireMessage(num protowire.Number, parts ...[]byte) []byte {
	var body []byte
	for _, p := range parts {
		body = append(body, p...)
	}
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), body)
}

func TestInvalidUTF8OnTheWireIsInvalidArgument(t *testing.T) {
	s := setup(t)
	const bad = "a\xffb"
	tests := []struct {
		name   string
		method string
		req    []byte
		field  string
		rule   string
	}{
		// SubmitRequest{spec: JobSpec{command: ["echo", bad]}}
		{"Command", pb.JobService_Submit_FullMethodName,
			wireMessage(1, wireString(4, "echo"), wireString(4, bad)), "spec.command[1]", "is not valid UTF-8"},
		// SubmitRequest{spec: JobSpec{command: ["true"], env: {"A": bad}}}
		{"EnvValue", pb.JobService_Submit_FullMethodName,
			wireMessage(1, wireString(4, "true"), wireMessage(6, wireString(1, "A"), wireString(2, bad))), "spec.env", `value of "A" is not valid UTF-8`},
		// SubmitRequest{spec: JobSpec{command: ["true"], secret_env: {bad: "v"}}}
		{"SecretEnvKey", pb.JobService_Submit_FullMethodName,
			wireMessage(1, wireString(4, "true"), wireMessage(7, wireString(1, bad), wireString(2, "v"))), "spec.secret_env", `key "a\xffb" is not valid UTF-8`},
		// SubmitRequest{spec: JobSpec{command: ["true"]}, array: bad}
		{"Array", pb.JobService_Submit_FullMethodName,
			append(wireMessage(1, wireString(4, "true")), wireString(2, bad)...), "array", "is not valid UTF-8"},
		// RunPipelineRequest{spec: PipelineSpec{steps: [{name: "a"}, {name: bad}]}}
		{"StepName", pb.JobService_RunPipeline_FullMethodName,
			wireMessage(1, wireMessage(4, wireString(1, "a")), wireMessage(4, wireString(1, bad))), "spec.steps[1].name", "is not valid UTF-8"},
		// RunPipelineRequest{spec: PipelineSpec{steps: [{name: "a", matrix: [{key: "os", values: ["x", bad]}]}]}}
		{"MatrixValue", pb.JobService_RunPipeline_FullMethodName,
			wireMessage(1, wireMessage(4, wireString(1, "a"), wireMessage(5, wireString(1, "os"), wireString(2, "x"), wireString(2, bad)))),
			"spec.steps[0].matrix[0].values[1]", "is not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp []byte
			err := s.conn.Invoke(context.Background(), tt.method, tt.req, &resp, grpc.ForceCodecV2(rawCodec{}))
			wantInvalid(t, err, tt.field, tt.rule)
		})
	}
	t.Run("Stream", func(t *testing.T) {
		// WatchRequest{tenant: bad}, on a server-streaming call.
		stream, err := s.conn.NewStream(context.Background(), &pb.JobService_ServiceDesc.Streams[0],
			pb.JobService_Watch_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.SendMsg(wireString(2, bad)); err != nil {
			t.Fatal(err)
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		var resp []byte
		wantInvalid(t, stream.RecvMsg(&resp), "tenant", "is not valid UTF-8")
	})
	t.Run("NotAMessage", func(t *testing.T) {
		var resp []byte
		err := s.conn.Invoke(context.Background(), pb.JobService_Submit_FullMethodName, []byte{0x0a, 0xff, 0xff}, &resp, grpc.ForceCodecV2(rawCodec{}))
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "request: is not a valid hodei.v1.SubmitRequest message") {
			t.Fatalf("garbage bytes: %v, want InvalidArgument naming the request", err)
		}
	})
	t.Run("ValidStillDecodes", func(t *testing.T) {
		var resp []byte
		req := wireMessage(1, wireString(4, "echo"), wireString(4, "héllo ✓"))
		if err := s.conn.Invoke(context.Background(), pb.JobService_Submit_FullMethodName, req, &resp, grpc.ForceCodecV2(rawCodec{})); err != nil {
			t.Fatalf("a valid raw Submit: %v", err)
		}
	})
}
