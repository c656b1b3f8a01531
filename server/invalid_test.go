package server

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/hodei-jobs/hodei/proto"
)

// badSpecs holds one spec per validation rule and the field the error must name.
var badSpecs = []struct {
	name  string
	spec  *pb.JobSpec
	field string
}{
	{"EmptyCommand", &pb.JobSpec{}, "command"},
	{"EmptyProgram", &pb.JobSpec{Command: []string{""}}, "command"},
	{"CommandAndScript", &pb.JobSpec{Command: []string{"true"}, Script: "true"}, "command"},
	{"NegativeTimeout", &pb.JobSpec{Command: []string{"true"}, TimeoutMs: -1000}, "timeout"},
	{"AbsurdTimeout", &pb.JobSpec{Command: []string{"true"}, TimeoutMs: 31 * 24 * 3600 * 1000}, "timeout"},
	{"NegativeRetries", &pb.JobSpec{Command: []string{"true"}, Retries: -1}, "retries"},
	{"TooManyRetries", &pb.JobSpec{Command: []string{"true"}, Retries: 101}, "retries"},
	{"PriorityLow", &pb.JobSpec{Command: []string{"true"}, Priority: ptr(int32(-1))}, "priority"},
	{"PriorityHigh", &pb.JobSpec{Command: []string{"true"}, Priority: ptr(int32(1001))}, "priority"},
	{"LabelKey", &pb.JobSpec{Command: []string{"true"}, Labels: map[string]string{"bad key": "v"}}, "labels"},
	{"LabelValue", &pb.JobSpec{Command: []string{"true"}, Labels: map[string]string{"k": "a\nb"}}, "labels"},
	{"SelectorKey", &pb.JobSpec{Command: []string{"true"}, Selector: map[string]string{"-x": "v"}}, "selector"},
	{"EnvKey", &pb.JobSpec{Command: []string{"true"}, Env: map[string]string{"1ABC": "v"}}, "env"},
	{"SecretEnvKey", &pb.JobSpec{Command: []string{"true"}, SecretEnv: map[string]string{"A-B": "v"}}, "secret_env"},
	{"SecretEnvShort", &pb.JobSpec{Command: []string{"true"}, SecretEnv: map[string]string{"TOKEN": "12345"}}, "secret_env.TOKEN"},
	{"Tenant", &pb.JobSpec{Command: []string{"true"}, Tenant: "Team A"}, "tenant"},
	{"Slots", &pb.JobSpec{Command: []string{"true"}, Resources: &pb.Resources{Slots: -2}}, "resources.slots"},
	{"CPU", &pb.JobSpec{Command: []string{"true"}, Resources: &pb.Resources{CpuMillis: -1}}, "resources.cpu_millis"},
	{"Workdir", &pb.JobSpec{Command: []string{"true"}, Workdir: "relative/dir"}, "workdir"},
	{"DependencySyntax", &pb.JobSpec{Command: []string{"true"}, DependsOn: []string{"not-an-id"}}, "after"},
	{"UnknownDependency", &pb.JobSpec{Command: []string{"true"}, DependsOn: []string{"01ARZ3NDEKTSV4RRFFQ69G5FAV"}}, "after"},
	{"Oversized", &pb.JobSpec{Command: []string{"true"}, Env: map[string]string{"BIG": strings.Repeat("x", 1<<20+1)}}, "spec"},
}

func ptr[T any](v T) *T { return &v }

func TestInvalidSpecsAreRefusedAndNothingIsStored(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	for _, tt := range badSpecs {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.jobs.Submit(ctx, &pb.SubmitRequest{Spec: tt.spec})
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument {
				t.Fatalf("code %s (%q), want InvalidArgument", st.Code(), st.Message())
			}
			if !strings.HasPrefix(st.Message(), tt.field+": ") {
				t.Fatalf("message %q does not start with the field %q", st.Message(), tt.field)
			}
		})
	}
	resp, err := s.jobs.List(ctx, &pb.ListJobsRequest{})
	if err != nil || len(resp.GetJobs()) != 0 {
		t.Fatalf("after refused submits List = %d jobs, %v; want none", len(resp.GetJobs()), err)
	}
}
