package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store"
)

// TestCLIAgainstRealServer walks the client commands through a real server.
func TestCLIAgainstRealServer(t *testing.T) {
	srv := startServer(t, t.TempDir())
	run := func(args ...string) string {
		t.Helper()
		out, errOut, code := hodei(t, srv.grpcAddr, args...)
		if code != 0 {
			t.Fatalf("hodei %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	// A submit to a tenant that does not exist says how to create it.
	if _, errOut, code := hodei(t, srv.grpcAddr, "submit", "--tenant", "team-a", "--", "true"); code != 1 ||
		!strings.Contains(errOut, `tenant "team-a" does not exist; create it with "hodei tenants set team-a"`) {
		t.Fatalf("submit to a missing tenant: exit %d, %q", code, errOut)
	}
	run("tenants", "set", "--weight", "2", "team-a")
	if table := run("tenants", "ls"); !strings.Contains(table, "team-a") || !strings.Contains(table, "FAIR-SHARE") {
		t.Fatalf("tenants ls:\n%s", table)
	}
	first := strings.TrimSpace(run("submit", "--name", "first", "--tenant", "team-a", "--label", "kind=build", "--priority", "700", "--", "echo", "hi"))
	if !job.ValidID(first) {
		t.Fatalf("submit printed %q, want a job id", first)
	}
	second := strings.TrimSpace(run("submit", "--name", "second", "--after", first, "--", "true"))

	var got map[string]any
	if err := json.Unmarshal([]byte(run("jobs", "get", "-o", "json", first)), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "name", "tenant", "state", "attempt", "priority", "command"} {
		if _, ok := got[k]; !ok {
			t.Errorf("jobs get json lacks %q: %v", k, got)
		}
	}
	for _, k := range []string{"exit_code", "worker"} { // nothing that means nothing yet
		if _, ok := got[k]; ok {
			t.Errorf("a PENDING job's json has %q: %v", k, got)
		}
	}
	if got["id"] != first || got["name"] != "first" || got["tenant"] != "team-a" || got["state"] != "PENDING" {
		t.Fatalf("jobs get = %v", got)
	}

	run("jobs", "cancel", first)
	var list []map[string]any
	if err := json.Unmarshal([]byte(run("jobs", "ls", "--state", "cancelled", "--tenant", "team-a", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0]["id"] != first || list[0]["reason"] != "cancelled by user" {
		t.Fatalf("jobs ls --state cancelled = %v", list)
	}
	// The dependent was cancelled because its dependency was.
	if err := json.Unmarshal([]byte(run("jobs", "ls", "--tenant", "default", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0]["id"] != second || list[0]["state"] != "CANCELLED" || !strings.Contains(list[0]["reason"].(string), first) {
		t.Fatalf("dependent = %v, want CANCELLED naming %s", list, first)
	}
	if table := run("jobs", "ls"); !strings.Contains(table, "STATE") || !strings.Contains(table, first) {
		t.Fatalf("jobs ls table:\n%s", table)
	}
	if out, errOut, code := hodei(t, srv.grpcAddr, "jobs", "cancel", first); code != 0 || out != first+" CANCELLED (it had ended; nothing to cancel)\n" {
		t.Fatalf("second cancel: exit %d, %q %q; want 0 and the state it is in", code, out, errOut)
	}
	if _, errOut, code := hodei(t, srv.grpcAddr, "jobs", "get", "01ARZ3NDEKTSV4RRFFQ69G5FAV"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("get unknown: exit %d, %q", code, errOut)
	}
	if out := run("workers", "ls", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("workers ls = %q, want []", out)
	}

	// A snapshot taken while the server runs is a consistent database.
	snap := filepath.Join(t.TempDir(), "snap.db")
	run("snapshot", "save", snap)
	if err := store.CheckFile(snap); err != nil {
		t.Fatalf("snapshot is inconsistent: %v", err)
	}
	db, err := store.Open(snap, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	jobs, _, err := db.List(t.Context(), job.Filter{})
	if err != nil || len(jobs) != 2 {
		t.Fatalf("snapshot holds %d jobs (%v), want 2", len(jobs), err)
	}
}
