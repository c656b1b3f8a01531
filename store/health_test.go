package store

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// TestHealthEpisode: failed commits make one failing episode, logged once
// at error level with the cause and the file however many commits fail;
// the first commit that succeeds ends it with one info line saying how
// long and how many; the next failure is a new episode.
func TestHealthEpisode(t *testing.T) {
	var out bytes.Buffer
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	h := &health{log: slog.New(slog.NewTextHandler(&out, nil)), path: "/srv/hodei/hodei.db", now: func() time.Time { return now }}
	fail := fmt.Errorf("commit: %w: %w", job.ErrUnwritable,
		&os.PathError{Op: "write", Path: "/srv/hodei/hodei.db", Err: syscall.ENOSPC})
	h.observe(nil, 0)
	if h.failing() || out.Len() != 0 {
		t.Fatalf("a commit on a healthy store: failing %v, logged %q", h.failing(), out.String())
	}
	if healed := h.healedChan(); !isClosed(healed) || h.probeLen() != probeSize {
		t.Fatalf("a healthy store: healed closed %v, probe %d bytes", isClosed(healed), h.probeLen())
	}
	for i := range 3 {
		h.observe(fail, (i+1)<<20) // refused commits of 1, 2 and 3 MiB
		now = now.Add(time.Second)
	}
	healed := h.healedChan()
	if isClosed(healed) || h.probeLen() != 6<<20 {
		t.Fatalf("failing after refusing 3 MiB: healed closed %v, probe %d bytes, want twice the largest refusal", isClosed(healed), h.probeLen())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "level=ERROR") ||
		!strings.Contains(lines[0], `cause="no space left on device"`) || !strings.Contains(lines[0], "path=/srv/hodei/hodei.db") {
		t.Fatalf("three failed commits logged:\n%s", out.String())
	}
	if got := h.get(); got.Err == nil || got.Failed != 3 || !got.Since.Equal(now.Add(-3*time.Second)) {
		t.Fatalf("health after three failures = %+v", got)
	}
	out.Reset()
	h.observe(nil, 0)
	if !isClosed(healed) || h.probeLen() != probeSize {
		t.Fatalf("recovered: healed closed %v, probe %d bytes", isClosed(healed), h.probeLen())
	}
	h.observe(nil, 0)
	if h.failing() || strings.Count(out.String(), "\n") != 1 || !strings.Contains(out.String(), "level=INFO") ||
		!strings.Contains(out.String(), "after=3s failed_commits=3") {
		t.Fatalf("recovery: failing %v, logged:\n%s", h.failing(), out.String())
	}
	out.Reset()
	h.observe(fail, 100)
	if h.probeLen() != probeSize || isClosed(h.healedChan()) {
		t.Fatalf("a new episode after small refusals: probe %d bytes, healed closed %v", h.probeLen(), isClosed(h.healedChan()))
	}
	if !h.failing() || strings.Count(out.String(), "level=ERROR") != 1 {
		t.Fatalf("a new episode logged:\n%s", out.String())
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
