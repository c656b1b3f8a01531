package server

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestScheduledSaveRemovesStaleTemps: a server killed while it wrote a
// scheduled snapshot leaves its temporary file, as large as the database;
// the next scheduled save removes it (only this server writes there), so
// that a crash loop under --snapshot-every does not fill the disk.
func TestScheduledSaveRemovesStaleTemps(t *testing.T) {
	snaps := t.TempDir()
	s := setup(t, func(c *Config) { c.SnapshotDir, c.SnapshotKeep = snaps, 2 })
	stale := filepath.Join(snaps, ".snapshot-3516353747.tmp")
	if err := os.WriteFile(stale, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	path, _, _, err := s.srv.saveScheduled(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("%s, left by a crash, is still there after a scheduled save", filepath.Base(stale))
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the save itself: %v", err)
	}
}
