package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	dir := smallTmpfs(t)
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

// TestFullDiskEpisode fills a small tmpfs through the store until a
// commit fails, then checks the whole episode as an operator sees it:
// /readyz 503 with the cause, submits refused with Unavailable, one ERROR
// line; once there is room again the server turns ready with no restart,
// takes submits, and has lost no acknowledged job, also across a restart.
func TestFullDiskEpisode(t *testing.T) {
	dir := smallTmpfs(t)
	srv := startServer(t, dir)
	acked := map[string]bool{}
	const cause = "cannot write its database (no space left on device)"

	// Fill the disk through the store: submit batches of 1000 jobs until
	// one is refused. Then the same batch again, three times: each is
	// refused too, and the store stays failing throughout, although the
	// refused batches left the pages they wrote free in the file (commits
	// carry a probe twice the largest refusal while failing, so the
	// refusals' own audit records do not end the episode). mark is where
	// the server's log stood before the submit that began the episode.
	const n = 1000
	batch := jobsFile(t, n)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	refused, mark := 0, 0
	for deadline := time.Now().Add(2 * time.Minute); refused < 4; <-tick.C {
		if time.Now().After(deadline) {
			t.Fatalf("the disk never filled: %d jobs acknowledged", len(acked))
		}
		if refused == 0 {
			mark = len(srv.stderr.String())
		}
		stdout, stderr, code := hodei(t, srv.grpcAddr, "submit", "--file", batch, "-o", "json")
		if code == 0 {
			if refused > 0 {
				t.Fatalf("a batch was acknowledged on a full disk after %d refusals", refused)
			}
			var resp struct{ IDs []string }
			if err := json.Unmarshal([]byte(stdout), &resp); err != nil || len(resp.IDs) != n {
				t.Fatalf("submit --file answered %q: %v", stdout, err)
			}
			for _, id := range resp.IDs {
				acked[id] = true
			}
			continue
		}
		if !strings.Contains(stderr, cause) {
			t.Fatalf("a batch on a full disk: exit %d: %s", code, stderr)
		}
		refused++
		if code, body := getHTTP(t, srv, "/readyz"); code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz after %d refused batches: %d %q, want 503\n%s", refused, code, body, srv.stderr.String()[mark:])
		}
	}
	t.Logf("%d jobs acknowledged, %d batches refused", len(acked), refused)

	// The episode: not ready with the cause, submits refused saying why,
	// the metrics say so, and one ERROR line however many writes failed.
	for range 3 {
		if code, body := getHTTP(t, srv, "/readyz"); code != http.StatusServiceUnavailable ||
			!strings.Contains(body, "not ready: the server "+cause) {
			t.Fatalf("/readyz on a full disk: %d %q, want 503 naming the cause", code, body)
		}
		_, stderr, code := hodei(t, srv.grpcAddr, "submit", "--", "true")
		if code == 0 || !strings.Contains(stderr, "the server "+cause+": retry when it recovers") {
			t.Fatalf("hodei submit on a full disk: exit %d: %s", code, stderr)
		}
	}
	c := dial(t, srv.grpcAddr)
	if _, err := c.Jobs().Submit(context.Background(), &pb.SubmitRequest{Spec: &pb.JobSpec{Command: []string{"true"}}}); status.Code(err) != codes.Unavailable {
		t.Fatalf("a gRPC submit on a full disk: %v, want Unavailable", err)
	}
	if _, body := getHTTP(t, srv, "/metrics"); !strings.Contains(body, "\nhodei_store_ready 0\n") ||
		strings.Contains(body, "\nhodei_store_commit_failures_total 0\n") {
		t.Errorf("/metrics on a full disk:\n%s", grepLines(body, "hodei_store_"))
	}
	errs := grepLines(srv.stderr.String()[mark:], "level=ERROR")
	if strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "the store cannot write its database") ||
		!strings.Contains(errs, filepath.Join(dir, "hodei.db")) || !strings.Contains(errs, "no space left on device") {
		t.Fatalf("the server logged, at error level, for one full disk:\n%s", errs)
	}

	// Room again: ready with no restart, and submits are acknowledged.
	if out, err := exec.Command("mount", "-o", "remount,size=64m", dir).CombinedOutput(); err != nil {
		t.Fatalf("grow the tmpfs: %v: %s", err, out)
	}
	for deadline := time.Now().Add(30 * time.Second); ; <-tick.C {
		code, body := getHTTP(t, srv, "/readyz")
		if code == http.StatusOK && body == "ready\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after the disk has room: %d %q", code, body)
		}
	}
	// The audit writer retries its refused records as soon as the store
	// commits, and refuses changes until they are stored, so a submit may
	// still be refused for a moment after /readyz turned ready.
	var one struct{ ID string }
	for deadline := time.Now().Add(30 * time.Second); ; <-tick.C {
		stdout, stderr, code := hodei(t, srv.grpcAddr, "submit", "-o", "json", "--", "true")
		if code == 0 {
			if err := json.Unmarshal([]byte(stdout), &one); err != nil || one.ID == "" {
				t.Fatalf("hodei submit answered %q: %v", stdout, err)
			}
			break
		}
		if !strings.Contains(stderr, cause) || time.Now().After(deadline) {
			t.Fatalf("hodei submit after the disk has room: exit %d: %s", code, stderr)
		}
	}
	acked[one.ID] = true
	if _, body := getHTTP(t, srv, "/metrics"); !strings.Contains(body, "\nhodei_store_ready 1\n") {
		t.Errorf("/metrics after the disk has room:\n%s", grepLines(body, "hodei_store_"))
	}
	if errs2 := grepLines(srv.stderr.String()[mark:], "level=ERROR"); errs2 != errs {
		t.Errorf("more error lines after the episode:\n%s", errs2)
	}
	wantAllListed(t, srv.grpcAddr, acked)

	// Durable: every acknowledged job is still there after a SIGKILL.
	srv.kill()
	srv = startServer(t, dir)
	wantAllListed(t, srv.grpcAddr, acked)
}

