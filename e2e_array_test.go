package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// TestArraySurvivesSIGKILL runs a million-task array, at most 50 at once,
// on a real agent; SIGKILLs the server while tasks run; and checks after the
// restart that the array goes on where it was — no task lost or run twice,
// the tasks not run yet still one record — and that `jobs cancel --array`
// ends the rest.
func TestArraySurvivesSIGKILL(t *testing.T) {
	dataDir, addr := t.TempDir(), freeAddr(t)
	args := []string{"--heartbeat", "200ms", "--lease", "5s", "--grpc-addr", addr}
	srv := startServer(t, dataDir, args...)
	startAgent(t, addr, t.TempDir(), "--slots", "64")
	id := strings.TrimSpace(mustRun(t, addr, "submit", "--array", "0-999999%50", "--", "true"))
	c := dial(t, addr)
	completed := func() int { return countJobs(t, c, id, pb.JobState_JOB_STATE_COMPLETED) }
	eventually(t, 60*time.Second, "100 tasks to complete", func() bool { return completed() >= 100 })
	srv.kill()
	startServer(t, dataDir, args...)
	c = dial(t, addr)
	eventually(t, 60*time.Second, "200 tasks to complete after the restart", func() bool {
		return countJobs(t, c, id, pb.JobState_JOB_STATE_COMPLETED) >= 200
	})
	// The tenant's held slots (a task holds one) are one consistent
	// figure; two listings would not be.
	for range 20 {
		st, err := c.Admin().GetTenant(context.Background(), &pb.GetTenantRequest{Name: "default"})
		if err != nil {
			t.Fatal(err)
		}
		if n := st.GetRunning().GetSlots(); n > 50 {
			t.Fatalf("%d tasks scheduled or running, more than the array's limit of 50", n)
		}
	}
	out := mustRun(t, addr, "jobs", "cancel", "--array", id, "-o", "json")
	if !strings.Contains(out, `"count":`) {
		t.Fatalf("cancel --array printed %q", out)
	}
	// Every task that ran, ran once; the rest are cancelled with the array,
	// the last one too.
	jobs, err := listAll(c, job.Filter{Array: id})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.GetAttempt() != 1 {
			t.Fatalf("task %s ran %d times", j.GetSpec().GetName(), j.GetAttempt())
		}
	}
	last, err := c.Jobs().Get(context.Background(), &pb.GetJobRequest{Id: job.TaskID(id, 999_999)})
	if err != nil || last.GetState() != pb.JobState_JOB_STATE_CANCELLED || last.GetSpec().GetEnv()["HODEI_ARRAY_INDEX"] != "999999" {
		t.Fatalf("the last task: %v %v", last, err)
	}
	if n := countJobs(t, c, id, pb.JobState_JOB_STATE_PENDING); n != 0 {
		t.Fatalf("%d tasks still pending after the cancel", n)
	}
}

// countJobs counts an array's jobs in a state, from the first pages of a
// filtered listing (enough for the figures these tests look at).
func countJobs(t *testing.T, c *client.Client, array string, state pb.JobState) int {
	t.Helper()
	n := 0
	req := &pb.ListJobsRequest{Array: array, State: state, PageSize: 1000}
	for range 3 {
		resp, err := c.Jobs().List(context.Background(), req)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		n += len(resp.GetJobs())
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	return n
}

// listAll lists the jobs of f that are stored as jobs or listed in their
// first pages, up to 5,000.
func listAll(c *client.Client, f job.Filter) ([]*pb.Job, error) {
	var out []*pb.Job
	req := &pb.ListJobsRequest{Array: f.Array, PageSize: 1000}
	for len(out) < 5000 {
		resp, err := c.Jobs().List(context.Background(), req)
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetJobs()...)
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	return out, nil
}
