package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// TestCronExactlyOnceAcrossSIGKILL: a schedule that ticks every second,
// with catch-up all, while the server is SIGKILLed between ticks and
// restarted, five times. Every tick from the first to the last has
// exactly one job (HODEI_CRON_TIME tells them apart), which the real agent
// ran: none twice, none missing.
func TestCronExactlyOnceAcrossSIGKILL(t *testing.T) {
	r := startRestartable(t)
	ticks := filepath.Join(jobDir(t), "ticks")
	if out, errOut, code := hodei(t, r.addr, "cron", "add", "tick", "--schedule", "*/1 * * * * *", "--catch-up", "all",
		"--no-pty", "--script", `echo "$HODEI_CRON_TIME" >> `+ticks); code != 0 {
		t.Fatalf("cron add: exit %d, %q %q", code, out, errOut)
	}
	lines := func() int {
		b, _ := os.ReadFile(ticks)
		return strings.Count(string(b), "\n")
	}
	for range 5 {
		n := lines()
		eventually(t, 20*time.Second, "a tick to run", func() bool { return lines() > n })
		r.srv.kill()
		r.srv = startServer(t, r.dataDir, r.args...)
	}
	n := lines()
	eventually(t, 20*time.Second, "a tick after the last restart", func() bool { return lines() > n+1 })
	if out, errOut, code := hodei(t, r.addr, "cron", "pause", "tick"); code != 0 {
		t.Fatalf("cron pause: exit %d, %q %q", code, out, errOut)
	}

	// The schedule's jobs, from the server: one per tick time.
	cl := dial(t, r.addr)
	var times []string
	for j, err := range cl.ListAll(context.Background(), &pb.ListJobsRequest{Labels: map[string]string{job.CronLabel: "tick"}}) {
		if err != nil {
			t.Fatal(err)
		}
		j = waitJob(t, cl.Jobs(), j.GetId(), 20*time.Second)
		if j.GetState() != pb.JobState_JOB_STATE_COMPLETED {
			t.Fatalf("job %s ended %s (%s)", j.GetId(), j.GetState(), j.GetReason())
		}
		times = append(times, j.GetSpec().GetEnv()[job.CronTimeEnv])
	}
	slices.Sort(times)
	if len(times) < 7 {
		t.Fatalf("only %d ticks fired: %q", len(times), times)
	}
	first, err := time.Parse(time.RFC3339, times[0])
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range times {
		if want := first.Add(time.Duration(i) * time.Second).Format(time.RFC3339); s != want {
			t.Fatalf("tick %d is %s, want %s (a duplicate or a gap): %q", i, s, want, times)
		}
	}
	// And what the agent ran: the same ticks, each once.
	b, err := os.ReadFile(ticks)
	if err != nil {
		t.Fatal(err)
	}
	ran := strings.Fields(string(b))
	slices.Sort(ran)
	if !slices.Equal(ran, times) {
		t.Fatalf("the jobs ran for ticks %q, the server has %q", ran, times)
	}

	out, errOut, code := hodei(t, r.addr, "cron", "ls", "-o", "json")
	var list []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0]["paused"] != true ||
		list[0]["last_state"] != "COMPLETED" {
		t.Fatalf("cron ls: exit %d, %s %s", code, out, errOut)
	}
	t.Logf("%d ticks over 5 SIGKILLs of the server, each fired once", len(times))
}

