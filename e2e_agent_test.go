package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// cluster is a real server and one agent, with fast heartbeats and a short
// kill grace so that failures show quickly.
func cluster(t *testing.T, agentArgs ...string) (*serverProc, *agentProc) {
	t.Helper()
	srv := startServer(t, t.TempDir(), "--heartbeat", "200ms", "--lease", "1500ms", "--kill-grace", "2s")
	ag := startAgent(t, srv.grpcAddr, t.TempDir(), agentArgs...)
	return srv, ag
}

func TestRunStreamsOutputAndExitCode(t *testing.T) {
	srv, _ := cluster(t)
	out, errOut, code := hodei(t, srv.grpcAddr, "run", "--", "sh", "-c", "echo hello; exit 3")
	if code != 3 || !strings.Contains(out, "hello") {
		t.Fatalf("run: exit %d, stdout %q, stderr %q; want hello and exit 3", code, out, errOut)
	}
	out, errOut, code = hodei(t, srv.grpcAddr, "run", "--", "tty")
	if code != 0 || !strings.HasPrefix(out, "/dev/pts/") {
		t.Fatalf("tty in a job: exit %d, %q %q; want a terminal", code, out, errOut)
	}
	out, errOut, code = hodei(t, srv.grpcAddr, "run", "--no-pty", "--", "sh", "-c", "echo out; echo err >&2")
	if code != 0 || out != "out\n" || !jobIDLine.MatchString(errOut) || jobIDLine.ReplaceAllString(errOut, "") != "\nerr\n" {
		t.Fatalf("--no-pty: exit %d, stdout %q, stderr %q; want them apart", code, out, errOut)
	}
	_, errOut, code = hodei(t, srv.grpcAddr, "run", "--", "/no/such/program")
	if code == 0 || !strings.Contains(errOut, "start") {
		t.Fatalf("start failure: exit %d, stderr %q", code, errOut)
	}
	// workers ls shows the agent with its capacity.
	listing, _, _ := hodei(t, srv.grpcAddr, "workers", "ls", "-o", "json")
	var ws []map[string]any
	if err := json.Unmarshal([]byte(listing), &ws); err != nil || len(ws) != 1 || ws[0]["state"] != "READY" {
		t.Fatalf("workers ls = %s (%v)", listing, err)
	}
}

func TestLargeOutputIsStoredByteExact(t *testing.T) {
	srv, _ := cluster(t)
	dir := jobDir(t)
	wrote := filepath.Join(dir, "wrote")
	started := filepath.Join(dir, "started")
	// About 50 MiB of base64; the job keeps its own copy to compare with.
	script := fmt.Sprintf("echo go > %s; head -c 38000000 /dev/urandom | base64 | tee %s", started, wrote)
	id := strings.TrimSpace(mustRun(t, srv.grpcAddr, "submit", "--script", script))
	waitFile(t, started, 30*time.Second)
	// A follower that joins mid-run gets the same bytes.
	follower := cliCmd(srv.grpcAddr, "logs", "-f", id)
	var followed bytes.Buffer
	follower.Stdout = &followed
	if err := follower.Start(); err != nil {
		t.Fatal(err)
	}
	if err := follower.Wait(); err != nil {
		t.Fatalf("logs -f: %v", err)
	}
	jobs := dial(t, srv.grpcAddr).Jobs()
	if j := waitJob(t, jobs, id, 60*time.Second); j.GetState() != pb.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("job %s: %s", j.GetState(), j.GetReason())
	}
	want := sha256File(t, wrote)
	stored, _, code := hodei(t, srv.grpcAddr, "logs", id)
	if code != 0 {
		t.Fatal("logs failed")
	}
	// The PTY turns each \n into \r\n; undo that to compare with the file.
	if got := sha256.Sum256(bytes.ReplaceAll([]byte(stored), []byte("\r\n"), []byte("\n"))); got != want {
		t.Fatalf("stored log (%d bytes) differs from what the job wrote", len(stored))
	}
	if followed.String() != stored {
		t.Fatalf("follower got %d bytes, stored log has %d", followed.Len(), len(stored))
	}
}

