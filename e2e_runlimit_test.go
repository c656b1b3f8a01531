package main

import (
	"context"
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestRunAtStreamLimitSaysTheJobGoesOn: when the token holds the most
// streams the server allows, hodei run still submits the job, then says
// that it goes on, why run cannot follow it (naming the flag) and how to
// follow it; nothing about stdin.
func TestRunAtStreamLimitSaysTheJobGoesOn(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--max-streams-per-token", "2")
	startAgent(t, srv.grpcAddr, t.TempDir())
	_, errOut, code := hodei(t, srv.grpcAddr, "run", "--", "true")
	if code != 0 {
		t.Fatalf("run true: exit %d, %q", code, errOut)
	}
	done := jobIDLine.FindStringSubmatch(errOut)[1]

	// Hold the token's two streams (run takes two: the output and the
	// input).
	cl := dial(t, srv.grpcAddr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 2 {
		if _, err := cl.Watch(ctx, &pb.WatchRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "the streams to hold the token's slots", func() bool {
		_, errOut, _ := hodei(t, srv.grpcAddr, "logs", "-f", done)
		return strings.Contains(errOut, "max-streams-per-token")
	})

	for _, args := range [][]string{{"run", "-i=false", "--", "echo", "hi"}, {"run", "--no-pty", "--", "echo", "hi"}} {
		_, errOut, code := hodei(t, srv.grpcAddr, args...)
		m := jobIDLine.FindStringSubmatch(errOut)
		if code != 1 || m == nil {
			t.Fatalf("%v: exit %d, stderr %q; want 1 and the job's id", args, code, errOut)
		}
		id := m[1]
		for _, want := range []string{"job " + id + " was submitted and goes on", "--max-streams-per-token",
			"hodei logs -f " + id, "hodei attach " + id} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%v: stderr %q, want …%s…", args, errOut, want)
			}
		}
		if strings.Contains(errOut, "stdin") {
			t.Errorf("%v: stderr %q blames stdin", args, errOut)
		}
		if j := waitJob(t, cl.Jobs(), id, 30*time.Second); j.GetState() != pb.JobState_JOB_STATE_COMPLETED {
			t.Errorf("the job is %v, want it to have run to completion", j.GetState())
		}
	}
}
