package agent

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"google.golang.org/protobuf/proto"

	pb "github.com/hodei-jobs/hodei/proto"
)

// Journal record kinds.
const (
	recResult    = 'R' // a JobFinished to deliver
	recDelivered = 'D' // a JobRef whose result the server acknowledged
)

// journal keeps, in the agent's data dir, the results the server has not
// acknowledged, beside the spooled output of every attempt
// (spool/<job>-<attempt>.out and .err), so that a result and its output
// survive an agent restart until they are delivered.
//
// It is one append-only file, journal.log, of records: a kind byte, a
// uvarint length and a protobuf message. Replaying it gives the pending
// results; it is rewritten with just those on open and whenever delivered
// records outnumber them. One file, rather than a file per result, keeps
// trivial jobs from contending on a directory. Records are not fsync'd:
// they must survive the agent's death, which keeps the page cache; a power
// loss takes the agent's jobs with it anyway, and the server retries those
// as worker lost. Safe for concurrent use.
type journal struct {
	path     string
	spoolDir string

	mu      sync.Mutex
	f       *os.File                // nil after a failed compaction; guarded by mu
	size    int64                   // bytes of whole records in the file; guarded by mu
	pending map[ref]*pb.JobFinished // guarded by mu
	dead    int                     // delivered records in the file; guarded by mu
}

func openJournal(dataDir string) (*journal, error) {
	j := &journal{path: filepath.Join(dataDir, "journal.log"), spoolDir: filepath.Join(dataDir, "spool"),
		pending: make(map[ref]*pb.JobFinished)}
	if err := os.MkdirAll(j.spoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if err := j.replay(); err != nil {
		return nil, err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.compactLocked(); err != nil {
		return nil, err
	}
	return j, nil
}

// replay reads the file into pending. A torn last record (the agent died
// in the middle of a write) ends the replay.
func (j *journal) replay() error {
	f, err := os.Open(j.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	for {
		kind, err := r.ReadByte()
		if err != nil {
			return nil
		}
		n, err := binary.ReadUvarint(r)
		if err != nil || n > 1<<20 {
			return nil
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil
		}
		switch kind {
		case recResult:
			res := &pb.JobFinished{}
			if proto.Unmarshal(b, res) == nil {
				j.pending[ref{res.GetJobId(), int(res.GetAttempt())}] = res
			}
		case recDelivered:
			jr := &pb.JobRef{}
			if proto.Unmarshal(b, jr) == nil {
				delete(j.pending, ref{jr.GetJobId(), int(jr.GetAttempt())})
			}
		}
	}
}

// compactLocked rewrites the file with the pending results only.
func (j *journal) compactLocked() error {
	var buf []byte
	for _, res := range j.pending {
		var err error
		if buf, err = appendRecord(buf, recResult, res); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(j.path, buf); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		if j.f != nil {
			j.f.Close() // it names the replaced file now
		}
		j.f = nil
		return fmt.Errorf("journal: %w", err)
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f, j.dead, j.size = f, 0, int64(len(buf))
	return nil
}

// appendLocked writes one record. A failed write (a full disk, say) is cut
// off again, so that a torn record never hides the ones after it.
func (j *journal) appendLocked(rec []byte) error {
	if j.f == nil { // a compaction failed to reopen the file: try again
		if err := j.compactLocked(); err != nil {
			return err
		}
	}
	if _, err := j.f.Write(rec); err != nil {
		if terr := j.f.Truncate(j.size); terr != nil {
			err = errors.Join(err, terr)
		}
		return fmt.Errorf("journal: %w", err)
	}
	j.size += int64(len(rec))
	return nil
}

func appendRecord(buf []byte, kind byte, m proto.Message) ([]byte, error) {
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	buf = append(buf, kind)
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	return append(buf, b...), nil
}

// save records a result until remove.
func (j *journal) save(res *pb.JobFinished) error {
	rec, err := appendRecord(nil, recResult, res)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.appendLocked(rec); err != nil {
		return err
	}
	j.pending[ref{res.GetJobId(), int(res.GetAttempt())}] = res
	return nil
}

// undelivered returns how many results the journal holds that the server
// has not acknowledged.
func (j *journal) undelivered() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.pending)
}

// remove forgets a delivered result. It is gone from memory even when its
// delivered record cannot be written: the next compaction drops it from
// the file, and until then a restarted agent at worst reports it again,
// which the server answers as stale.
func (j *journal) remove(r ref) error {
	rec, err := appendRecord(nil, recDelivered, &pb.JobRef{JobId: r.job, Attempt: int32(r.attempt)})
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.pending[r]; !ok {
		return nil
	}
	delete(j.pending, r)
	j.dead++ // a result record without its delivered one is dead all the same
	werr := j.appendLocked(rec)
	if j.dead > 1024 && j.dead > 4*len(j.pending) {
		return errors.Join(werr, j.compactLocked())
	}
	return werr
}

// close releases the file.
func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

func (j *journal) spoolPath(r ref, ext string) string {
	return filepath.Join(j.spoolDir, r.job+"-"+strconv.Itoa(r.attempt)+ext)
}

// recover returns a task for every pending result, with its output
// re-opened for sending, except those in skip (held by a supervisor, whose
// task the caller has). Spool files without a result belong to attempts
// that died with a supervisor, unless keep (the names of the files of the
// attempts the supervisors hold) has them: the server fails those as lost,
// so their output is deleted.
func (j *journal) recover(keep map[string]bool) ([]*task, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	keep = maps.Clone(keep)
	if keep == nil {
		keep = map[string]bool{}
	}
	var tasks []*task
	for r, res := range j.pending {
		out, err := reopenSpool(j.spoolPath(r, ".out"))
		if err != nil {
			return nil, err
		}
		errs, err := reopenSpool(j.spoolPath(r, ".err"))
		if err != nil {
			return nil, err
		}
		t := newTask(r)
		t.started(nil, out, errs)
		t.finish(res)
		tasks = append(tasks, t)
		keep[filepath.Base(j.spoolPath(r, ".out"))], keep[filepath.Base(j.spoolPath(r, ".err"))] = true, true
	}
	spools, err := os.ReadDir(j.spoolDir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	for _, e := range spools {
		if !keep[e.Name()] {
			os.Remove(filepath.Join(j.spoolDir, e.Name()))
		}
	}
	return tasks, nil
}

// reopenSpool opens a spool file for re-sending; a missing one (the
// attempt wrote nothing) is empty.
func reopenSpool(path string) (*spool, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return emptySpool(), nil
	}
	sp, err := openSpoolForRead(path)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return sp, nil
}

// writeFileAtomic replaces path with data through a temporary file.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
