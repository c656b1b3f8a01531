package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/pki"
)

// TestRestartRefusesReplacedIdentityFiles starts a server once (it writes
// its token key, CA and admin token, and an agent is bound), then damages
// one file at a time: each start is refused with a message naming the
// file, where starting would have locked the admin or the agents out.
func TestRestartRefusesReplacedIdentityFiles(t *testing.T) {
	base := t.TempDir()
	cfg := func(dir string) Config {
		return Config{DataDir: dir, GRPCAddr: "127.0.0.1:0", HTTPAddr: "-"}
	}
	first := func(t *testing.T) string {
		dir := filepath.Join(t.TempDir(), "data")
		srv, err := New(context.Background(), cfg(dir))
		if err != nil {
			t.Fatal(err)
		}
		// A bound agent makes the CA one the database depends on.
		if err := srv.store.BindAgent(context.Background(), &job.AgentBinding{WorkerID: "w1", Serial: "1", JoinedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	other := filepath.Join(base, "other")
	if srv, err := New(context.Background(), cfg(other)); err != nil {
		t.Fatal(err)
	} else {
		srv.Close()
	}
	copyFile := func(t *testing.T, from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   string
	}{
		{"TokenKeyMissing", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, TokenKeyFile)) }, "token.key is missing"},
		{"TokenKeyOfAnotherServer", func(t *testing.T, dir string) {
			copyFile(t, filepath.Join(other, TokenKeyFile), filepath.Join(dir, TokenKeyFile))
			os.Remove(filepath.Join(dir, AdminTokenFile)) // as the message for a foreign admin token advises
		}, "token.key is not the one this database was used with"},
		{"AdminTokenOfAnotherServer", func(t *testing.T, dir string) {
			copyFile(t, filepath.Join(other, AdminTokenFile), filepath.Join(dir, AdminTokenFile))
		}, "does not hold a token of this server"},
		{"CAMissing", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, TLSDir, pki.CAFile)) }, "ca.pem is missing"},
		{"CAOfAnotherServer", func(t *testing.T, dir string) {
			for _, f := range []string{pki.CAFile, pki.CAKeyFile} {
				copyFile(t, filepath.Join(other, TLSDir, f), filepath.Join(dir, TLSDir, f))
			}
		}, "ca.pem is not the one this database was used with"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := first(t)
			tc.damage(t, dir)
			srv, err := New(context.Background(), cfg(dir))
			if err == nil {
				srv.Close()
				t.Fatalf("the server started; want it refused with %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.HasSuffix(err.Error(), ": conflict") {
				t.Fatalf("error %q, want %q (and no sentinel's word after it)", err, tc.want)
			}
		})
	}
	t.Run("UntouchedStarts", func(t *testing.T) {
		dir := first(t)
		srv, err := New(context.Background(), cfg(dir))
		if err != nil {
			t.Fatal(err)
		}
		srv.Close()
	})
}
