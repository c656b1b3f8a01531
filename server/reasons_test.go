package server

import (
	"context"
	"testing"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestPendingReasonAndRequireFit checks the API's side of why jobs wait:
// Get, List and GetPipeline answer a pending job with its reason (Watch,
// a stream of changes, does not); require_fit refuses on Submit, on an
// array and on SubmitBatch, naming the field, and stores nothing.
func TestPendingReasonAndRequireFit(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	fit := func(spec *pb.JobSpec) error {
		_, err := s.jobs.Submit(ctx, &pb.SubmitRequest{Spec: spec, RequireFit: true})
		return err
	}
	wantInvalid(t, fit(&pb.JobSpec{Command: []string{"true"}}), "require_fit", "no worker has registered")
	h := hello("w1", 2)
	h.Labels = map[string]string{"zone": "a"}
	connectAgent(t, s, h)
	zoneC := &pb.JobSpec{Command: []string{"true"}, Selector: map[string]string{"zone": "c"}}
	wantInvalid(t, fit(zoneC), "selector", "no registered worker has label zone=c (0 of 1) (--require-fit)")
	wantInvalid(t, fit(&pb.JobSpec{Command: []string{"true"}, Resources: &pb.Resources{Slots: 5}}),
		"resources.slots", "needs 5 slots; the largest registered worker has 2")
	_, err := s.jobs.Submit(ctx, &pb.SubmitRequest{Spec: &pb.JobSpec{Command: []string{"true"}, Resources: &pb.Resources{MemoryMib: 999999}},
		Array: "0-9", RequireFit: true})
	wantInvalid(t, err, "resources.memory_mib", "needs 999,999 MiB; the largest registered worker has 4,096 MiB")
	specs := trueSpecs(3, "")
	specs[1].Selector = map[string]string{"zone": "c"}
	_, err = s.jobs.SubmitBatch(ctx, &pb.SubmitBatchRequest{Specs: specs, RequireFit: true})
	wantInvalid(t, err, "specs[1].selector", "no registered worker has label zone=c")
	wantBatchField(t, err, "specs[1].selector")
	s.wantNothingStored(t)

	// Without require_fit the job waits, and says why.
	id := s.submit(t, zoneC)
	const why = "no ready worker has label zone=c (0 of 1)"
	j := s.waitJob(t, id, func(j *pb.Job) bool { return j.GetPending() != nil })
	if j.GetPending().GetKind() != pb.PendingKind_PENDING_KIND_LABELS || j.GetPending().GetMessage() != why {
		t.Fatalf("Get: pending %v", j.GetPending())
	}
	list, err := s.jobs.List(ctx, &pb.ListJobsRequest{State: pb.JobState_JOB_STATE_PENDING})
	if err != nil || len(list.GetJobs()) != 1 || list.GetJobs()[0].GetPending().GetMessage() != why {
		t.Fatalf("List: %v, %v", list, err)
	}
	w, err := s.jobs.Watch(ctx, &pb.WatchRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := w.Recv(); err != nil || ev.GetJob().GetPending() != nil {
		t.Fatalf("Watch: %v, %v; want the job without a reason", ev, err)
	}

	st, err := s.jobs.RunPipeline(ctx, &pb.RunPipelineRequest{Spec: &pb.PipelineSpec{Name: "p", Steps: []*pb.PipelineStepSpec{
		{Name: "gpu", Spec: &pb.JobSpec{Command: []string{"true"}, Selector: map[string]string{"gpu": "yes"}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.jobs.GetPipeline(ctx, &pb.GetPipelineRequest{Id: st.GetPipeline().GetId()})
	if err != nil || len(got.GetJobs()) != 1 || got.GetJobs()[0].GetPending().GetMessage() != "no ready worker has label gpu=yes (0 of 1)" {
		t.Fatalf("GetPipeline: %v, %v", got.GetJobs(), err)
	}
}
