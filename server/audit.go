package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// DefaultAuditRetention is how long audit records are kept when
// Config.AuditRetention is zero.
const DefaultAuditRetention = 90 * 24 * time.Hour

// Sizes of the audit writer.
const (
	// auditQueueLen is how many records may wait for the writer; a
	// recorder waits for room beyond it.
	auditQueueLen = 4096
	// auditBatch is the most records the writer stores in one transaction.
	auditBatch = 4096
	// auditRetryMin and auditRetryMax bound the wait between attempts to
	// store a batch whose write failed.
	auditRetryMin = 100 * time.Millisecond
	auditRetryMax = 5 * time.Second
	// auditSweepBatch is how many records retention deletes per transaction.
	auditSweepBatch = 1000
)

// auditLog is the server's audit writer. Record queues an entry on a
// bounded channel; one goroutine (run) takes everything queued, up to
// auditBatch, and stores it in one transaction, so that concurrent
// recorders share commits as the store's own commit loop does. A recorder
// waits for room when the queue is full: records are slowed down, never
// dropped. stop refuses new records and stores every queued one.
//
// Record is safe for concurrent use. The Server owns the auditLog: Serve
// starts it and Close stops it, before it closes the store.
type auditLog struct {
	append  func(context.Context, []job.AuditEntry) error // the store's AppendAudit
	now     func() time.Time
	log     *slog.Logger
	written prometheus.Counter // records stored
	lost    prometheus.Counter // records refused by the store or never queued
	// suppressed counts denials not recorded because their peer was over
	// its budget (see auditlimit.go).
	suppressed prometheus.Counter
	// maxWait bounds how long Record waits for room; 0: as long as its ctx
	// allows. lingerFor is how long the writer lets records gather after
	// the first one of a batch (0: none), so that under load it writes a
	// few large batches that ride in the store's group commit with the
	// jobs, instead of one small transaction after another. Set both
	// before start.
	maxWait, lingerFor time.Duration
	// healed, when set, returns a channel closed once the store commits
	// again: a write refused by a full disk is retried then, not only on
	// its backoff. Set before start.
	healed func() <-chan struct{}
	// failing holds the error of the last write while writes fail (a full
	// disk), nil once one succeeds; see Failing.
	failing atomic.Pointer[error]

	// mu is held for reading by Record while it queues, and for writing by
	// stop while it sets closed: once stop holds it, no send is under way
	// and none will start, so the final flush sees every queued record.
	mu     sync.RWMutex
	closed bool // guarded by mu

	lifeMu  sync.Mutex // guards started and stopped; never held while sending
	started bool       // run was started
	stopped bool       // stop was called

	queue    chan job.AuditEntry
	stopping chan struct{} // closed by stop: run flushes and returns
	done     chan struct{} // closed when run has returned
	stopOnce sync.Once
}

// newAuditLog returns a writer, not yet started, that stores through appendFn, with
// a queue of queueLen records. It registers its counters with reg unless
// reg is nil.
func newAuditLog(appendFn func(context.Context, []job.AuditEntry) error, now func() time.Time,
	log *slog.Logger, reg prometheus.Registerer, queueLen int) *auditLog {
	a := &auditLog{
		append: appendFn,
		now:    now,
		log:    log.With("component", "audit"),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hodei_audit_records_total", Help: "Audit records stored.",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hodei_audit_records_lost_total",
			Help: "Audit records that could not be stored (logged at error level instead).",
		}),
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hodei_audit_denials_suppressed_total",
			Help: "Denials not recorded because their peer sent more than its budget; the peer's next record counts them.",
		}),
		queue:    make(chan job.AuditEntry, queueLen),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
	if reg != nil {
		reg.MustRegister(a.written, a.lost, a.suppressed)
	}
	return a
}

// Record queues e to be stored, setting its Time to now when it is zero.
// It waits while the queue is full and returns ctx.Err() if ctx ends
// first (an ended ctx does not matter while there is room). It fails with
// job.ErrClosed once the writer was stopped, and with a *job.FieldError
// for a time before 1970, which the store cannot key. A nil error means
// the record will be stored unless the disk fails, which the writer logs.
func (a *auditLog) Record(ctx context.Context, e job.AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = a.now()
	}
	if e.Time.UnixNano() <= 0 {
		return job.Invalid("time", "%s is not after 1970", e.Time.Format(time.RFC3339))
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return fmt.Errorf("audit: %w", job.ErrClosed)
	}
	select { // room first: a call whose client just left is still recorded
	case a.queue <- e:
		return nil
	default:
	}
	var timeout <-chan time.Time
	if a.maxWait > 0 {
		t := time.NewTimer(a.maxWait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case a.queue <- e:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit: %w", ctx.Err())
	case <-timeout:
		return fmt.Errorf("audit: the queue stayed full for %s", a.maxWait)
	}
}

// start runs the writer's goroutine. It does nothing after stop or when
// already started.
func (a *auditLog) start() {
	a.lifeMu.Lock()
	defer a.lifeMu.Unlock()
	if a.started || a.stopped {
		return
	}
	a.started = true
	go a.run()
}

// stop refuses new records, stores every queued one and returns when they
// are stored or reported lost. It starts the writer if start was never
// called, so that recorders waiting on a full queue get room and it need
// not wait for their contexts. It is safe to call more than once.
func (a *auditLog) stop() {
	a.stopOnce.Do(func() {
		a.lifeMu.Lock()
		a.stopped = true
		if !a.started {
			a.started = true
			go a.run()
		}
		a.lifeMu.Unlock()
		a.mu.Lock() // waits for the sends under way, which the writer makes room for
		a.closed = true
		a.mu.Unlock()
		close(a.stopping)
		<-a.done
	})
}

