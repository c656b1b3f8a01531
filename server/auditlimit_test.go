package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/hodei-jobs/hodei/proto"
)

func TestDenialBudget(t *testing.T) {
	var d denialBudget
	d.set(10, 5)
	now := time.Unix(1000, 0)
	allowed := 0
	for range 100 {
		if ok, _ := d.allow("10.0.0.1:1234", now); ok {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("%d denials recorded at once, want the burst of 5", allowed)
	}
	if ok, _ := d.allow("10.0.0.2:1", now); !ok {
		t.Fatal("another peer shares the first one's budget")
	}
	ok, suppressed := d.allow("10.0.0.1:999", now.Add(time.Second))
	if !ok || suppressed != 95 {
		t.Fatalf("after a second: ok %v, suppressed %d; want true, 95", ok, suppressed)
	}
}

// TestAuditFloodIsBounded sends refused calls without a token, with a
// 1 MB id: each record's text is clipped, one peer gets at most its
// budget of records, and the next record says how many were held back.
func TestAuditFloodIsBounded(t *testing.T) {
	s := setup(t)
	s.srv.denials.set(1e-9, 10) // no refill while the test runs
	anon := pb.NewJobServiceClient(s.dialToken(t, ""))
	huge := strings.Repeat("\x1b]0;X\a", 1<<20/5)
	for range 50 {
		_, err := anon.Get(context.Background(), &pb.GetJobRequest{Id: huge})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("get without a token: %v", err)
		}
	}
	recs := s.waitAuditFor(t, "10 denials", func(rs []*pb.AuditRecord) bool { return len(rs) >= 10 })
	for _, r := range recs {
		if len(r.GetTarget()) > maxAuditText || len(r.GetMessage()) > maxAuditText {
			t.Errorf("record of %d and %d bytes", len(r.GetTarget()), len(r.GetMessage()))
		}
	}
	if n := len(recs); n != 10 {
		t.Errorf("%d records from one peer with a budget of 10", n)
	}
}

func TestDenialBudgetOfAllPeers(t *testing.T) {
	var d denialBudget
	now := time.Unix(1000, 0)
	allowed := 0
	for i := range 3 * allBurst {
		if ok, _ := d.allow(fmt.Sprintf("10.%d.%d.1:1", i/256, i%256), now); ok {
			allowed++
		}
	}
	if allowed != allBurst {
		t.Fatalf("%d denials recorded from %d peers at once, want the global burst of %d", allowed, 3*allBurst, allBurst)
	}
}

// TestChangesWaitForTheAuditLog: while audit records cannot be stored (a
// full disk), mutating calls are refused, so that nothing changes
// unaudited; reads go on, and changes resume once a write succeeds.
func TestChangesWaitForTheAuditLog(t *testing.T) {
	s := setup(t)
	full := errors.New("no space left on device")
	s.srv.auditLog.failing.Store(&full)
	_, err := s.jobs.Submit(context.Background(), &pb.SubmitRequest{Spec: &pb.JobSpec{Command: []string{"true"}}})
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "audit log cannot be written") {
		t.Fatalf("submit while the audit log fails: %v", err)
	}
	if _, err := s.jobs.List(context.Background(), &pb.ListJobsRequest{}); err != nil {
		t.Fatalf("list while the audit log fails: %v", err)
	}
	s.srv.auditLog.failing.Store(nil)
	s.submit(t, &pb.JobSpec{Command: []string{"true"}})
}
