package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/auth"
	pb "github.com/hodei-jobs/hodei/proto"
)

func TestListNewestFirstWindowCount(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	var ids []string
	for i := range 5 {
		ids = append(ids, s.submit(t, &pb.JobSpec{Name: "job-" + string(rune('a'+i)), Command: []string{"true"}}))
	}
	for _, id := range ids[:2] {
		if _, err := s.jobs.Cancel(ctx, &pb.CancelJobRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
	}
	hourAgo := time.Now().Add(-time.Hour).UnixNano()
	resp, err := s.jobs.List(ctx, &pb.ListJobsRequest{NewestFirst: true, NotFinishedBeforeUnixNano: hourAgo, PageSize: 2, Count: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := jobIDs(resp.GetJobs()); len(got) != 2 || got[0] != ids[4] || got[1] != ids[3] || resp.GetNextPageToken() != ids[3] {
		t.Fatalf("first page %v (next %q), want %v", got, resp.GetNextPageToken(), []string{ids[4], ids[3]})
	}
	if resp.GetTotal() != 5 || resp.GetTotalIsLowerBound() {
		t.Fatalf("total %d (lower bound %v), want 5 exactly", resp.GetTotal(), resp.GetTotalIsLowerBound())
	}
	// A window that starts after the cancels leaves them out.
	resp, err = s.jobs.List(ctx, &pb.ListJobsRequest{NewestFirst: true, NotFinishedBeforeUnixNano: time.Now().Add(time.Minute).UnixNano(), Count: true})
	if err != nil || resp.GetTotal() != 3 || len(resp.GetJobs()) != 3 {
		t.Fatalf("later window: %d jobs, total %d, %v; want the 3 pending", len(resp.GetJobs()), resp.GetTotal(), err)
	}
	for _, tc := range []struct {
		name string
		req  *pb.ListJobsRequest
		want int64
	}{
		{"State", &pb.ListJobsRequest{State: pb.JobState_JOB_STATE_PENDING, Count: true}, 3},
		{"Cancelled", &pb.ListJobsRequest{State: pb.JobState_JOB_STATE_CANCELLED, Count: true}, 2},
		{"Pattern", &pb.ListJobsRequest{Name: "job-[a-c]", Count: true}, 3},
		{"Since", &pb.ListJobsRequest{CreatedSinceUnixNano: time.Now().Add(time.Hour).UnixNano(), Count: true}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.jobs.List(ctx, tc.req)
			if err != nil || resp.GetTotal() != tc.want || int64(len(resp.GetJobs())) != tc.want {
				t.Fatalf("%d jobs, total %d, %v; want %d", len(resp.GetJobs()), resp.GetTotal(), err, tc.want)
			}
		})
	}
	// A caller limited to other tenants counts none of them.
	js := &jobService{srv: s.srv}
	scoped := auth.NewContext(ctx, &auth.Identity{Name: "viewer", Role: auth.Viewer, Tenants: []string{"a", "b"}})
	resp, err = js.List(scoped, &pb.ListJobsRequest{Count: true})
	if err != nil || resp.GetTotal() != 0 || len(resp.GetJobs()) != 0 {
		t.Fatalf("scoped: %d jobs, total %d, %v; want none", len(resp.GetJobs()), resp.GetTotal(), err)
	}
}

// jobIDs returns the ids of jobs.
func jobIDs(jobs []*pb.Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.GetId()
	}
	return out
}

func TestCancelTwice(t *testing.T) {
	// A second cancel, or a cancel of a job that ended, answers the job as
	// it is, with no error.
	s := setup(t)
	ctx := context.Background()
	id := s.submit(t, &pb.JobSpec{Command: []string{"true"}})
	for range 2 {
		j, err := s.jobs.Cancel(ctx, &pb.CancelJobRequest{Id: id})
		if err != nil || j.GetState() != pb.JobState_JOB_STATE_CANCELLED {
			t.Fatalf("cancel: %v, %v; want CANCELLED", j.GetState(), err)
		}
	}
}

func TestIDPrefixes(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	a := s.submit(t, &pb.JobSpec{Name: "a", Command: []string{"true"}})
	arr, err := s.jobs.Submit(ctx, &pb.SubmitRequest{Spec: &pb.JobSpec{Name: "r", Command: []string{"true"}}, Array: "0-9"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.jobs.RunPipeline(ctx, &pb.RunPipelineRequest{Spec: &pb.PipelineSpec{Name: "pl", Steps: []*pb.PipelineStepSpec{{Name: "s", Spec: &pb.JobSpec{Command: []string{"true"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	pid := p.GetPipeline().GetId()
	connectAgent(t, s, hello("w-alpha", 1))
	connectAgent(t, s, hello("w-beta", 1))

	// unique returns the shortest prefix of id that no other id of the
	// same kind starts: all the ids here were made within a few
	// milliseconds of each other, so it is long.
	resolve := func(kind pb.IdKind, prefix string) (string, error) {
		resp, err := s.jobs.Resolve(ctx, &pb.ResolveRequest{Kind: kind, Prefix: prefix})
		return resp.GetId(), err
	}
	unique := func(kind pb.IdKind, id string) string {
		t.Helper()
		for n := 1; n <= len(id); n++ {
			if got, err := resolve(kind, id[:n]); err == nil && got == id {
				return id[:n]
			}
		}
		t.Fatalf("no prefix of %s resolves to it", id)
		return ""
	}
	short := strings.ToLower(unique(pb.IdKind_ID_KIND_JOB, a))
	if j, err := s.jobs.Get(ctx, &pb.GetJobRequest{Id: short}); err != nil || j.GetId() != a {
		t.Fatalf("Get(%q) = %v, %v; want %s", short, j.GetId(), err, a)
	}
	arrShort := strings.ToLower(unique(pb.IdKind_ID_KIND_ARRAY, arr.GetId()))
	if j, err := s.jobs.Get(ctx, &pb.GetJobRequest{Id: arrShort + "[3]"}); err != nil || j.GetSpec().GetArrayIndex() != 3 {
		t.Fatalf("Get(%q[3]) = %v, %v", arrShort, j, err)
	}
	if st, err := s.jobs.GetPipeline(ctx, &pb.GetPipelineRequest{Id: strings.ToLower(unique(pb.IdKind_ID_KIND_PIPELINE, pid))}); err != nil || st.GetPipeline().GetId() != pid {
		t.Fatalf("GetPipeline by prefix: %v, %v", st.GetPipeline().GetId(), err)
	}
	if w, err := s.admin.DrainWorker(ctx, &pb.DrainWorkerRequest{Id: "W-B"}); err != nil || w.GetId() != "w-beta" {
		t.Fatalf("DrainWorker(W-B) = %v, %v; want w-beta", w.GetId(), err)
	}
	if resp, err := s.jobs.CancelArray(ctx, &pb.CancelArrayRequest{Id: arrShort}); err != nil || resp.GetCount() != 10 {
		t.Fatalf("CancelArray(%q) = %v, %v", arrShort, resp, err)
	}
	if j, err := s.jobs.Cancel(ctx, &pb.CancelJobRequest{Id: short}); err != nil || j.GetId() != a || j.GetState() != pb.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("Cancel(%q) = %v, %v", short, j, err)
	}
	list, err := s.jobs.List(ctx, &pb.ListJobsRequest{Array: arrShort})
	if err != nil || len(list.GetJobs()) != 10 {
		t.Fatalf("List(array %q) = %d jobs, %v", arrShort, len(list.GetJobs()), err)
	}

	// Every job id starts with 0: ambiguous, with the matches listed.
	_, err = s.jobs.Get(ctx, &pb.GetJobRequest{Id: "0"})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), `"0" is the start of 12 job ids`) ||
		!strings.Contains(st.Message(), "\n  "+a+"  a  CANCELLED") || !strings.Contains(st.Message(), "and 2 more") {
		t.Fatalf("ambiguous: %v", err)
	}
	_, err = s.admin.DrainWorker(ctx, &pb.DrainWorkerRequest{Id: "w-"})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "w-alpha  test") {
		t.Fatalf("ambiguous worker: %v", err)
	}
	for _, tc := range []struct {
		kind   pb.IdKind
		prefix string
	}{{pb.IdKind_ID_KIND_JOB, "7zz"}, {pb.IdKind_ID_KIND_ARRAY, "7ZZ"}, {pb.IdKind_ID_KIND_PIPELINE, "7ZZ"}, {pb.IdKind_ID_KIND_WORKER, "x"}} {
		_, err := resolve(tc.kind, tc.prefix)
		if st := status.Convert(err); st.Code() != codes.NotFound || !strings.Contains(st.Message(), `starts with "`+tc.prefix+`"`) {
			t.Errorf("Resolve(%s, %q) = %v, want NotFound naming it", tc.kind, tc.prefix, err)
		}
	}
	if _, err := s.jobs.Get(ctx, &pb.GetJobRequest{Id: "7zz"}); status.Code(err) != codes.NotFound {
		t.Errorf("Get(7zz) = %v, want NotFound", err)
	}
	if _, err := resolve(pb.IdKind_ID_KIND_JOB, "01!"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Resolve(01!) = %v, want InvalidArgument", err)
	}
	if _, err := resolve(pb.IdKind_ID_KIND_UNSPECIFIED, "01"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Resolve without a kind = %v, want InvalidArgument", err)
	}

	// What a caller may not see it cannot resolve: a tenant's jobs are not
	// found, workers need a token that manages them.
	js := &jobService{srv: s.srv}
	scoped := auth.NewContext(ctx, &auth.Identity{Name: "viewer", Role: auth.Viewer, Tenants: []string{"other"}})
	if _, err := js.Resolve(scoped, &pb.ResolveRequest{Kind: pb.IdKind_ID_KIND_JOB, Prefix: a}); status.Code(err) != codes.NotFound {
		t.Errorf("scoped Resolve = %v, want NotFound", err)
	}
	viewer := auth.NewContext(ctx, &auth.Identity{Name: "viewer", Role: auth.Viewer})
	if _, err := js.Resolve(viewer, &pb.ResolveRequest{Kind: pb.IdKind_ID_KIND_WORKER, Prefix: "w-a"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("viewer resolving a worker = %v, want PermissionDenied", err)
	}
}