// run is the writer loop: wait for a record, take whatever else is queued,
// store it all in one transaction, repeat. It returns when stop closes
// a.stopping, after flushing the queue.
// Failing returns why records cannot be stored now, or nil. Mutating
// calls are refused meanwhile, so that nothing changes unaudited.
func (a *auditLog) Failing() error {
	if err := a.failing.Load(); err != nil {
		return *err
	}
	return nil
}

// linger waits lingerFor, or until stop, before a batch is taken.
func (a *auditLog) linger() {
	if a.lingerFor <= 0 {
		return
	}
	t := time.NewTimer(a.lingerFor)
	defer t.Stop()
	select {
	case <-t.C:
	case <-a.stopping:
	}
}

func (a *auditLog) run() {
	defer close(a.done)
	batch := make([]job.AuditEntry, 0, auditBatch)
	for {
		select {
		case e := <-a.queue:
			a.linger()
			batch = a.take(append(batch[:0], e))
			a.write(batch, true)
		case <-a.stopping:
			a.flush(batch)
			return
		}
	}
}

// take appends queued records to batch, without waiting, up to auditBatch.
func (a *auditLog) take(batch []job.AuditEntry) []job.AuditEntry {
	for len(batch) < auditBatch {
		select {
		case e := <-a.queue:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// flush stores everything queued, one batch after another, without
// retrying. Called once a.closed is set, so the queue only shrinks.
func (a *auditLog) flush(batch []job.AuditEntry) {
	for {
		batch = a.take(batch[:0])
		if len(batch) == 0 {
			return
		}
		a.write(batch, false)
	}
}

// write stores batch. A failed write is retried with a growing wait while
// retry holds, and once more when stop interrupts the wait; a batch that
// cannot be stored is logged as lost and counted. Recorders queue behind a
// retrying writer and so wait for the disk to recover.
func (a *auditLog) write(batch []job.AuditEntry, retry bool) {
	wait := auditRetryMin
	for {
		err := a.append(context.Background(), batch)
		if err == nil {
			a.written.Add(float64(len(batch)))
			a.failing.Store(nil)
			return
		}
		a.failing.Store(&err)
		if !retry || errors.Is(err, job.ErrInvalid) || errors.Is(err, job.ErrClosed) {
			a.lose(batch, err)
			return
		}
		// A full disk is the store's to report, once per episode; the
		// writer tries again as soon as the store commits.
		a.log.Log(context.Background(), min(job.StoreErrLevel(err), slog.LevelWarn),
			"audit write failed; retrying", "records", len(batch), "in", wait, "err", err)
		var healed <-chan struct{}
		if errors.Is(err, job.ErrUnwritable) && a.healed != nil {
			healed = a.healed()
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
			wait = min(2*wait, auditRetryMax)
		case <-healed:
			t.Stop()
		case <-a.stopping:
			t.Stop()
			retry = false
		}
	}
}

// lose logs every record of batch at error level, so that what the store
// refused is still on record, and counts them.
func (a *auditLog) lose(batch []job.AuditEntry, err error) {
	a.lost.Add(float64(len(batch)))
	for i := range batch {
		a.log.Error("audit record not stored", append(auditAttrs(&batch[i]), "err", err)...)
	}
}

// auditAttrs are the fields of e as log attributes.
func auditAttrs(e *job.AuditEntry) []any {
	return []any{
		"time", e.Time, "token_id", e.TokenID, "token_name", e.TokenName, "role", e.Role,
		"scope", e.Scope, "tenant", e.Tenant, "action", e.Action, "target", e.Target,
		"result", e.Result, "message", e.Message, "peer", e.Peer,
	}
}

// audit records e: the authentication interceptors call it for every
// mutating call and every denial. It waits while the writer's queue is
// full, and never fails the call: a record that cannot be queued (ctx
// ended, server stopping) is logged at error level with all its fields and
// counted in hodei_audit_records_lost_total. Callers that must refuse the
// call instead use s.auditLog.Record and its error.
func (s *Server) audit(ctx context.Context, e job.AuditEntry) {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	if err := s.auditLog.Record(ctx, e); err != nil {
		s.auditLog.lose([]job.AuditEntry{e}, err)
	}
}

// sweepAudit deletes the audit records older than the audit retention, a
// batch per transaction.
func (s *Server) sweepAudit(ctx context.Context) {
	before := s.now().Add(-s.cfg.AuditRetention)
	for ctx.Err() == nil {
		n, err := s.store.DeleteAuditBefore(ctx, before, auditSweepBatch)
		if err != nil {
			s.log.Log(ctx, job.StoreErrLevel(err), "audit retention", "err", err)
			return
		}
		if n < auditSweepBatch {
			return
		}
	}
}

// maxAuditAnswer bounds the encoded records of one ListAudit answer.
const maxAuditAnswer = 3 << 20

// ListAudit lists stored audit records, newest first. Records still queued
// in the writer show up once it has stored them.
func (as *adminService) ListAudit(ctx context.Context, req *pb.ListAuditRequest) (*pb.ListAuditResponse, error) {
	f := req.ToAuditFilter()
	if err := f.Validate(); err != nil {
		return nil, toStatus(err)
	}
	es, err := as.srv.store.ListAudit(ctx, f)
	if err != nil {
		return nil, toStatus(err)
	}
	// An answer stays under what a client receives by default (4 MiB).
	resp := &pb.ListAuditResponse{Records: make([]*pb.AuditRecord, 0, len(es))}
	size := 0
	for i := range es {
		r := pb.FromAuditEntry(&es[i])
		if size += proto.Size(r) + 8; size > maxAuditAnswer {
			break
		}
		resp.Records = append(resp.Records, r)
	}
	return resp, nil
}
