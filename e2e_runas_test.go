package main

import (
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestJobsRunAsTenantUser runs jobs on a root agent: as the agent's default
// user, as their tenant's run-as user, and as root only when both the
// tenant (--run-as root) and the agent (--allow-root) consent.
func TestJobsRunAsTenantUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("an agent switches users only when it runs as root; run the end-to-end tests as root to cover it (CI does)")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("user nobody: %v (the test needs it on this host)", err)
	}
	groups, err := nobody.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := cluster(t)
	addr := srv.grpcAddr
	mustRun(t, addr, "tenants", "set", "batch", "--run-as", "nobody")
	mustRun(t, addr, "tenants", "set", "ops", "--run-as", "root")
	if got := mustRun(t, addr, "tenants", "get", "batch"); !strings.Contains(got, "Run as:      nobody\n") {
		t.Fatalf("tenants get batch:\n%s\nwant a line Run as: nobody", got)
	}

	t.Run("DefaultUser", func(t *testing.T) {
		if got := mustRun(t, addr, "run", "--no-pty", "--", "id", "-un"); got != "nobody\n" {
			t.Fatalf("a default-tenant job runs as %q, want the agent's --default-user nobody", got)
		}
	})
	t.Run("TenantUser", func(t *testing.T) {
		got := mustRun(t, addr, "run", "--tenant", "batch", "--no-pty", "--", "sh", "-c", "id -u; id -G")
		uid, gids, _ := strings.Cut(strings.TrimSpace(got), "\n")
		if uid != nobody.Uid {
			t.Errorf("id -u = %q, want nobody's uid %s", uid, nobody.Uid)
		}
		if g := strings.Fields(gids); !sameSet(g, groups) {
			t.Errorf("id -G = %v, want nobody's groups %v", g, groups)
		}
	})
	t.Run("RootRefusedWithoutAllowRoot", func(t *testing.T) {
		id := strings.TrimSpace(mustRun(t, addr, "submit", "--tenant", "ops", "--", "id", "-u"))
		j := waitJob(t, dial(t, addr).Jobs(), id, 30*time.Second)
		want := "tenant ops runs jobs as root; start the agent with --allow-root to allow it"
		if j.GetState() != pb.JobState_JOB_STATE_FAILED || !strings.Contains(j.GetReason(), want) {
			t.Fatalf("job %s %q, want FAILED with %q", j.GetState(), j.GetReason(), want)
		}
		if got := mustRun(t, addr, "jobs", "get", id); !strings.Contains(got, want) {
			t.Fatalf("jobs get:\n%s\nwant the reason %q", got, want)
		}
	})
	t.Run("RootWithBothConsents", func(t *testing.T) {
		startAgent(t, addr, t.TempDir(), "--allow-root", "--labels", "root=allowed")
		got := mustRun(t, addr, "run", "--tenant", "ops", "--selector", "root=allowed", "--no-pty", "--", "id", "-u")
		if got != "0\n" {
			t.Fatalf("id -u = %q, want 0 on an agent with --allow-root", got)
		}
	})
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// jobDir returns a temporary directory the test's jobs can write to: on an
// agent running as root they run as nobody, and t.TempDir is root's alone.
func jobDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	// The parent is the test's own temporary directory, also 0700.
	for path, mode := range map[string]os.FileMode{filepath.Dir(dir): 0o711, dir: 0o777} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestTenantsWithDynamicUsersCannotReadEachOther runs a job of tenant b
// holding a secret, and a job of tenant a that reads every process's
// environment it can: on an agent with --default-user dynamic they run as
// different users, so a finds nothing of b's.
func TestTenantsWithDynamicUsersCannotReadEachOther(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("an agent switches users only when it runs as root; run the end-to-end tests as root to cover it (CI does)")
	}
	srv, _ := cluster(t, "--default-user", "dynamic")
	addr := srv.grpcAddr
	mustRun(t, addr, "tenants", "set", "a")
	mustRun(t, addr, "tenants", "set", "b")
	dir := jobDir(t)
	flag := filepath.Join(dir, "b-running")
	id := strings.TrimSpace(mustRun(t, addr, "submit", "--tenant", "b", "--secret-env", "S=tenant-b-secret-1234",
		"--", "sh", "-c", "echo go > "+flag+"; exec sleep 30"))
	waitFile(t, flag, 30*time.Second)
	got := mustRun(t, addr, "run", "--tenant", "a", "--no-pty", "--", "sh", "-c",
		`id -u; for p in /proc/[0-9]*; do cat $p/environ 2>/dev/null; done | tr '\0' '\n' | grep -c tenant-b-secret || true`)
	uidA, found, _ := strings.Cut(strings.TrimSpace(got), "\n")
	if found != "0" {
		t.Fatalf("tenant a's job read tenant b's environment %s times", found)
	}
	uidB := strings.TrimSpace(mustRun(t, addr, "run", "--tenant", "b", "--no-pty", "--", "id", "-u"))
	if uidA == uidB || uidA == "0" {
		t.Fatalf("tenants a and b run as uids %s and %s, want two of their own", uidA, uidB)
	}
	mustRun(t, addr, "jobs", "cancel", id)
}
