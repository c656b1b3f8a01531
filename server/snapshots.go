package server

// Scheduled snapshots (serve --snapshot-every D --snapshot-keep N).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Defaults and names of scheduled snapshots.
const (
	// DefaultSnapshotKeep is how many scheduled snapshots are kept.
	DefaultSnapshotKeep = 7
	// SnapshotsDir is their directory in the data dir, the default of
	// Config.SnapshotDir.
	SnapshotsDir = "snapshots"
	// snapshotPrefix and snapshotSuffix frame a scheduled snapshot's name,
	// hodei-20260102T150405Z.db: names sort by time.
	snapshotPrefix = "hodei-"
	snapshotSuffix = ".db"
	snapshotTime   = "20060102T150405Z"
)

// snapshotLoop saves a snapshot every cfg.SnapshotEvery until ctx ends,
// keeping the newest cfg.SnapshotKeep. A failure is logged at ERROR once
// per episode (later ones at DEBUG), and its end at INFO.
func (s *Server) snapshotLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.SnapshotEvery)
	defer t.Stop()
	failed := 0 // failures in a row
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		path, n, removed, err := s.saveScheduled(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && failed == 0:
			s.log.Error("scheduled snapshot failed; retrying at each interval, logged again once it works",
				"dir", s.cfg.SnapshotDir, "err", err)
			failed++
		case err != nil:
			s.log.Debug("scheduled snapshot failed again", "dir", s.cfg.SnapshotDir, "failures", failed+1, "err", err)
			failed++
		default:
			if failed > 0 {
				s.log.Info("scheduled snapshots work again", "failures", failed)
				failed = 0
			}
			s.log.Info("snapshot saved", "path", path, "bytes", n, "took", time.Since(start).Round(time.Millisecond),
				"removed", removed, "keep", s.cfg.SnapshotKeep)
		}
	}
}

// saveScheduled writes one snapshot into the snapshot dir, named by the
// time, through a synced temporary file renamed into place, then removes
// all but the newest SnapshotKeep. It returns the path, its size and how
// many old snapshots it removed.
func (s *Server) saveScheduled(ctx context.Context) (path string, n int64, removed int, err error) {
	dir := s.cfg.SnapshotDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", 0, 0, err
	}
	path = filepath.Join(dir, snapshotPrefix+s.now().UTC().Format(snapshotTime)+snapshotSuffix)
	// Only this server writes here (it holds the data dir): a temporary
	// file left is one a crash cut short, as large as the database.
	removeStaleTemps(dir, s.log)
	f, err := os.CreateTemp(dir, snapshotTemp)
	if err != nil {
		return "", 0, 0, err
	}
	defer os.Remove(f.Name()) // after the rename, a name that no longer exists
	n, err = s.store.Snapshot(ctx, f)
	if err = errors.Join(err, f.Chmod(0o600), f.Sync(), f.Close()); err != nil {
		return "", n, 0, err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", n, 0, err
	}
	d, err := os.Open(dir)
	if err != nil {
		return "", n, 0, err
	}
	if err := errors.Join(d.Sync(), d.Close()); err != nil {
		return "", n, 0, fmt.Errorf("sync %s: %w", dir, err)
	}
	removed, err = pruneSnapshots(dir, s.cfg.SnapshotKeep)
	return path, n, removed, err
}

// snapshotTemp is the pattern of saveScheduled's temporary files.
const snapshotTemp = ".snapshot-*.tmp"

// removeStaleTemps removes the temporary files of saves a crash cut short.
func removeStaleTemps(dir string, log *slog.Logger) {
	stale, _ := filepath.Glob(filepath.Join(dir, snapshotTemp))
	for _, p := range stale {
		if err := os.Remove(p); err == nil {
			log.Info("removed the temporary file of a snapshot a crash cut short", "path", p)
		}
	}
}

// pruneSnapshots removes all but the newest keep scheduled snapshots in
// dir (files named as saveScheduled names them; others are left alone).
func pruneSnapshots(dir string, keep int) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && strings.HasPrefix(n, snapshotPrefix) && strings.HasSuffix(n, snapshotSuffix) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	removed := 0
	var errs []error
	for _, n := range names[:max(0, len(names)-keep)] {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}
