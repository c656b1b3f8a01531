package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestAgentDiskFull runs an agent whose data dir is a small tmpfs, fills
// it, and checks what an operator sees: each job's result says its output
// was lost and why, the agent logs one ERROR line for all of them (and its
// supervisor, whose log is on that disk, none per job), `hodei run` says
// so and exits with the job's exit code; once space is freed the next
// job's output is whole and the agent logs its recovery at INFO.
func TestAgentDiskFull(t *testing.T) {
	dir := smallTmpfs(t)
	srv := startServer(t, t.TempDir())
	ag := startAgent(t, srv.grpcAddr, dir, "--log-level", "info")
	c := dial(t, srv.grpcAddr)
	jobs := c.Jobs()
	ctx := context.Background()
	submit := func(args ...string) string {
		t.Helper()
		resp, err := jobs.Submit(ctx, &pb.SubmitRequest{Spec: &pb.JobSpec{Command: args}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetId()
	}
	logsOf := func(id string) string {
		t.Helper()
		out, errOut, code := hodei(t, srv.grpcAddr, "logs", "--raw", id)
		if code != 0 {
			t.Fatalf("hodei logs %s: exit %d: %s", id, code, errOut)
		}
		return out
	}
	// A first job starts the supervisor while there is room.
	if j := waitJob(t, jobs, submit("echo", "warm"), 30*time.Second); j.GetState() != pb.JobState_JOB_STATE_COMPLETED || j.GetReason() != "" {
		t.Fatalf("first job: %v %q", j.GetState(), j.GetReason())
	}

	filler := fillDisk(t, dir)
	const lostPrefix = "output lost: the agent could not write the job's output: no space left on device ("
	for i := range 3 {
		id := submit("echo", fmt.Sprint("agfull", i))
		j := waitJob(t, jobs, id, 30*time.Second)
		if j.GetState() != pb.JobState_JOB_STATE_COMPLETED || j.GetExitCode() != 0 ||
			!strings.HasPrefix(j.GetReason(), lostPrefix+filepath.Join(dir, "spool")) {
			t.Fatalf("job %d on a full disk: %v exit %d reason %q, want COMPLETED 0 with %q…", i, j.GetState(), j.GetExitCode(), j.GetReason(), lostPrefix)
		}
	}
	out, errOut, code := hodei(t, srv.grpcAddr, "run", "--no-stdin", "--", "echo", "viarun")
	if code != 0 || !strings.Contains(errOut, "completed: "+lostPrefix) || strings.Contains(errOut, "stdin") {
		t.Fatalf("hodei run on a full disk: exit %d, stdout %q, stderr %q; want exit 0 (the job's) and the loss said", code, out, errOut)
	}
	out, errOut, code = runCmd(t, withStdin(cliCmd(srv.grpcAddr, "run", "--", "echo", "viarun"), "some input\n"))
	if code != 0 || !strings.Contains(errOut, "completed: "+lostPrefix) || strings.Contains(errOut, "could not all be sent") {
		t.Fatalf("hodei run with stdin on a full disk: exit %d, stdout %q, stderr %q; want exit 0 and the loss said", code, out, errOut)
	}
	// The files the supervisor made and could not write to go with their
	// jobs, as any spool file does once the server holds the result.
	eventually(t, 10*time.Second, "the spool dir to empty", func() bool {
		left, err := os.ReadDir(filepath.Join(dir, "spool"))
		return err == nil && len(left) == 0
	})
	const errLine = "the agent cannot write to its data dir"
	if n := strings.Count(ag.stderr.String(), "level=ERROR"); n != 1 || !strings.Contains(ag.stderr.String(), errLine) {
		t.Fatalf("agent logged %d ERROR lines for 5 jobs on a full disk, want one saying %q:\n%s", n, errLine, ag.stderr)
	}
	if line := grepLines(ag.stderr.String(), errLine); !strings.Contains(line, "data_dir="+dir) || !strings.Contains(line, `cause="no space left on device`) {
		t.Fatalf("the ERROR line does not name the data dir and the cause: %s", line)
	}
	supLog, _ := os.ReadFile(filepath.Join(dir, "supervisor", "supervisor.log"))
	if strings.Contains(string(supLog), "level=ERROR") {
		t.Fatalf("the supervisor logged ERROR lines:\n%s", supLog)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	id := submit("sh", "-c", "for i in 1 2 3; do echo recovered$i; done")
	j := waitJob(t, jobs, id, 30*time.Second)
	if j.GetState() != pb.JobState_JOB_STATE_COMPLETED || j.GetReason() != "" {
		t.Fatalf("job after space was freed: %v %q", j.GetState(), j.GetReason())
	}
	if got, want := logsOf(id), "recovered1\r\nrecovered2\r\nrecovered3\r\n"; got != want {
		t.Fatalf("output after space was freed: %q, want %q", got, want)
	}
	eventually(t, 10*time.Second, "the agent's recovery line", func() bool {
		return strings.Contains(ag.stderr.String(), "level=INFO msg=\"the agent writes to its data dir again\"")
	})
	if n := strings.Count(ag.stderr.String(), "level=ERROR"); n != 1 {
		t.Fatalf("%d ERROR lines after the recovery, want the one:\n%s", n, ag.stderr)
	}
}

// fillDisk writes a file in dir until the disk is full and returns its
// path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// What is left is less than a chunk: fill it to the byte.
	for _, err := f.Write(buf[:1]); err == nil; _, err = f.Write(buf[:1]) {
	}
	return path
}

// withStdin gives cmd input as a pipe.
func withStdin(cmd *exec.Cmd, input string) *exec.Cmd {
	cmd.Stdin = strings.NewReader(input)
	return cmd
}
