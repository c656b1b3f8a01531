package server

// The event journal: the last journalSize changes of jobs, workers and
// pipelines, each with a sequence number, in one ring that every watcher
// reads at its own pace. A watcher holds only its position, so a slow one
// costs nothing but the ring (bounded) until it falls more than the
// ring's size behind, which it learns as a reset; a watcher that lost its
// stream resumes from its last event's cursor with no gap and no repeat
// (WatchRequest.after, GET /v1/events with Last-Event-ID).

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// journalSize is how many events the journal keeps: at about 150 bytes of
// entry each (a job's version is shared with the scheduler's memory
// while it lives), a few MB; at 1,000 changes a second, 16 s of resume.
const journalSize = 1 << 14

// eventKind says what an event is about.
type eventKind uint8

const (
	jobEvent eventKind = iota + 1
	workerEvent
	pipelineEvent
)

// String is the kind's name, the SSE event name.
func (k eventKind) String() string {
	switch k {
	case jobEvent:
		return "job"
	case workerEvent:
		return "worker"
	case pipelineEvent:
		return "pipeline"
	}
	return "unknown"
}

// entry is one event: a job's committed version (immutable, shared), or
// the id of a worker or pipeline that changed (sent as it is then).
type entry struct {
	seq  uint64
	kind eventKind
	job  *job.Job
	id   string
}

// journal is the ring of events. The zero value is not usable; use
// newJournal. Safe for concurrent use; append never blocks on a reader.
type journal struct {
	epoch string // names this server's run: a cursor of another is stale

	mu   sync.Mutex
	next uint64        // guarded by mu: the sequence number of the next event (the first is 1)
	ring []entry       // guarded by mu: event seq at ring[seq%journalSize]
	wake chan struct{} // guarded by mu: closed and replaced at each append
}

func newJournal(now time.Time) *journal {
	return &journal{epoch: strconv.FormatInt(now.UnixNano(), 36), next: 1, ring: make([]entry, journalSize), wake: make(chan struct{})}
}

// appendJob records a job's new version, and a change of its pipeline.
func (j *journal) appendJob(jb *job.Job) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.put(entry{kind: jobEvent, job: jb})
	if jb.Spec.Pipeline != "" {
		j.put(entry{kind: pipelineEvent, id: jb.Spec.Pipeline})
	}
	close(j.wake)
	j.wake = make(chan struct{})
}

// appendWorker records that a worker changed.
func (j *journal) appendWorker(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.put(entry{kind: workerEvent, id: id})
	close(j.wake)
	j.wake = make(chan struct{})
}

func (j *journal) put(e entry) {
	e.seq = j.next
	j.ring[e.seq%journalSize] = e
	j.next++
}

// head is the sequence number of the next event: a watch from now starts
// there.
func (j *journal) head() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.next
}

// read copies into buf the events from seq from on, at most len(buf), and
// returns them; with none yet, the channel closed at the next append. lost
// is true when from is older than what the ring keeps: the caller must
// reset, and go on from the oldest kept.
func (j *journal) read(from uint64, buf []entry) (evs []entry, wake <-chan struct{}, lost bool, oldest uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	oldest = 1
	if j.next > journalSize {
		oldest = j.next - journalSize
	}
	if from < oldest {
		return nil, nil, true, oldest
	}
	n := 0
	for s := from; s < j.next && n < len(buf); s++ {
		buf[n] = j.ring[s%journalSize]
		n++
	}
	return buf[:n], j.wake, false, oldest
}

// cursor names event seq of this journal: "EPOCH.SEQ".
func (j *journal) cursor(seq uint64) string { return j.epoch + "." + strconv.FormatUint(seq, 10) }

// parseCursor returns the sequence number after cursor c, and ok false
// when c is of another run of the server (or not a cursor).
func (j *journal) after(c string) (next uint64, ok bool, err error) {
	epoch, seq, found := strings.Cut(c, ".")
	n, perr := strconv.ParseUint(seq, 10, 64)
	if !found || perr != nil || epoch == "" {
		return 0, false, job.Invalid("after", "%q is not an event cursor (EPOCH.SEQ, the id of an event)", clip(c, 64))
	}
	if epoch != j.epoch {
		return 0, false, nil
	}
	if n >= j.head() {
		return 0, false, job.Invalid("after", "%q is beyond the last event %s", clip(c, 64), j.cursor(j.head()-1))
	}
	return n + 1, true, nil
}

// String describes the journal for logs.
func (j *journal) String() string { return fmt.Sprintf("journal %s at %d", j.epoch, j.head()) }
