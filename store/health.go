package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Health is whether the store commits. A failing store (a full disk, an
// I/O error) answers every write with an error wrapping job.ErrUnwritable
// and keeps serving reads; it recovers by itself with the first commit
// that succeeds once there is room again, with no restart.
type Health struct {
	// Err is the cause of the last failed commit while the store is
	// failing; nil while it commits.
	Err error
	// Since is when the store started failing (zero while it commits).
	Since time.Time
	// Failed counts the commits that failed since then.
	Failed uint64
}

// probeSize is the least value every commit writes while the store is
// failing (meta/probe; deleted by the first commit after it recovers): a
// commit that succeeds while failing has proved room for this much more,
// so a disk with a few free pages left does not flap between failing and
// committing with every small write. A refused commit larger than that
// raises the probe to twice its size (its records, their index entries and
// half-full pages), up to maxProbeSize: the pages a large refused commit
// wrote are free again, and small commits would otherwise fit in them and
// end the episode while the disk is still too full for that commit.
const (
	probeSize    = 64 << 10
	maxProbeSize = 64 << 20
)

var probeKey = []byte("probe")

// health tracks the failing episodes of the commit loop: the first failed
// commit of an episode is logged at error level with its cause and the
// file, the first commit that succeeds after it at info level with how
// long and how many commits failed. Nothing in between is logged, so a
// full disk is one line however many writes it refuses.
type health struct {
	log  *slog.Logger
	path string
	now  func() time.Time

	mu      sync.Mutex // guards state, refused and healed
	state   Health
	refused int           // the largest refused commit of this episode, in request bytes
	healed  chan struct{} // closed when the store commits again; nil while it commits

	probed bool // the probe value is in the file; only the commit loop uses it
}

// get returns the current state.
func (h *health) get() Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state
}

// failing reports whether the last commit failed.
func (h *health) failing() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state.Err != nil
}

// observe records the result of one commit: err nil for a commit that
// succeeded, else why the file could not be written and how many request
// bytes the refused commit held.
func (h *health) observe(err error, size int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.refused = max(h.refused, size)
		if h.state.Err == nil {
			h.state.Since = h.now()
			h.state.Failed = 0
			h.healed = make(chan struct{})
			h.log.Error("the store cannot write its database: writes are refused until it can; free space on the data disk (or fix the device)",
				"path", h.path, "cause", Cause(err), "err", err)
		}
		h.state.Err = err
		h.state.Failed++
		return
	}
	if h.state.Err != nil {
		h.log.Info("the store writes its database again", "path", h.path,
			"after", h.now().Sub(h.state.Since).Round(time.Millisecond), "failed_commits", h.state.Failed)
		h.state, h.refused = Health{}, 0
		close(h.healed)
		h.healed = nil
	}
}

// closedChan is what healedChan returns while the store commits.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// healedChan returns a channel closed once the store commits: at once
// while it does, else when the current failing episode ends.
func (h *health) healedChan() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.healed == nil {
		return closedChan
	}
	return h.healed
}

// probeLen is the size of the probe value while failing.
func (h *health) probeLen() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return min(max(probeSize, 2*h.refused), maxProbeSize)
}

// probe writes (while failing) or removes (after) the probe value in tx.
// It runs in the commit loop's transaction, after every request.
func (h *health) probe(tx *bolt.Tx, failing bool) error {
	switch {
	case failing:
		return tx.Bucket(bucketMeta).Put(probeKey, make([]byte, h.probeLen()))
	case h.probed:
		return tx.Bucket(bucketMeta).Delete(probeKey)
	}
	return nil
}

// committed notes that the transaction probe wrote into committed.
func (h *health) committed(failing bool) { h.probed = failing }

// Cause is the operating system's words for why err could not be written
// ("no space left on device", "input/output error"), or err's own text
// when it carries no errno.
func Cause(err error) string {
	if errno, ok := errors.AsType[syscall.Errno](err); ok {
		return errno.Error()
	}
	return fmt.Sprint(err)
}

// Health returns whether the store commits, and since when it does not.
func (db *DB) Health() Health { return db.health.get() }

// Healed returns a channel that is closed once the store commits: already
// closed while it does, else closed by the first commit that succeeds
// after the current failures. A writer that retries after a refusal waits
// on it rather than polling the disk.
func (db *DB) Healed() <-chan struct{} { return db.health.healedChan() }

// Probe commits an empty transaction (with the probe value while the
// store is failing) and returns its result: a failing store that has room
// again recovers with it even when nothing else writes.
func (db *DB) Probe(ctx context.Context) error {
	return db.write(ctx, 0, func(*bolt.Tx) error { return nil })
}
