package main

import (
	"runtime"
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestAgentLabelsItsHost: hodei agent labels itself os=GOOS and
// arch=GOARCH, as the dev agent does, so that a job selecting them (as
// README suggests) runs on it; --labels can override them.
func TestAgentLabelsItsHost(t *testing.T) {
	srv, _ := cluster(t)
	other := startAgent(t, srv.grpcAddr, t.TempDir(), "--labels", "os=plan9,zone=a")
	cl := dial(t, srv.grpcAddr)
	for _, sel := range []string{"os=" + runtime.GOOS + ",arch=" + runtime.GOARCH, "os=plan9,arch=" + runtime.GOARCH} {
		out, errOut, code := hodei(t, srv.grpcAddr, "submit", "--selector", sel, "--", "true")
		if code != 0 {
			t.Fatalf("submit --selector %s: exit %d, %q", sel, code, errOut)
		}
		id := strings.TrimSpace(out)
		j := waitJob(t, cl.Jobs(), id, 30*time.Second)
		if j.GetState() != pb.JobState_JOB_STATE_COMPLETED {
			t.Fatalf("--selector %s: job %v", sel, j.GetState())
		}
		if strings.Contains(sel, "plan9") && j.GetWorker() != other.id {
			t.Fatalf("--selector %s ran on %s, want the agent labelled os=plan9 (%s)", sel, j.GetWorker(), other.id)
		}
	}
}
