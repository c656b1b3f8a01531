package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/server"
	"github.com/hodei-jobs/hodei/store"
)

func TestDescribeSnapshotCounts(t *testing.T) {
	got := describeSnapshot(store.SnapshotInfo{Size: 4096, Jobs: 1, Tenants: 1, Pipelines: 0, Tokens: 2})
	if !strings.HasSuffix(got, "; 1 job, 1 tenant, 0 pipelines, 2 tokens") {
		t.Errorf("describeSnapshot = %q", got)
	}
}

// TestMissingKeyFilesWording: restore's warning about a missing secrets
// key neither claims sealed secrets (the key is recorded at the first
// start, secrets or not) nor nests parentheses.
func TestMissingKeyFilesWording(t *testing.T) {
	dir := t.TempDir()
	missing := missingKeyFiles(dir, store.SnapshotInfo{NeedsSecretsKey: true})
	if len(missing) != 1 {
		t.Fatalf("missing = %q", missing)
	}
	m := missing[0]
	if !strings.HasPrefix(m, filepath.Join(dir, server.SecretsKeyName)+" (") || strings.Count(m, "(") != 1 || strings.Count(m, ")") != 1 {
		t.Errorf("nested or missing parentheses: %q", m)
	}
	if strings.Contains(m, "are sealed with it") || !strings.Contains(m, "if any") {
		t.Errorf("claims sealed secrets: %q", m)
	}
	if err := os.WriteFile(filepath.Join(dir, server.SecretsKeyName), make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	if missing := missingKeyFiles(dir, store.SnapshotInfo{NeedsSecretsKey: true}); len(missing) != 0 {
		t.Errorf("with the key in place: %q", missing)
	}
}
