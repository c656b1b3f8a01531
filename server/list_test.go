package server

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/store/storetest"
)

func TestListByName(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	want := map[string]bool{}
	for _, name := range []string{"nightly", "other", "nightly", "nightly-2", ""} {
		id := s.submit(t, &pb.JobSpec{Name: name, Command: []string{"true"}})
		if name == "nightly" {
			want[id] = true
		}
	}
	resp, err := s.jobs.List(ctx, &pb.ListJobsRequest{Name: "nightly", PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetJobs()
	resp, err = s.jobs.List(ctx, &pb.ListJobsRequest{Name: "nightly", PageToken: resp.GetNextPageToken()})
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, resp.GetJobs()...)
	if len(got) != 2 || !want[got[0].GetId()] || !want[got[1].GetId()] || resp.GetNextPageToken() != "" {
		t.Fatalf("listed %v (next %q), want the two jobs named nightly", got, resp.GetNextPageToken())
	}
}

func TestListNameInvalid(t *testing.T) {
	s := setup(t)
	js := &jobService{srv: s.srv}
	for name, req := range map[string]*pb.ListJobsRequest{
		"TooLong": {Name: strings.Repeat("n", job.MaxNameLen+1)},
		"UTF8":    {Name: "bad\xff"}, // a gRPC client cannot send it; an in-process caller can
	} {
		t.Run(name, func(t *testing.T) {
			_, err := js.List(context.Background(), req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "name: ") {
				t.Fatalf("got %s %q, want InvalidArgument on name", st.Code(), st.Message())
			}
		})
	}
	t.Run("GRPC", func(t *testing.T) {
		_, err := s.jobs.List(context.Background(), &pb.ListJobsRequest{Name: strings.Repeat("n", job.MaxNameLen+1)})
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "name: ") {
			t.Fatalf("got %s %q, want InvalidArgument on name", st.Code(), st.Message())
		}
	})
}

// cancelOnCheck is a request context that its client abandons at its
// at-th Err call, as one that goes away while the listing runs: from that
// call on Err returns context.Canceled and Done is closed.
type cancelOnCheck struct {
	context.Context
	cancel context.CancelFunc
	at     int32
	checks atomic.Int32
}

func newCancelOnCheck(parent context.Context, at int32) *cancelOnCheck {
	ctx, cancel := context.WithCancel(parent)
	return &cancelOnCheck{Context: ctx, cancel: cancel, at: at}
}

func (c *cancelOnCheck) Err() error {
	if c.checks.Add(1) == c.at {
		c.cancel()
	}
	return c.Context.Err()
}

// TestListStopsWhenTheClientGoesAway checks that the List handler scans
// with the request's context: the store checks it as it walks, so a
// listing whose client went away stops, for an unscoped caller and in the
// loop over the tenants of a caller limited to several.
func TestListStopsWhenTheClientGoesAway(t *testing.T) {
	s := setup(t)
	for _, name := range []string{"a", "b", "c"} {
		s.setTenant(t, &pb.Tenant{Name: name})
	}
	// 600 jobs of tenant b: more than two of the store's context checks
	// (one every 256 keys).
	batch := &pb.SubmitBatchRequest{}
	for range 600 {
		batch.Specs = append(batch.Specs, &pb.JobSpec{Tenant: "b", Command: []string{"true"}})
	}
	resp, err := s.jobs.SubmitBatch(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetIds()); n != 600 {
		t.Fatalf("batch of %d jobs", n)
	}
	js := &jobService{srv: s.srv}
	scoped := auth.NewContext(context.Background(), &auth.Identity{Name: "viewer", Role: auth.Viewer, Tenants: []string{"a", "b"}})
	req := &pb.ListJobsRequest{PageSize: job.MaxPageSize}

	t.Run("Unscoped", func(t *testing.T) {
		ctx := newCancelOnCheck(context.Background(), 0) // never
		defer ctx.cancel()
		got, err := js.List(ctx, req)
		if err != nil || len(got.GetJobs()) != 600 {
			t.Fatalf("listed %d jobs, %v; want 600", len(got.GetJobs()), err)
		}
		if n := ctx.checks.Load(); n < 3 {
			t.Fatalf("the request's context was checked %d times over 600 jobs, want at least 3", n)
		}
		// Now the client goes away at the first check inside the scan.
		ctx = newCancelOnCheck(context.Background(), 2)
		defer ctx.cancel()
		_, err = js.List(ctx, req)
		if status.Code(err) != codes.Canceled {
			t.Fatalf("got %v, want Canceled", err)
		}
	})
	t.Run("Scoped", func(t *testing.T) {
		ctx := newCancelOnCheck(scoped, 0)
		defer ctx.cancel()
		got, err := js.List(ctx, req)
		if err != nil || len(got.GetJobs()) != 600 {
			t.Fatalf("listed %d jobs, %v; want 600", len(got.GetJobs()), err)
		}
		checks := ctx.checks.Load()
		if checks < 3 {
			t.Fatalf("the request's context was checked %d times, want at least 3", checks)
		}
		for at := int32(1); at <= checks; at++ {
			ctx := newCancelOnCheck(scoped, at)
			_, err := js.List(ctx, req)
			ctx.cancel()
			if status.Code(err) != codes.Canceled {
				t.Fatalf("client gone at check %d of %d: got %v, want Canceled", at, checks, err)
			}
		}
	})
}

