package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestFairShareWithTwoAgents floods a real server and two real agents from
// two tenants at weights 1:3 and watches the running slots settle at 1:3;
// a third tenant past its max-queued limit gets the error on the CLI.
func TestFairShareWithTwoAgents(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, filepath.Join(dir, "server"))
	run := func(args ...string) string {
		t.Helper()
		out, errOut, code := hodei(t, srv.grpcAddr, args...)
		if code != 0 {
			t.Fatalf("hodei %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	run("tenants", "set", "light", "--weight", "1")
	run("tenants", "set", "heavy", "--weight", "3")
	run("tenants", "set", "capped", "--max-queued", "2")

	// Both tenants flood the queue, then the agents come up: from the
	// first pass on, both compete.
	cl := dial(t, srv.grpcAddr)
	ctx := context.Background()
	const light, heavy = 40, 120
	for tenant, n := range map[string]int{"light": light, "heavy": heavy} {
		for range n {
			if _, err := cl.Submit(ctx, &pb.JobSpec{Tenant: tenant, Script: "sleep 0.3", NoPty: true}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 2 {
		startAgent(t, srv.grpcAddr, filepath.Join(dir, fmt.Sprint("agent", i)), "--slots", "4")
	}

	// Sample the running slots while both tenants still have a backlog.
	type sample struct{ light, heavy int64 }
	var samples []sample
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(2 * time.Minute)
	for {
		ts, err := cl.ListTenants(ctx)
		if err != nil {
			t.Fatal(err)
		}
		by := map[string]*pb.TenantStatus{}
		for _, st := range ts {
			by[st.GetTenant().GetName()] = st
		}
		l, h := by["light"], by["heavy"]
		if l.GetPendingJobs() < 8 || h.GetPendingJobs() < 8 {
			break
		}
		if l.GetRunning().GetSlots()+h.GetRunning().GetSlots() == 8 { // a full cluster
			samples = append(samples, sample{l.GetRunning().GetSlots(), h.GetRunning().GetSlots()})
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("the backlog did not drain in 2 minutes")
		}
	}
	if len(samples) < 10 {
		t.Fatalf("only %d samples of a full cluster", len(samples))
	}
	var sumL, sumH float64
	for _, s := range samples {
		sumL += float64(s.light)
		sumH += float64(s.heavy)
	}
	meanL, meanH := sumL/float64(len(samples)), sumH/float64(len(samples))
	t.Logf("%d samples of a full cluster: light %.2f, heavy %.2f running slots on average (fair: 2 and 6)", len(samples), meanL, meanH)
	if meanL < 1 || meanL > 3 || meanH < 5 || meanH > 7 {
		t.Fatalf("running slots averaged light %.2f : heavy %.2f, want 2 : 6 ±1 job; samples %v", meanL, meanH, samples)
	}
	for _, s := range samples[len(samples)/2:] { // settled
		if s.light < 1 || s.light > 3 {
			t.Fatalf("after settling, a full cluster ran light %d : heavy %d, want 2 : 6 ±1 job", s.light, s.heavy)
		}
	}

	// A tenant past its max-queued limit.
	run("submit", "--tenant", "capped", "--", "sleep", "30")
	run("submit", "--tenant", "capped", "--", "sleep", "30")
	_, errOut, code := hodei(t, srv.grpcAddr, "submit", "--tenant", "capped", "--", "true")
	if code != 1 || !strings.Contains(errOut, `tenant "capped" is at its max-queued limit of 2 (2 jobs queued, 1 more asked for)`) {
		t.Fatalf("third submit to capped: exit %d, stderr %q; want the max-queued error", code, errOut)
	}
}

// TestPreemptionKeepsBothAttemptsLogs runs preemption with a real agent: a
// preemptible tenant holds both slots, another tenant arrives, one job is
// stopped and requeued, and later completes with both attempts' logs kept.
func TestPreemptionKeepsBothAttemptsLogs(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, filepath.Join(dir, "server"), "--preemption", "--kill-grace", "2s")
	startAgent(t, srv.grpcAddr, filepath.Join(dir, "agent"), "--slots", "2")
	run := func(args ...string) string {
		t.Helper()
		out, errOut, code := hodei(t, srv.grpcAddr, args...)
		if code != 0 {
			t.Fatalf("hodei %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return strings.TrimSpace(out)
	}
	run("tenants", "set", "batch", "--preemptible")
	run("tenants", "set", "prod")
	cl := dial(t, srv.grpcAddr)
	ctx := context.Background()

	// The first attempt runs until stopped; a later one ends at once.
	script := `echo "attempt $HODEI_ATTEMPT"; [ "$HODEI_ATTEMPT" = 1 ] && exec sleep 120; exit 0`
	var batch []string
	for range 2 {
		batch = append(batch, run("submit", "--tenant", "batch", "--script", script))
	}
	for _, id := range batch {
		id := id
		eventually(t, 20*time.Second, "batch job "+id+" running", func() bool {
			j, err := cl.Get(ctx, id)
			return err == nil && j.GetState() == pb.JobState_JOB_STATE_RUNNING
		})
	}
	prod := run("submit", "--tenant", "prod", "--", "true")
	if j := waitJob(t, cl.Jobs(), prod, 30*time.Second); j.GetState() != pb.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("prod job ended %s: %s", j.GetState(), j.GetReason())
	}

	var preempted *pb.Job
	eventually(t, 30*time.Second, "a preempted batch job to complete", func() bool {
		for _, id := range batch {
			j, err := cl.Get(ctx, id)
			if err == nil && j.GetPreemptions() == 1 && j.GetState() == pb.JobState_JOB_STATE_COMPLETED {
				preempted = j
				return true
			}
		}
		return false
	})
	if preempted.GetAttempt() != 2 {
		t.Fatalf("preempted job completed on attempt %d, want 2", preempted.GetAttempt())
	}
	for attempt, want := range map[string]string{"1": "attempt 1", "2": "attempt 2"} {
		if out := run("logs", "--attempt", attempt, preempted.GetId()); !strings.Contains(out, want) {
			t.Fatalf("logs of attempt %s = %q, want %q", attempt, out, want)
		}
	}
	// The other batch job was never stopped: its tenant kept its share.
	for _, id := range batch {
		if id == preempted.GetId() {
			continue
		}
		j, err := cl.Get(ctx, id)
		if err != nil || j.GetPreemptions() != 0 || j.GetState() != pb.JobState_JOB_STATE_RUNNING {
			t.Fatalf("other batch job: %v %v; want still RUNNING, never preempted", j, err)
		}
		run("jobs", "cancel", id)
	}
}