// TestCronCLI: the commands, and bad input named by its flag.
func TestCronCLI(t *testing.T) {
	srv := startServer(t, t.TempDir())
	addr := srv.grpcAddr
	wantRefused(t, addr, "--schedule", "cron", "add", "bad", "--schedule", "61 * * * *", "--", "true")
	wantRefused(t, addr, "--timezone", "cron", "add", "bad", "--schedule", "0 * * * *", "--timezone", "Mars/Base", "--", "true")
	wantRefused(t, addr, "--overlap", "cron", "add", "bad", "--schedule", "0 * * * *", "--overlap", "sometimes", "--", "true")
	wantRefused(t, addr, "--catch-up", "cron", "add", "bad", "--schedule", "0 * * * *", "--catch-up", "most", "--", "true")
	wantRefused(t, addr, "--timeout", "cron", "add", "bad", "--schedule", "0 * * * *", "--timeout", "-5s", "--", "true")
	wantRefused(t, addr, "missing --schedule", "cron", "add", "bad", "--", "true")
	wantRefused(t, addr, "--timezone: empty; leave it out for UTC", "cron", "add", "bad", "--schedule", "0 * * * *", "--timezone", "", "--", "true")
	wantNoJobs(t, addr)

	out, errOut, code := hodei(t, addr, "cron", "add", "nightly", "--schedule", "30 2 * * *", "--timezone", "Europe/Madrid",
		"--overlap", "forbid", "--", "echo", "hi")
	if code != 0 || !strings.HasPrefix(out, "nightly: next run ") {
		t.Fatalf("cron add: exit %d, %q %q", code, out, errOut)
	}
	wantRefused(t, addr, "already exists", "cron", "add", "nightly", "--schedule", "@daily", "--", "true")
	if _, errOut, _ := hodei(t, addr, "cron", "add", "nightly", "--schedule", "@daily", "--", "true"); strings.Contains(errOut, "conflict") {
		t.Errorf("the sentinel's word is printed: %q", errOut)
	}
	out, _, code = hodei(t, addr, "cron", "ls")
	if code != 0 || !strings.Contains(out, "nightly") || !strings.Contains(out, "Europe/Madrid") || !strings.Contains(out, "30 2 * * *") {
		t.Fatalf("cron ls: %q", out)
	}
	id, errOut, code := hodei(t, addr, "cron", "run", "nightly")
	if code != 0 || !job.ValidID(strings.TrimSpace(id)) {
		t.Fatalf("cron run: exit %d, %q %q", code, id, errOut)
	}
	out, _, code = hodei(t, addr, "jobs", "ls", "--label", "hodei.cron=nightly")
	if code != 0 || !strings.Contains(out, strings.TrimSpace(id)) {
		t.Fatalf("jobs ls --label hodei.cron=nightly: %q", out)
	}
	out, _, code = hodei(t, addr, "jobs", "get", strings.TrimSpace(id), "-o", "json")
	if code != 0 || !strings.Contains(out, `"name": "nightly"`) {
		t.Fatalf("a schedule's job is named after it: jobs get: %q", out)
	}
	out, _, code = hodei(t, addr, "cron", "get", "nightly")
	if code != 0 || !strings.Contains(out, strings.TrimSpace(id)) || !strings.Contains(out, "forbid") {
		t.Fatalf("cron get: %q", out)
	}
	if _, errOut, code := hodei(t, addr, "cron", "rm", "nightly"); code != 0 {
		t.Fatalf("cron rm: %q", errOut)
	}
	wantRefused(t, addr, "not found", "cron", "get", "nightly")
}

// TestCronSecrets: a schedule's secret env values are stored sealed (the
// database file never holds them in plain text), shown as *** by `cron
// get`, reach each tick's job, and are masked in its output.
func TestCronSecrets(t *testing.T) {
	dataDir := t.TempDir()
	srv := startServer(t, dataDir)
	addr := srv.grpcAddr
	startAgent(t, addr, t.TempDir())
	const value = "hunter2-cron-secret"
	out, errOut, code := hodei(t, addr, "cron", "add", "withsecret", "--schedule", "@yearly", "--secret-env", "TOKEN="+value,
		"--", "sh", "-c", `echo "got $TOKEN"`)
	if code != 0 {
		t.Fatalf("cron add with --secret-env: exit %d, %q %q", code, out, errOut)
	}
	out, _, _ = hodei(t, addr, "cron", "get", "withsecret", "-o", "json")
	if strings.Contains(out, value) || !strings.Contains(out, `"TOKEN": "***"`) {
		t.Errorf("cron get -o json shows:\n%s", out)
	}
	id, errOut, code := hodei(t, addr, "cron", "run", "withsecret")
	if code != 0 {
		t.Fatalf("cron run: exit %d, %q", code, errOut)
	}
	id = strings.TrimSpace(id)
	if j := waitJob(t, dial(t, addr).Jobs(), id, 30*time.Second); j.GetState() != pb.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("the tick's job ended %s (%s)", j.GetState(), j.GetReason())
	}
	// The agent masks the exact value: *** shows the job had it.
	if out, _, _ := hodei(t, addr, "logs", id); out != "got ***\r\n" {
		t.Errorf("the job's log is %q, want the secret, masked", out)
	}
	srv.kill() // what is in the file now is all there is
	db, err := os.ReadFile(filepath.Join(dataDir, "hodei.db"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(db), value) {
		t.Error("the database file holds the secret value in plain text")
	}
}