func sha256File(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func mustRun(t *testing.T, addr string, args ...string) string {
	t.Helper()
	out, errOut, code := hodei(t, addr, args...)
	if code != 0 {
		t.Fatalf("hodei %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func TestCancelStopsTheWholeProcessGroup(t *testing.T) {
	srv, _ := cluster(t)
	jobs := dial(t, srv.grpcAddr).Jobs()
	for _, tc := range []struct{ name, trap string }{
		{"TrapsTERM", `trap 'echo bye; exit 0' TERM`},
		{"IgnoresTERM", `trap '' TERM`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pidFile := filepath.Join(jobDir(t), "pgid")
			// The group holds the shell and a background sleep.
			script := fmt.Sprintf(`%s; sleep 600 & echo $$ > %s; while :; do wait; done`, tc.trap, pidFile)
			id := strings.TrimSpace(mustRun(t, srv.grpcAddr, "submit", "--script", script))
			pgid := atoi(t, waitFile(t, pidFile, 30*time.Second))
			start := time.Now()
			mustRun(t, srv.grpcAddr, "jobs", "cancel", id)
			j := waitJob(t, jobs, id, 10*time.Second)
			if took := time.Since(start); j.GetState() != pb.JobState_JOB_STATE_CANCELLED || took > 3*time.Second {
				t.Fatalf("job %s (%s) after %s; want CANCELLED within the 2s grace + 1s", j.GetState(), j.GetReason(), took)
			}
			eventually(t, time.Second, "the job's process group to be gone", func() bool { return groupGone(pgid) })
		})
	}
}

func TestTimeoutKillsTheJob(t *testing.T) {
	srv, _ := cluster(t)
	pidFile := filepath.Join(jobDir(t), "pgid")
	id := strings.TrimSpace(mustRun(t, srv.grpcAddr, "submit", "--timeout", "1s", "--script", fmt.Sprintf("echo $$ > %s; sleep 60", pidFile)))
	pgid := atoi(t, waitFile(t, pidFile, 30*time.Second))
	j := waitJob(t, dial(t, srv.grpcAddr).Jobs(), id, 10*time.Second)
	if j.GetState() != pb.JobState_JOB_STATE_FAILED || j.GetReason() != "timeout" {
		t.Fatalf("job %s %q, want FAILED timeout", j.GetState(), j.GetReason())
	}
	eventually(t, time.Second, "the job's process group to be gone", func() bool { return groupGone(pgid) })
}

func TestServerRestartWhileJobRuns(t *testing.T) {
	dataDir, addr, tmp := t.TempDir(), freeAddr(t), jobDir(t)
	args := []string{"--heartbeat", "200ms", "--lease", "5s", "--grpc-addr", addr}
	srv := startServer(t, dataDir, args...)
	startAgent(t, addr, t.TempDir())
	var want strings.Builder
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&want, "line %d\r\n", i)
	}
	long := strings.TrimSpace(mustRun(t, addr, "submit", "--script",
		fmt.Sprintf("echo go > %s/started; for i in $(seq 1 30); do echo line $i; sleep 0.1; done", tmp)))
	// The second job ends while the server is down, so its result and
	// output wait in the agent until the server is back.
	quick := strings.TrimSpace(mustRun(t, addr, "submit", "--script",
		fmt.Sprintf("echo go > %[1]s/quickstarted; while [ ! -e %[1]s/killed ]; do sleep 0.05; done; echo quick; echo done > %[1]s/quick", tmp)))
	waitFile(t, filepath.Join(tmp, "started"), 30*time.Second)
	waitFile(t, filepath.Join(tmp, "quickstarted"), 30*time.Second) // both run on the agent before the kill
	srv.kill()
	os.WriteFile(filepath.Join(tmp, "killed"), []byte("\n"), 0o600)
	waitFile(t, filepath.Join(tmp, "quick"), 30*time.Second)
	startServer(t, dataDir, args...)
	jobs := dial(t, addr).Jobs()
	for id, log := range map[string]string{long: want.String(), quick: "quick\r\n"} {
		j := waitJob(t, jobs, id, 30*time.Second)
		if j.GetState() != pb.JobState_JOB_STATE_COMPLETED || j.GetAttempt() != 1 {
			t.Fatalf("job %s attempt %d (%s), want COMPLETED on attempt 1", j.GetState(), j.GetAttempt(), j.GetReason())
		}
		if got := mustRun(t, addr, "logs", id); got != log {
			t.Fatalf("log after server restart:\n%q\nwant\n%q", got, log)
		}
	}
}

// TestAgentRestartDeliversJournaledResult ends a job while the server is
// down, SIGKILLs the agent, and brings both back: the result and output kept
// in the agent's journal are delivered once.
func TestAgentRestartDeliversJournaledResult(t *testing.T) {
	dataDir, agentDir, addr, tmp := t.TempDir(), t.TempDir(), freeAddr(t), jobDir(t)
	args := []string{"--heartbeat", "200ms", "--lease", "5s", "--grpc-addr", addr}
	srv := startServer(t, dataDir, args...)
	ag := startAgent(t, addr, agentDir)
	id := strings.TrimSpace(mustRun(t, addr, "submit", "--script",
		fmt.Sprintf("echo go > %[1]s/started; while [ ! -e %[1]s/killed ]; do sleep 0.05; done; echo kept; echo done > %[1]s/ended", tmp)))
	waitFile(t, filepath.Join(tmp, "started"), 30*time.Second)
	srv.kill()
	os.WriteFile(filepath.Join(tmp, "killed"), []byte("\n"), 0o600)
	waitFile(t, filepath.Join(tmp, "ended"), 30*time.Second)
	eventually(t, 10*time.Second, "the result in the agent's journal", func() bool {
		fi, err := os.Stat(filepath.Join(agentDir, "journal.log"))
		return err == nil && fi.Size() > 0
	})
	ag.kill()
	startServer(t, dataDir, args...)
	startAgent(t, addr, agentDir)
	j := waitJob(t, dial(t, addr).Jobs(), id, 30*time.Second)
	if j.GetState() != pb.JobState_JOB_STATE_COMPLETED || j.GetAttempt() != 1 {
		t.Fatalf("job %s attempt %d (%s), want COMPLETED on attempt 1", j.GetState(), j.GetAttempt(), j.GetReason())
	}
	if got := mustRun(t, addr, "logs", id); got != "kept\r\n" {
		t.Fatalf("log = %q", got)
	}
}