// TestListScopedIgnoresOtherTenants: a caller limited to several tenants
// gets a whole page of theirs, whatever other tenants hold between their
// jobs (here more than a hundred pages of a third tenant's).
func TestListScopedIgnoresOtherTenants(t *testing.T) {
	s := setup(t)
	for _, name := range []string{"a", "b", "c"} {
		s.setTenant(t, &pb.Tenant{Name: name})
	}
	const others = 100*job.MaxPageSize + 10
	mk := func(n int, tenant string) *job.Job {
		j := storetest.NewJob(n)
		j.Spec.Tenant = tenant
		return j
	}
	a, b := mk(1, "a"), mk(others+2, "b")
	storetest.MustInsert(t, s.srv.store, a, b)
	for i := 2; i < others+2; i += 10_000 {
		batch := make([]*job.Job, 0, 10_000)
		for n := i; n < min(i+10_000, others+2); n++ {
			batch = append(batch, mk(n, "c"))
		}
		storetest.MustInsert(t, s.srv.store, batch...)
	}
	js := &jobService{srv: s.srv}
	scoped := auth.NewContext(context.Background(), &auth.Identity{Name: "viewer", Role: auth.Viewer, Tenants: []string{"b", "a"}})
	for _, desc := range []bool{true, false} {
		got, err := js.List(scoped, &pb.ListJobsRequest{NewestFirst: desc, PageSize: 50})
		want := []string{b.ID, a.ID}
		if !desc {
			want = []string{a.ID, b.ID}
		}
		if err != nil || !slices.Equal(jobIDs(got.GetJobs()), want) || got.GetNextPageToken() != "" {
			t.Fatalf("newest first %v: %v next %q, %v; want %v and no next page", desc, jobIDs(got.GetJobs()), got.GetNextPageToken(), err, want)
		}
		// Pages of one: the first, then the other, then the end.
		got, err = js.List(scoped, &pb.ListJobsRequest{NewestFirst: desc, PageSize: 1})
		if err != nil || !slices.Equal(jobIDs(got.GetJobs()), want[:1]) || got.GetNextPageToken() == "" {
			t.Fatalf("page 1: %v next %q, %v", jobIDs(got.GetJobs()), got.GetNextPageToken(), err)
		}
		got, err = js.List(scoped, &pb.ListJobsRequest{NewestFirst: desc, PageSize: 1, PageToken: got.GetNextPageToken()})
		if err != nil || !slices.Equal(jobIDs(got.GetJobs()), want[1:]) {
			t.Fatalf("page 2: %v next %q, %v", jobIDs(got.GetJobs()), got.GetNextPageToken(), err)
		}
		if next := got.GetNextPageToken(); next != "" {
			got, err = js.List(scoped, &pb.ListJobsRequest{NewestFirst: desc, PageSize: 1, PageToken: next})
			if err != nil || len(got.GetJobs()) != 0 {
				t.Fatalf("page 3: %v, %v; want none", jobIDs(got.GetJobs()), err)
			}
		}
	}
}
