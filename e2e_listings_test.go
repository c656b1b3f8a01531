package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/store"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// fillHistory stores, straight into the database of a stopped server, 300
// jobs that completed two days ago (named old-0 … old-299, a second apart)
// and one job that has waited three hours for a worker labelled
// zone=nowhere. It returns the ids of both.
func fillHistory(t *testing.T, path string) (old []string, waiting string) {
	t.Helper()
	db, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := time.Now().Add(-48 * time.Hour)
	var jobs []*job.Job
	for i := range 300 {
		created := start.Add(time.Duration(i) * time.Second)
		spec := job.Spec{Name: fmt.Sprintf("old-%d", i), Command: []string{"true"}, Priority: job.DefaultPriority}
		spec.Normalize()
		j := &job.Job{ID: storetest.IDAt(created, uint64(i)), Spec: spec, State: job.Pending, Attempt: 1, CreatedAt: created}
		jobs = append(jobs, j)
		old = append(old, j.ID)
	}
	created := time.Now().Add(-3 * time.Hour)
	spec := job.Spec{Name: "old-waiting", Command: []string{"true"}, Priority: job.DefaultPriority, Selector: map[string]string{"zone": "nowhere"}}
	spec.Normalize()
	w := &job.Job{ID: storetest.IDAt(created, 1), Spec: spec, State: job.Pending, Attempt: 1, CreatedAt: created}
	storetest.MustInsert(t, db, append(jobs, w)...)
	for _, to := range []job.State{job.Scheduled, job.Completed} {
		var us []job.Update
		for i, j := range jobs {
			next := j.Clone()
			next.State, next.Worker = to, "w-gone"
			if to == job.Completed {
				next.FinishedAt = j.CreatedAt.Add(time.Second)
			}
			us = append(us, job.Change(j, next))
			jobs[i] = next
		}
		errs, err := db.Apply(context.Background(), us)
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return old, w.ID
}

// listed runs `jobs ls ARGS -o json` and returns the jobs' ids.
func listed(t *testing.T, addr string, args ...string) []string {
	t.Helper()
	out, errOut, code := hodei(t, addr, append([]string{"jobs", "ls", "-o", "json"}, args...)...)
	var views []struct {
		ID string `json:"id"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &views) != nil {
		t.Fatalf("jobs ls %v: exit %d, %s\n%s", args, code, errOut, out)
	}
	var ids []string
	for _, v := range views {
		ids = append(ids, v.ID)
	}
	return ids
}

// newestFirst returns ids in reverse order.
func newestFirst(ids []string) []string {
	out := slices.Clone(ids)
	slices.Reverse(out)
	return out
}

// shortest returns the shortest prefix of id that no other of ids starts,
// in lower case.
func shortest(id string, ids []string) string {
	for n := 1; n < len(id); n++ {
		if !slices.ContainsFunc(ids, func(o string) bool { return o != id && strings.HasPrefix(o, id[:n]) }) {
			return strings.ToLower(id[:n])
		}
	}
	return strings.ToLower(id)
}

func TestListingsEndToEnd(t *testing.T) {
	dir := jobDir(t)
	data := filepath.Join(dir, "server")
	startServer(t, data).kill()
	old, waiting := fillHistory(t, filepath.Join(data, "hodei.db"))
	srv := startServer(t, data)
	addr := srv.grpcAddr
	agent := startAgent(t, addr, filepath.Join(dir, "agent"))
	must := func(args ...string) string {
		t.Helper()
		out, errOut, code := hodei(t, addr, args...)
		if code != 0 {
			t.Fatalf("hodei %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}

	// Work of the last minutes: two runs of a nightly job that completed,
	// a job that waits for a zone no worker has, with env and a secret.
	must("run", "--name", "nightly-1", "--", "echo", "hi-from-nightly-1")
	must("run", "--name", "nightly-2", "--label", "kind=build", "--", "true")
	stuck := strings.TrimSpace(must("submit", "--name", "stuck", "--selector", "zone=nowhere",
		"--env", "PLAIN=plain-value-1", "--secret-env", "TOKEN=secret-value-123", "--", "true"))
	recent := listed(t, addr, "--since", "10m")
	if len(recent) != 3 || recent[0] != stuck {
		t.Fatalf("jobs ls --since 10m = %v, want the 3 jobs just made, newest first", recent)
	}
	nightly1, nightly2 := recent[2], recent[1]

	t.Run("DefaultView", func(t *testing.T) {
		// Newest first, what has not finished and what finished in the
		// last hour: not the 300 of two days ago, but the one that has
		// waited since.
		want := []string{stuck, nightly2, nightly1, waiting}
		if got := listed(t, addr); !slices.Equal(got, want) {
			t.Errorf("jobs ls = %v, want %v", got, want)
		}
		out, errOut, code := hodei(t, addr, "jobs", "ls", "--limit", "2")
		if code != 0 || errOut != "2 of 4 shown (--all, --limit N, --state …)\n" {
			t.Errorf("jobs ls --limit 2: exit %d, stderr %q", code, errOut)
		}
		if rows := strings.Split(strings.TrimSpace(out), "\n"); len(rows) != 3 || !strings.HasPrefix(rows[1], stuck) {
			t.Errorf("jobs ls --limit 2:\n%s", out)
		}
		if _, errOut, _ := hodei(t, addr, "jobs", "ls"); errOut != "" {
			t.Errorf("jobs ls showing all 4 says %q on stderr", errOut)
		}
		_, errOut, _ = hodei(t, addr, "jobs", "ls", "--state", "completed")
		if errOut != "50 of 302 shown (--all, --limit N, --state …)\n" {
			t.Errorf("jobs ls --state completed: stderr %q", errOut)
		}
		all := listed(t, addr, "--all")
		if len(all) != 304 || all[0] != stuck || all[303] != old[0] {
			t.Errorf("jobs ls --all: %d jobs from %v to %v", len(all), all[0], all[len(all)-1])
		}
	})

	t.Run("Filters", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"--name", "nightly-*"}, []string{nightly2, nightly1}},
			{[]string{"--name", "old-29?", "--all"}, newestFirst(old[290:300])},
			{[]string{"--name", "old-1[0-2]", "--state", "completed"}, []string{old[12], old[11], old[10]}},
			{[]string{"--since", "10m", "--state", "completed"}, []string{nightly2, nightly1}},
			{[]string{"--since", "4h"}, []string{stuck, nightly2, nightly1, waiting}},
			{[]string{"--label", "kind=build"}, []string{nightly2}},
			{[]string{"--tenant", "default", "--state", "pending"}, []string{stuck, waiting}},
			{[]string{"--tenant", "other"}, nil},
			{[]string{"--oldest-first", "--limit", "2"}, []string{waiting, nightly1}},
		} {
			if got := listed(t, addr, tc.args...); !slices.Equal(got, tc.want) {
				t.Errorf("jobs ls %v = %v, want %v", tc.args, got, tc.want)
			}
		}
	})

	t.Run("Get", func(t *testing.T) {
		var pending, done map[string]any
		if err := json.Unmarshal([]byte(must("jobs", "get", "-o", "json", stuck)), &pending); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"exit_code", "worker", "started", "finished"} {
			if _, ok := pending[k]; ok {
				t.Errorf("PENDING job's JSON has %s: %v", k, pending[k])
			}
		}
		if fmt.Sprint(pending["env"]) != "[PLAIN]" || fmt.Sprint(pending["secret_env"]) != "[TOKEN]" || fmt.Sprint(pending["selector"]) != "map[zone:nowhere]" {
			t.Errorf("jobs get json: env %v, secret_env %v, selector %v", pending["env"], pending["secret_env"], pending["selector"])
		}
		if err := json.Unmarshal([]byte(must("jobs", "get", "-o", "json", nightly1)), &done); err != nil {
			t.Fatal(err)
		}
		if done["exit_code"] != 0.0 || done["worker"] != agent.id {
			t.Errorf("completed job: exit_code %v, worker %v", done["exit_code"], done["worker"])
		}
		table := must("jobs", "get", stuck)
		for _, want := range []string{"Env:                PLAIN", "Secret env:         TOKEN (values hidden)", "Selector:           zone=nowhere", "Command:            true"} {
			if !strings.Contains(table, want) {
				t.Errorf("jobs get lacks %q:\n%s", want, table)
			}
		}
		for _, out := range []string{table, fmt.Sprint(pending)} {
			for _, value := range []string{"plain-value-1", "secret-value-123"} {
				if strings.Contains(out, value) {
					t.Errorf("jobs get shows the value %q:\n%s", value, out)
				}
			}
		}
	})

	t.Run("Prefixes", func(t *testing.T) {
		all := listed(t, addr, "--all")
		p := shortest(nightly1, all)
		if got := listed(t, addr, "--name", "nightly-1"); len(got) != 1 {
			t.Fatalf("nightly-1: %v", got)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(must("jobs", "get", "-o", "json", p)), &v); err != nil || v["id"] != nightly1 {
			t.Fatalf("jobs get %s = %v (%v), want %s", p, v["id"], err, nightly1)
		}
		if out := must("logs", p); !strings.Contains(out, "hi-from-nightly-1") {
			t.Errorf("logs %s = %q", p, out)
		}
		after := strings.TrimSpace(must("submit", "--after", p, "--selector", "zone=nowhere", "--", "true"))
		if err := json.Unmarshal([]byte(must("jobs", "get", "-o", "json", after)), &v); err != nil || fmt.Sprint(v["depends_on"]) != "["+nightly1+"]" {
			t.Errorf("submit --after %s: depends_on %v (%v), want [%s]", p, v["depends_on"], err, nightly1)
		}
		must("jobs", "cancel", after)
		_, errOut, code := hodei(t, addr, "jobs", "get", "0")
		if code != 1 || !strings.Contains(errOut, `hodei: "0" is the start of 305 job ids; give more of the one you mean:`) ||
			!strings.Contains(errOut, "\n  "+old[0]+"  old-0  COMPLETED\n") || !strings.HasSuffix(errOut, "\n  and 295 more\n") {
			t.Errorf("ambiguous: exit %d, stderr %q", code, errOut)
		}
		_, errOut, code = hodei(t, addr, "logs", "7zzz")
		if code != 1 || errOut != "hodei: no job id starts with \"7zzz\"\n" {
			t.Errorf("no match: exit %d, stderr %q", code, errOut)
		}
		_, errOut, code = hodei(t, addr, "jobs", "get", "01!")
		if code != 2 || !strings.HasPrefix(errOut, `hodei: ID: "01!" is not a job id or the start of one`) {
			t.Errorf("bad prefix: exit %d, stderr %q", code, errOut)
		}

		// An array: its tasks by ARRAY[INDEX] with a prefix of its id;
		// cancelled by a prefix.
		var sub struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(must("submit", "-o", "json", "--array", "0-4", "--selector", "zone=nowhere", "--", "true")), &sub); err != nil {
			t.Fatal(err)
		}
		ap := strings.ToLower(sub.ID[:len(sub.ID)-2]) // its tasks differ from it in the last characters only
		if err := json.Unmarshal([]byte(must("jobs", "get", "-o", "json", ap+"[3]")), &v); err != nil || v["array_index"] != 3.0 {
			t.Errorf("jobs get %s[3] = %v, %v", ap, v, err)
		}
		if got := listed(t, addr, "--array", ap); len(got) != 5 {
			t.Errorf("jobs ls --array %s = %v", ap, got)
		}
		if out := must("jobs", "cancel", "--array", ap); strings.Count(out, "\n") != 5 {
			t.Errorf("jobs cancel --array %s printed %q", ap, out)
		}

		// A pipeline and a worker.
		file := filepath.Join(dir, "p.yaml")
		if err := os.WriteFile(file, []byte("name: p\nsteps:\n  - name: wait\n    selector: {zone: nowhere}\n    command: [\"true\"]\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		pid := strings.TrimSpace(must("pipeline", "run", file))
		if out := must("pipeline", "get", strings.ToLower(pid[:12])); !strings.Contains(out, pid) {
			t.Errorf("pipeline get by prefix:\n%s", out)
		}
		if out := must("pipeline", "cancel", strings.ToLower(pid[:12])); !strings.Contains(out, "CANCELLED") {
			t.Errorf("pipeline cancel by prefix:\n%s", out)
		}
		if out := must("workers", "drain", strings.ToUpper(agent.id[:5])); !strings.Contains(out, agent.id) || !strings.Contains(out, "DRAINING") {
			t.Errorf("workers drain by prefix:\n%s", out)
		}
		_, errOut, code = hodei(t, addr, "workers", "drain", "nope")
		if code != 1 || !strings.Contains(errOut, "nope") {
			t.Errorf("drain of no worker: exit %d, %q", code, errOut)
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		// A pending job is CANCELLED, and a second cancel says it had
		// ended, as for one that completed, which is left as it was.
		// Neither is an error.
		for i, want := range []string{" CANCELLED\n", " CANCELLED (it had ended; nothing to cancel)\n"} {
			if out := must("jobs", "cancel", strings.ToLower(stuck)); out != stuck+want {
				t.Errorf("jobs cancel #%d = %q, want %q", i+1, out, stuck+want)
			}
		}
		if out := must("jobs", "cancel", nightly2); out != nightly2+" COMPLETED (it had ended; nothing to cancel)\n" {
			t.Errorf("cancel of a completed job = %q", out)
		}
	})
}

func TestCancelRunningPrintsCancelling(t *testing.T) {
	dir := jobDir(t)
	srv := startServer(t, filepath.Join(dir, "server"))
	startAgent(t, srv.grpcAddr, filepath.Join(dir, "agent"))
	out, errOut, code := hodei(t, srv.grpcAddr, "submit", "--", "sleep", "60")
	if code != 0 {
		t.Fatalf("submit: %s", errOut)
	}
	id := strings.TrimSpace(out)
	jobs := dial(t, srv.grpcAddr).Jobs()
	eventually(t, 30*time.Second, "the job to run", func() bool {
		j, err := jobs.Get(context.Background(), &pb.GetJobRequest{Id: id})
		return err == nil && j.GetState() == pb.JobState_JOB_STATE_RUNNING
	})
	out, errOut, code = hodei(t, srv.grpcAddr, "jobs", "cancel", id)
	if code != 0 || out != id+" CANCELLING (its agent stops it; it ends CANCELLED)\n" {
		t.Fatalf("cancel of a running job: exit %d, %q %q", code, out, errOut)
	}
	if j := waitJob(t, jobs, id, 30*time.Second); j.GetState() != pb.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("job ended %s", j.GetState())
	}
	out, _, code = hodei(t, srv.grpcAddr, "jobs", "cancel", id)
	if code != 0 || out != id+" CANCELLED (it had ended; nothing to cancel)\n" {
		t.Fatalf("second cancel: exit %d, %q", code, out)
	}
}