func TestRunInterruptCancelsTheJob(t *testing.T) {
	srv, _ := cluster(t)
	tmp := jobDir(t)
	cmd := cliCmd(srv.grpcAddr, "run", "--", "sh", "-c", fmt.Sprintf("echo go > %s/started; sleep 60", tmp))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(tmp, "started"), 30*time.Second)
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 130 || !strings.Contains(stderr.String(), "cancelled") {
		t.Fatalf("interrupted run: %v, stderr %q; want exit 130 and the job cancelled", err, stderr.String())
	}
	var list []map[string]any
	json.Unmarshal([]byte(mustRun(t, srv.grpcAddr, "jobs", "ls", "-o", "json")), &list)
	if len(list) != 1 || list[0]["state"] != "CANCELLED" {
		t.Fatalf("jobs after interrupt: %v", list)
	}
}

func TestAgentKilledJobRetriesElsewhere(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--heartbeat", "200ms", "--lease", "1s", "--kill-grace", "1s")
	a1 := startAgent(t, srv.grpcAddr, t.TempDir(), "--slots", "1", "--name", "a1")
	marker := filepath.Join(jobDir(t), "runs")
	script := fmt.Sprintf(`echo "$HODEI_ATTEMPT" >> %s; sleep 2; echo done`, marker)
	id := strings.TrimSpace(mustRun(t, srv.grpcAddr, "submit", "--retries", "2", "--backoff", "10ms", "--script", script))
	waitFile(t, marker, 30*time.Second)
	a1.kill()
	startAgent(t, srv.grpcAddr, t.TempDir(), "--slots", "1", "--name", "a2")
	j := waitJob(t, dial(t, srv.grpcAddr).Jobs(), id, 30*time.Second)
	if j.GetState() != pb.JobState_JOB_STATE_COMPLETED || j.GetAttempt() != 2 {
		t.Fatalf("job %s attempt %d (%s), want COMPLETED on attempt 2", j.GetState(), j.GetAttempt(), j.GetReason())
	}
	if runs, _ := os.ReadFile(marker); string(runs) != "1\n2\n" {
		t.Fatalf("attempts that ran: %q, want 1 then 2", runs)
	}
}

func TestSlowFollowerBoundsServerMemory(t *testing.T) {
	srv, _ := cluster(t)
	// 200 MiB of output, read by a follower that takes one byte per ms for
	// the first seconds, then everything.
	id := strings.TrimSpace(mustRun(t, srv.grpcAddr, "submit", "--no-pty", "--script", "head -c 209715200 /dev/zero | tr '\\0' x"))
	follower := cliCmd(srv.grpcAddr, "logs", "-f", id)
	pipe, err := follower.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follower.Start(); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(time.Millisecond)
	one := make([]byte, 1)
	slow := 0
	for range 2000 {
		<-tick.C
		n, err := pipe.Read(one)
		if err != nil {
			t.Fatal(err)
		}
		slow += n
	}
	tick.Stop()
	j := waitJob(t, dial(t, srv.grpcAddr).Jobs(), id, 120*time.Second)
	if j.GetState() != pb.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("job %s %s", j.GetState(), j.GetReason())
	}
	rest, err := io.Copy(io.Discard, pipe)
	if err != nil || follower.Wait() != nil {
		t.Fatalf("follower: %v", err)
	}
	if total := int64(slow) + rest; total != 209715200 {
		t.Fatalf("follower got %d bytes, want 209715200", total)
	}
	hwm := peakRSSMiB(t, srv.cmd.Process.Pid)
	t.Logf("server peak RSS %d MiB while a slow follower read 200 MiB", hwm)
	if hwm > 150 {
		t.Fatalf("server peak RSS %d MiB: memory grew with the output", hwm)
	}
}

// peakRSSMiB reads a process's peak resident set size.
func peakRSSMiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			return atoi(t, f[1]) / 1024
		}
	}
	t.Fatal("no VmHWM")
	return 0
}
