package agent

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// diskProbeSize is what a probe writes while the data dir is failing: a
// write of that much that succeeds ends the episode, so that a disk with
// a page or two free does not flap between failing and writing with each
// small job (store/health.go probes the same way).
const diskProbeSize = 64 << 10

// diskProbeFile is the probe's file in the spool dir.
const diskProbeFile = ".probe"

// diskHealth tracks whether the agent's data dir takes what the agent and
// its supervisor write there: the jobs' output spools and the journal of
// results. The first failure of an episode is logged at error level with
// the dir and the cause, and the end of the episode at info level with how
// long it lasted and how many writes failed; nothing in between, so a full
// disk is one line however many jobs lose their output. Each job says its
// own loss in its result (output_lost). Safe for concurrent use.
type diskHealth struct {
	log  *slog.Logger
	dir  string // the data dir, named in the log
	path string // the probe's file
	now  func() time.Time

	mu     sync.Mutex // guards the fields below
	cause  string     // why the last write failed; "" while writes succeed
	since  time.Time  // when the episode began
	failed int        // failed writes in this episode
}

func newDiskHealth(log *slog.Logger, dataDir, spoolDir string) *diskHealth {
	return &diskHealth{log: log, dir: dataDir, path: filepath.Join(spoolDir, diskProbeFile), now: time.Now}
}

// fail records a failed write of what (job output, the result journal)
// and its cause; the first of an episode is logged at error level.
func (h *diskHealth) fail(what, cause string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cause == "" {
		h.since, h.failed = h.now(), 0
		h.log.Error("the agent cannot write to its data dir: jobs run, but the output they write meanwhile is lost (their results say so); "+
			"free space on its disk (or fix the device)", "data_dir", h.dir, "writing", what, "cause", cause)
	}
	h.cause = what + ": " + cause
	h.failed++
}

// recheck, while failing, writes the probe and ends the episode when it
// succeeds; it does nothing while writes succeed. The agent calls it as
// each attempt ends, so that the data dir is known to work again with the
// first job after space was freed.
func (h *diskHealth) recheck() {
	h.mu.Lock()
	failing := h.cause != ""
	h.mu.Unlock()
	if !failing {
		return
	}
	if err := writeProbe(h.path); err != nil {
		return // still failing: its cause is the jobs' to say
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cause == "" {
		return
	}
	h.log.Info("the agent writes to its data dir again", "data_dir", h.dir,
		"after", h.now().Sub(h.since).Round(time.Millisecond), "failed_writes", h.failed)
	h.cause, h.since, h.failed = "", time.Time{}, 0
}

// problem is why the data dir fails, for the server to show; "" while it
// works.
func (h *diskHealth) problem() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cause == "" {
		return ""
	}
	return fmt.Sprintf("cannot write its data dir %s (%s)", h.dir, h.cause)
}

// writeProbe writes diskProbeSize bytes to path, syncs and removes it.
func writeProbe(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	_, err = f.Write(make([]byte, diskProbeSize))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
