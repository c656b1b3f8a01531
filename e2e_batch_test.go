package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// TestSubmitFileRunsEveryJob submits a jobs file through the real binary:
// a bad line anywhere fails it with the line and nothing submitted; a good
// file, or the same lines on stdin, runs every job to completion.
func TestSubmitFileRunsEveryJob(t *testing.T) {
	srv, _ := cluster(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := `# three jobs
{"name": "one", "command": ["echo", "one"]}

{"name": "two", "script": "echo two", "labels": {"batch": "e2e"}, "timeout": "1m"}
{"name": "three", "command": ["sh", "-c", "echo three"], "no_pty": true, "retries": 1}
`
	bad := write("bad.jsonl", good+`{"name": "four", "command": []}`+"\n"+`{"name": "five", "command": ["true"]}`+"\n")
	_, errOut, code := hodei(t, srv.grpcAddr, "submit", "--file", bad)
	if code != 1 || errOut != "hodei: "+bad+":6: command: must not be empty: give a command (argv) or a script\n" {
		t.Fatalf("bad line: exit %d, stderr %q", code, errOut)
	}
	wantNoJobs(t, srv.grpcAddr)

	// A spec the server refuses (an unknown tenant) is reported at its
	// line too, and the batch stores nothing.
	unknown := write("tenant.jsonl", good+`{"command": ["true"], "tenant": "nope"}`+"\n")
	_, errOut, code = hodei(t, srv.grpcAddr, "submit", "--file", unknown)
	if code != 1 || !strings.HasPrefix(errOut, "hodei: "+unknown+`:6: tenant "nope" does not exist`) {
		t.Fatalf("unknown tenant: exit %d, stderr %q", code, errOut)
	}
	wantNoJobs(t, srv.grpcAddr)

	out, errOut, code := hodei(t, srv.grpcAddr, "submit", "--file", write("good.jsonl", good))
	if code != 0 {
		t.Fatalf("submit --file: exit %d, %s", code, errOut)
	}
	cmd := cliCmd(srv.grpcAddr, "submit", "--file", "-")
	cmd.Stdin = strings.NewReader(good)
	stdinOut, errOut, code := runCmd(t, cmd)
	if code != 0 {
		t.Fatalf("submit --file -: exit %d, %s", code, errOut)
	}
	ids := strings.Fields(out + stdinOut)
	if len(ids) != 6 {
		t.Fatalf("printed %q, want 6 ids", out+stdinOut)
	}
	jobs := dial(t, srv.grpcAddr).Jobs()
	for i, id := range ids {
		if !job.ValidID(id) {
			t.Fatalf("printed %q, want a job id", id)
		}
		j := waitJob(t, jobs, id, 30*time.Second)
		want := []string{"one", "two", "three"}[i%3]
		if j.GetState() != pb.JobState_JOB_STATE_COMPLETED || j.GetSpec().GetName() != want {
			t.Fatalf("job %s = %s %q (%s), want %q COMPLETED", id, j.GetState(), j.GetSpec().GetName(), j.GetReason(), want)
		}
		logs, errOut, code := hodei(t, srv.grpcAddr, "logs", id)
		if code != 0 || strings.TrimSpace(logs) != want {
			t.Fatalf("logs %s: exit %d, %q %q; want %q", id, code, logs, errOut, want)
		}
	}
}
