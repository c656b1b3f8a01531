package agent

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAttemptSpoolUnwritable: a job whose spool cannot be written (here
// /dev/full: ENOSPC, as on a full disk) runs to its end; its exit says
// the output was lost, why and where, apart from its Reason.
func TestAttemptSpoolUnwritable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "job-1.out")
	if err := os.Symlink("/dev/full", path); err != nil {
		t.Fatal(err)
	}
	a := mustStartAttempt(t, attemptSpec{Argv: []string{"echo", "hello"}}, attemptOptions{SpoolDir: dir})
	e := waitAttempt(t, a, 10*time.Second)
	wantWrite := "no space left on device (" + path + ")"
	if e.Outcome != exited || e.ExitCode != 0 || e.Reason != "" || e.WriteErr != wantWrite ||
		e.OutputLost != "the agent could not write the job's output: "+wantWrite {
		t.Fatalf("exit = %+v, want exited 0, WriteErr %q and OutputLost saying so", e, wantWrite)
	}
	if w := toWireExit(e).exit(); w.OutputLost != e.OutputLost || w.WriteErr != e.WriteErr {
		t.Fatalf("over the supervisor's wire: %+v, want %+v", w, e)
	}
	if res := resultOf(ref{"job", 1}, e, 0, 0); res.GetOutputLost() != e.OutputLost || res.GetReason() != "" {
		t.Fatalf("result %v, want output_lost %q", res, e.OutputLost)
	}
}

// TestDiskHealthEpisode: failures are one ERROR line per episode; the
// episode ends with the first probe that can be written, in one INFO line.
func TestDiskHealthEpisode(t *testing.T) {
	var logs bytes.Buffer
	spoolDir := t.TempDir()
	h := newDiskHealth(slog.New(slog.NewTextHandler(&logs, nil)), "/data", spoolDir)
	h.recheck() // while it works: nothing written, nothing said
	if _, err := os.Stat(filepath.Join(spoolDir, diskProbeFile)); !os.IsNotExist(err) || logs.Len() != 0 || h.problem() != "" {
		t.Fatalf("recheck while healthy: probe %v, logs %q, problem %q", err, logs.String(), h.problem())
	}
	for range 3 {
		h.fail("job output", "no space left on device (/data/spool/j-1.out)")
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 ||
		!strings.Contains(logs.String(), `data_dir=/data writing="job output" cause="no space left on device (/data/spool/j-1.out)"`) {
		t.Fatalf("logs after 3 failures:\n%s\nwant one ERROR line with the data dir and the cause", logs.String())
	}
	if p := h.problem(); !strings.Contains(p, "/data") || !strings.Contains(p, "no space left on device") {
		t.Fatalf("problem %q", p)
	}
	// The probe cannot be written yet (its file is /dev/full): still failing.
	if err := os.Symlink("/dev/full", filepath.Join(spoolDir, diskProbeFile)); err != nil {
		t.Fatal(err)
	}
	h.recheck()
	if h.problem() == "" || strings.Contains(logs.String(), "level=INFO") {
		t.Fatalf("a probe that failed ended the episode:\n%s", logs.String())
	}
	h.recheck() // the probe's file is a plain one now
	if h.problem() != "" || strings.Count(logs.String(), "level=INFO") != 1 ||
		!strings.Contains(logs.String(), `msg="the agent writes to its data dir again" data_dir=/data`) ||
		!strings.Contains(logs.String(), "failed_writes=3") {
		t.Fatalf("after a probe that succeeded: problem %q, logs:\n%s", h.problem(), logs.String())
	}
	if entries, _ := os.ReadDir(spoolDir); len(entries) != 0 {
		t.Fatalf("the probe left %v", entries)
	}
}
