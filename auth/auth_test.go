package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRoles spells the role table out, so that a change to it is a change
// to this test too.
func TestRoles(t *testing.T) {
	all := []Permission{ReadJobs, Submit, Cancel, ReadTenants, ManageTenants, ManageWorkers, Snapshot,
		ManageTokens, ReadAudit, Metrics, Reflection, WhoAmI, Join, RunJobs}
	want := map[Role][]Permission{
		Admin:     {ReadJobs, Submit, Cancel, ReadTenants, ManageTenants, ManageWorkers, Snapshot, ManageTokens, ReadAudit, Metrics, Reflection, WhoAmI},
		Operator:  {ReadJobs, Cancel, ReadTenants, ManageTenants, ManageWorkers, Snapshot, Metrics, WhoAmI},
		Submitter: {ReadJobs, Submit, Cancel, ReadTenants, WhoAmI},
		Viewer:    {ReadJobs, ReadTenants, Metrics, WhoAmI},
		Agent:     {Join, RunJobs, WhoAmI},
	}
	for role, perms := range want {
		for _, p := range all {
			has := false
			for _, q := range perms {
				has = has || q == p
			}
			if role.Can(p) != has {
				t.Errorf("%s.Can(%s) = %v, want %v", role, p, role.Can(p), has)
			}
		}
	}
	scoped := &Identity{Role: Operator, Tenants: []string{"a"}}
	if scoped.Allow(Snapshot) == nil || scoped.Allow(Cancel) != nil {
		t.Error("a scoped operator may cancel but not take snapshots")
	}
	if !scoped.Sees("a") || scoped.Sees("b") || !(&Identity{Role: Viewer}).Sees("b") {
		t.Error("Sees")
	}
}

func TestIssueAndVerify(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := NewAuthority(key, func() time.Time { return now })
	text, c, err := a.Issue(Submitter, []string{"t1"}, "ci", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Verify(text)
	if err != nil || got.ID != c.ID || got.Role != Submitter || got.Tenants[0] != "t1" || got.Name != "ci" {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := NewAuthority(other, func() time.Time { return now }).Verify(text); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("another key's authority accepted the token: %v", err)
	}
	later := NewAuthority(key, func() time.Time { return now.Add(2 * time.Hour) })
	if _, err := later.Verify(text); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("an expired token was accepted: %v", err)
	}
	if _, _, err := a.Issue("root", nil, "x", time.Hour); err == nil {
		t.Error("a token of an unknown role was issued")
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k", "token.key")
	k1, created, err := LoadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	k2, created, err := LoadOrCreateKey(path)
	if err != nil || created || !k1.Equal(k2) {
		t.Fatalf("reload: %v %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
}
