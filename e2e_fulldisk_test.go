package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestFullDisk runs the server on a small tmpfs and submits large batches
// until the disk is full: every refused batch must fail cleanly, the
// server must keep answering, every acknowledged job must be listed, and
// the file, copied off after a SIGKILL, must pass the consistency check
// (indexes and counts included) and hold every acknowledged job.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	if testing.Short() {
		t.Skip("fills a disk")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	srv := startServer(t, dir)
	c := dial(t, srv.grpcAddr)
	ctx := context.Background()
	acked := map[string]bool{}
	var failures []error
	for round := 0; len(failures) < 5 && round < 500; round++ {
		req := &pb.SubmitBatchRequest{}
		for k := range 1000 {
			req.Specs = append(req.Specs, &pb.JobSpec{Name: fmt.Sprintf("b%d-%d", round, k), Command: []string{"true"},
				Labels: map[string]string{"round": fmt.Sprint(round), "k": fmt.Sprint(k % 7)}})
		}
		resp, err := c.Jobs().SubmitBatch(ctx, req)
		if err != nil {
			failures = append(failures, err)
			continue
		}
		for _, id := range resp.GetIds() {
			acked[id] = true
		}
	}
	if len(failures) == 0 {
		t.Fatal("the disk never filled")
	}
	t.Logf("%d jobs acknowledged; the first refusal: %v", len(acked), failures[0])
	if st := status.Convert(failures[0]); st.Code() != codes.Unavailable ||
		!strings.Contains(st.Message(), "cannot write its database (no space left on device): retry when it recovers") {
		t.Fatalf("a full disk is answered %v %q, want Unavailable saying the database cannot be written and why", st.Code(), st.Message())
	}
	// Still serving: single submits fail or succeed cleanly, reads work.
	for i := range 20 {
		resp, err := c.Jobs().Submit(ctx, &pb.SubmitRequest{Spec: &pb.JobSpec{Name: fmt.Sprint("single-", i), Command: []string{"true"}}})
		if err == nil {
			acked[resp.GetId()] = true
		}
	}
	listed := map[string]bool{}
	req := &pb.ListJobsRequest{PageSize: 1000}
	for {
		resp, err := c.Jobs().List(ctx, req)
		if err != nil {
			t.Fatalf("list on a full disk: %v", err)
		}
		for _, j := range resp.GetJobs() {
			listed[j.GetId()] = true
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	for id := range acked {
		if !listed[id] {
			t.Fatalf("acknowledged job %s is not listed", id)
		}
	}
	pending := 0
	req = &pb.ListJobsRequest{PageSize: 1000, State: pb.JobState_JOB_STATE_PENDING}
	for {
		resp, err := c.Jobs().List(ctx, req)
		if err != nil {
			t.Fatalf("list pending on a full disk: %v", err)
		}
		pending += len(resp.GetJobs())
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if pending != len(listed) {
		t.Errorf("%d jobs listed, %d by the PENDING index", len(listed), pending)
	}
	srv.kill()
	copyPath := filepath.Join(t.TempDir(), "hodei.db")
	copyFile(t, filepath.Join(dir, "hodei.db"), copyPath)
	if err := store.CheckFile(copyPath); err != nil {
		t.Fatalf("after a full disk: %v", err)
	}
	db, err := store.Open(copyPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for id := range acked {
		if _, err := db.Get(ctx, id); err != nil {
			t.Fatalf("acknowledged job %s: %v", id, err)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
