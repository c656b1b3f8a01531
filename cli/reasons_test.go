package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// waitingJob is a pending job, on its second attempt, that no ready worker
// can take.
func waitingJob() *hodeipb.Job {
	return &hodeipb.Job{
		Id:    "01JAAAAAAAAAAAAAAAAAAAAAW1",
		Spec:  &hodeipb.JobSpec{Name: "gpu", Tenant: "default", Command: []string{"train"}, Selector: map[string]string{"zone": "c"}},
		State: hodeipb.JobState_JOB_STATE_PENDING, Attempt: 2, Reason: "exit code 1",
		CreatedUnixNano: testNow.Add(-time.Minute).UnixNano(),
		Pending: &hodeipb.PendingReason{
			Kind:    hodeipb.PendingKind_PENDING_KIND_LABELS,
			Message: "no ready worker has label zone=c (0 of 3)",
		},
	}
}

// TestJobsPendingReason checks that jobs ls, jobs get and their JSON show
// why a pending job waits, and jobs get its last attempt's reason too.
func TestJobsPendingReason(t *testing.T) {
	h := newHarness(t)
	h.jobs.jobs = []*hodeipb.Job{waitingJob()}
	const why = "no ready worker has label zone=c (0 of 3)"

	r := h.run(t, "jobs", "ls")
	r.wantOK(t)
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 2 || !strings.HasSuffix(lines[1], why) ||
		!strings.HasSuffix(lines[0], "REASON") {
		t.Errorf("jobs ls:\n%s", r.stdout)
	}

	r = h.run(t, "jobs", "get", "01JAAAAAAAAAAAAAAAAAAAAAW1")
	r.wantOK(t)
	if !strings.Contains(r.stdout, "Reason:             "+why+"\n") || !strings.Contains(r.stdout, "Last attempt:       exit code 1\n") {
		t.Errorf("jobs get:\n%s", r.stdout)
	}

	r = h.run(t, "jobs", "get", "-o", "json", "01JAAAAAAAAAAAAAAAAAAAAAW1")
	r.wantOK(t)
	var v map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatal(err)
	}
	if v["pending_reason"] != why || v["pending_kind"] != "labels" || v["reason"] != "exit code 1" {
		t.Errorf("jobs get -o json: %v", v)
	}
}

// TestPendingKindName checks the names --output json gives the kinds.
func TestPendingKindName(t *testing.T) {
	for k, want := range map[hodeipb.PendingKind]string{
		hodeipb.PendingKind_PENDING_KIND_UNSPECIFIED:  "",
		hodeipb.PendingKind_PENDING_KIND_NO_WORKERS:   "no-workers",
		hodeipb.PendingKind_PENDING_KIND_TENANT_LIMIT: "tenant-limit",
		hodeipb.PendingKind_PENDING_KIND_QUEUED:       "queued",
	} {
		if got := pendingKindName(k); got != want {
			t.Errorf("pendingKindName(%s) = %q, want %q", k, got, want)
		}
	}
}

// TestStepSaysWhy checks that a pipeline step shows why its pending job
// waits, unless it only waits for the steps it needs or its turn.
func TestStepSaysWhy(t *testing.T) {
	step := &hodeipb.Pipeline_Step{Name: "train", Jobs: []string{"01JAAAAAAAAAAAAAAAAAAAAAW1"}}
	for _, tt := range []struct {
		kind hodeipb.PendingKind
		want string
	}{
		{hodeipb.PendingKind_PENDING_KIND_LABELS, "0/1 completed, 1 pending; no ready worker has label zone=c (0 of 3)"},
		{hodeipb.PendingKind_PENDING_KIND_DEPENDENCY, "0/1 completed, 1 pending"},
		{hodeipb.PendingKind_PENDING_KIND_QUEUED, "0/1 completed, 1 pending"},
	} {
		j := waitingJob()
		j.Pending.Kind = tt.kind
		if got := progressOf(step, map[string]*hodeipb.Job{j.GetId(): j}).String(); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.kind, got, tt.want)
		}
	}
}
