package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hodei-jobs/hodei/job"
)

// maxOpenLogs is how many idle append handles Logs keeps open.
const maxOpenLogs = 128

// Logs stores job output as append-only files, dir/<job-id>/<attempt>.log
// (OpenLogs), or dir/<job-id>/<attempt>.stderr for the stderr of jobs run
// without a PTY (OpenStderrLogs).
// Agents may re-send chunks after a reconnect, so Append de-duplicates by
// offset. It keeps a small cache of open append handles and the size of
// each file it has seen. Logs is safe for concurrent use; appends to one
// (job, attempt) are serialised. Create it with OpenLogs.
type Logs struct {
	dir     string
	suffix  string // file name suffix: ".log" or ".stderr"
	maxOpen int    // idle handles kept; maxOpenLogs outside tests

	mu    sync.Mutex // guards files, clock and each logFile's refs, lastUse, drop
	files map[logKey]*logFile
	clock uint64 // ticks on every acquire, for least-recently-used eviction
}

type logKey struct {
	id      string
	attempt int
}

// logFile is one cached append handle.
type logFile struct {
	mu      sync.Mutex // serialises appends and syncs; guards the fields below
	f       *os.File   // nil until the first append opens it
	size    int64      // valid once f is set
	newDirs []string   // directories created with the file, synced by Sync

	// Guarded by Logs.mu. An entry with refs > 0 is never closed or
	// removed from the map, so one (job, attempt) has one handle at a time.
	refs    int
	lastUse uint64
	drop    bool // close and forget when refs reaches 0
}

// OpenLogs returns the store of jobs' main output (a PTY's, or stdout)
// rooted at dir, creating the directory.
func OpenLogs(dir string) (*Logs, error) { return openLogs(dir, ".log") }

// OpenStderrLogs returns the store of the stderr of jobs run without a PTY,
// in the same directories as OpenLogs's files.
func OpenStderrLogs(dir string) (*Logs, error) { return openLogs(dir, ".stderr") }

func openLogs(dir, suffix string) (*Logs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open logs: %w", err)
	}
	return &Logs{dir: dir, suffix: suffix, maxOpen: maxOpenLogs, files: make(map[logKey]*logFile)}, nil
}

// checkLogKey rejects ids and attempts that could escape the directory.
func checkLogKey(jobID string, attempt int) error {
	if !job.ValidID(jobID) {
		return job.Invalid("job_id", "%q is not a job id", jobID)
	}
	if attempt < 1 {
		return job.Invalid("attempt", "%d must be at least 1", attempt)
	}
	return nil
}

func (l *Logs) jobDir(jobID string) string { return filepath.Join(l.dir, jobID) }

func (l *Logs) path(jobID string, attempt int) string {
	return filepath.Join(l.dir, jobID, strconv.Itoa(attempt)+l.suffix)
}

// Append writes data, which starts at byte offset of the attempt's output,
// and returns the file's new size. Bytes the file already holds are skipped:
// a chunk entirely below the size writes nothing, one that overlaps it
// writes only its tail. A chunk that starts past the size would leave a gap:
// nothing is written and the error wraps job.ErrConflict; the returned size
// tells the sender where to resume. The data is not synced; see Sync.
func (l *Logs) Append(jobID string, attempt int, offset int64, data []byte) (int64, error) {
	if err := checkLogKey(jobID, attempt); err != nil {
		return 0, err
	}
	if offset < 0 {
		return 0, job.Invalid("offset", "%d must not be negative", offset)
	}
	key := logKey{jobID, attempt}
	lf := l.acquire(key)
	defer l.release(key, lf)
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if err := l.openAppend(lf, key); err != nil {
		return 0, err
	}
	switch {
	case offset > lf.size:
		return lf.size, fmt.Errorf("log %s/%d: chunk at offset %d leaves a gap after byte %d: %w",
			jobID, attempt, offset, lf.size, job.ErrConflict)
	case offset+int64(len(data)) <= lf.size:
		return lf.size, nil
	}
	n, err := lf.f.Write(data[lf.size-offset:])
	lf.size += int64(n)
	if err != nil {
		return lf.size, fmt.Errorf("log %s/%d: %w", jobID, attempt, err)
	}
	return lf.size, nil
}

// openAppend opens lf's file for appending if it is not open. lf.mu is held.
func (l *Logs) openAppend(lf *logFile, key logKey) error {
	if lf.f != nil {
		return nil
	}
	dir := l.jobDir(key.id)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("log %s/%d: %w", key.id, key.attempt, err)
		}
		lf.newDirs = append(lf.newDirs, l.dir)
	}
	path := l.path(key.id, key.attempt)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log %s/%d: %w", key.id, key.attempt, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("log %s/%d: %w", key.id, key.attempt, err)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		lf.newDirs = append(lf.newDirs, dir)
	}
	lf.f, lf.size = f, fi.Size()
	return nil
}

// acquire returns the cache entry of key, creating it, and pins it.
func (l *Logs) acquire(key logKey) *logFile {
	l.mu.Lock()
	defer l.mu.Unlock()
	lf := l.files[key]
	if lf == nil {
		lf = &logFile{}
		l.files[key] = lf
	}
	lf.refs++ // pinned before evicting, or it would be the first to go
	l.clock++
	lf.lastUse = l.clock
	l.evictLocked()
	return lf
}

