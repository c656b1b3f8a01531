package server

import (
	"context"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestCronGetShowsPipelineSteps checks that reading back a schedule that
// runs a pipeline shows what each step runs (its spec, with secret
// values redacted) and the pipeline's defaults, over gRPC and REST, so
// that a user can see what will run.
func TestCronGetShowsPipelineSteps(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	const secret = "s3cr3t-value-never-shown"
	prio := int32(700)
	_, err := s.jobs.CronAdd(ctx, &pb.CronAddRequest{Schedule: &pb.CronSchedule{
		Name: "nightly-build", Schedule: "0 3 * * *",
		Pipeline: &pb.PipelineSpec{Name: "build",
			Defaults: &pb.JobSpec{Env: map[string]string{"CI": "1"}},
			Steps: []*pb.PipelineStepSpec{
				{Name: "compile", Spec: &pb.JobSpec{Command: []string{"make", "all"}, SecretEnv: map[string]string{"TOKEN": secret}}},
				{Name: "test", Spec: &pb.JobSpec{Script: "make test", Priority: &prio}, Needs: []string{"compile"}},
			}}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.jobs.CronGet(ctx, &pb.CronRef{Name: "nightly-build"})
	if err != nil {
		t.Fatal(err)
	}
	steps := got.GetPipeline().GetSteps()
	if len(steps) != 2 {
		t.Fatalf("steps: %v", got.GetPipeline())
	}
	if c := steps[0].GetSpec().GetCommand(); !slices.Equal(c, []string{"make", "all"}) {
		t.Errorf("compile's command %q, want make all", c)
	}
	if v := steps[0].GetSpec().GetSecretEnv()["TOKEN"]; v != "***" {
		t.Errorf("compile's secret TOKEN reads %q, want *** (redacted)", v)
	}
	if steps[0].GetSpec().Priority != nil {
		t.Errorf("compile's priority %d, want none (it was not given)", steps[0].GetSpec().GetPriority())
	}
	if sp := steps[1].GetSpec(); sp.GetScript() != "make test" || sp.GetPriority() != 700 || !slices.Equal(steps[1].GetNeeds(), []string{"compile"}) {
		t.Errorf("test step: %v", steps[1])
	}
	if got.GetPipeline().GetDefaults().GetEnv()["CI"] != "1" {
		t.Errorf("defaults: %v", got.GetPipeline().GetDefaults())
	}

	r := s.rest(t, s.adminToken(t), "GET", "/v1/cron/nightly-build", nil)
	var viaREST pb.CronSchedule
	r.ok(t, "GET /v1/cron/nightly-build", &viaREST)
	if strings.Contains(string(r.body), secret) || !slices.Equal(viaREST.GetPipeline().GetSteps()[0].GetSpec().GetCommand(), []string{"make", "all"}) {
		t.Errorf("REST: %s", r.body)
	}
	list, err := s.jobs.CronList(ctx, &pb.CronListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := protojson.Marshal(list); strings.Contains(string(b), secret) {
		t.Errorf("CronList shows the secret: %s", b)
	}
}