// jobsFile writes n job lines for submit --file and returns its path.
func jobsFile(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for k := range n {
		fmt.Fprintf(&b, `{"name": "fill-%d", "command": ["true"], "labels": {"k": "%d", "pad": "%s"}}`+"\n", k, k%7, strings.Repeat("x", 100))
	}
	path := filepath.Join(t.TempDir(), "jobs.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantAllListed fails unless the server at addr lists every id of want.
func wantAllListed(t *testing.T, addr string, want map[string]bool) {
	t.Helper()
	c := dial(t, addr)
	listed := map[string]bool{}
	req := &pb.ListJobsRequest{PageSize: 1000}
	for {
		resp, err := c.Jobs().List(context.Background(), req)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		for _, j := range resp.GetJobs() {
			listed[j.GetId()] = true
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	for id := range want {
		if !listed[id] {
			t.Fatalf("acknowledged job %s is not listed (%d of %d listed)", id, len(listed), len(want))
		}
	}
}

// getHTTP GETs path from srv's HTTP listener with its admin token and
// returns the status code and body.
func getHTTP(t *testing.T, srv *serverProc, path string) (int, string) {
	t.Helper()
	creds := credsFor(srv.grpcAddr)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(creds.caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequest("GET", "http://"+srv.httpAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+creds.token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// grepLines returns the lines of text that contain sub, each ending in a
// newline.
func grepLines(text, sub string) string {
	var b strings.Builder
	for line := range strings.Lines(text) {
		if strings.Contains(line, sub) {
			b.WriteString(strings.TrimSuffix(line, "\n") + "\n")
		}
	}
	return b.String()
}

// smallTmpfs mounts a 6 MiB tmpfs on a temp dir for a test that fills a
// disk, and unmounts it after; it skips where that cannot be done (not
// root, -short, mount refused).
func smallTmpfs(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	if testing.Short() {
		t.Skip("fills a disk")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs (not allowed here?): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}