// release unpins lf, closing it if it was dropped meanwhile.
func (l *Logs) release(key logKey, lf *logFile) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lf.refs--
	if lf.refs == 0 && lf.drop {
		l.forgetLocked(key, lf)
	}
}

// forgetLocked closes an unpinned entry and removes it from the cache.
func (l *Logs) forgetLocked(key logKey, lf *logFile) error {
	if l.files[key] == lf {
		delete(l.files, key)
	}
	if lf.f == nil {
		return nil
	}
	err := lf.f.Close()
	lf.f = nil
	return err
}

// evictLocked closes the least recently used idle handles beyond maxOpen.
func (l *Logs) evictLocked() {
	for len(l.files) > l.maxOpen {
		var (
			oldKey logKey
			old    *logFile
		)
		for k, lf := range l.files {
			if lf.refs == 0 && (old == nil || lf.lastUse < old.lastUse) {
				oldKey, old = k, lf
			}
		}
		if old == nil {
			return // every handle is in use: exceed the cap for now
		}
		_ = l.forgetLocked(oldKey, old) // nothing to lose: appends are not buffered
	}
}

// Size returns the size of the attempt's log, 0 when there is none.
func (l *Logs) Size(jobID string, attempt int) (int64, error) {
	if err := checkLogKey(jobID, attempt); err != nil {
		return 0, err
	}
	key := logKey{jobID, attempt}
	l.mu.Lock()
	lf := l.files[key]
	if lf != nil {
		lf.refs++
	}
	l.mu.Unlock()
	if lf != nil {
		defer l.release(key, lf)
		lf.mu.Lock()
		defer lf.mu.Unlock()
		if lf.f != nil {
			return lf.size, nil
		}
	}
	fi, err := os.Stat(l.path(jobID, attempt))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("log %s/%d: %w", jobID, attempt, err)
	}
	return fi.Size(), nil
}

// Sync makes the attempt's log durable: the file and, the first time, the
// directories created for it. Call it before recording the job's end. A
// missing log is nothing to sync.
func (l *Logs) Sync(jobID string, attempt int) error {
	if err := checkLogKey(jobID, attempt); err != nil {
		return err
	}
	key := logKey{jobID, attempt}
	lf := l.acquire(key)
	defer l.release(key, lf)
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.f == nil {
		if _, err := os.Stat(l.path(jobID, attempt)); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err := l.openAppend(lf, key); err != nil {
			return err
		}
	}
	if err := lf.f.Sync(); err != nil {
		return fmt.Errorf("log %s/%d: sync: %w", jobID, attempt, err)
	}
	for len(lf.newDirs) > 0 {
		if err := syncDir(lf.newDirs[len(lf.newDirs)-1]); err != nil {
			return fmt.Errorf("log %s/%d: %w", jobID, attempt, err)
		}
		lf.newDirs = lf.newDirs[:len(lf.newDirs)-1]
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Open opens the attempt's log for reading, from any offset with ReadAt or
// Seek. It may be read while appends go on; Size tells how far it is
// complete. A missing log fails with an error wrapping job.ErrNotFound. The
// caller closes the file.
func (l *Logs) Open(jobID string, attempt int) (*os.File, error) {
	if err := checkLogKey(jobID, attempt); err != nil {
		return nil, err
	}
	f, err := os.Open(l.path(jobID, attempt))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("log %s/%d: %w", jobID, attempt, job.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("log %s/%d: %w", jobID, attempt, err)
	}
	return f, nil
}

// Attempts returns the attempts that have a log, in increasing order; none
// when the job has no logs.
func (l *Logs) Attempts(jobID string) ([]int, error) {
	if !job.ValidID(jobID) {
		return nil, job.Invalid("job_id", "%q is not a job id", jobID)
	}
	ents, err := os.ReadDir(l.jobDir(jobID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("log %s: %w", jobID, err)
	}
	var out []int
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), l.suffix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if n, err := strconv.Atoi(name); err == nil && n >= 1 {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Remove deletes every log of the job, for retention. The job must be
// finished: a chunk appended afterwards would create a new log.
func (l *Logs) Remove(jobID string) error {
	if !job.ValidID(jobID) {
		return job.Invalid("job_id", "%q is not a job id", jobID)
	}
	l.mu.Lock()
	for key, lf := range l.files {
		if key.id == jobID {
			l.dropLocked(key, lf)
		}
	}
	l.mu.Unlock()
	if err := os.RemoveAll(l.jobDir(jobID)); err != nil {
		return fmt.Errorf("log %s: %w", jobID, err)
	}
	return nil
}

// Close releases the cached handle of one attempt, once no append uses it.
// Appending again reopens it.
func (l *Logs) Close(jobID string, attempt int) error {
	key := logKey{jobID, attempt}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lf := l.files[key]; lf != nil {
		return l.dropLocked(key, lf)
	}
	return nil
}

// CloseAll releases every cached handle (those in use, once their call
// returns) and returns the first error closing one. Logs stays usable.
func (l *Logs) CloseAll() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first error
	for key, lf := range l.files {
		if err := l.dropLocked(key, lf); err != nil && first == nil {
			first = fmt.Errorf("close log %s/%d: %w", key.id, key.attempt, err)
		}
	}
	return first
}

// dropLocked closes lf now if it is idle, or marks it to be closed when its
// last user releases it.
func (l *Logs) dropLocked(key logKey, lf *logFile) error {
	if lf.refs > 0 {
		lf.drop = true // it stays in the map: a new append must wait for this one
		return nil
	}
	return l.forgetLocked(key, lf)
}
