package scheduler

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/puzpuzpuz/xsync/v3"

	"github.com/hodei-jobs/hodei/job"
)

// Dispatcher delivers orders to connected agents. Its methods must not
// block: they queue the order on the worker's stream and report false when
// the worker is not connected (the order is then re-sent when it returns).
type Dispatcher interface {
	Assign(workerID string, j *job.Job) bool
	Cancel(workerID string, c CancelOrder) bool
}

// CancelOrder asks an agent to stop one attempt: SIGTERM to its process
// group, SIGKILL after Grace.
type CancelOrder struct {
	JobID   string
	Attempt int
	Grace   time.Duration
	Reason  string
}

// Observer receives scheduling events for metrics. Its methods must be cheap
// and must not block.
type Observer interface {
	Submitted(tenant string)
	Dispatched(tenant string, wait time.Duration)
	Finished(tenant string, state job.State)
	// SLAMissed: a job was dispatched after its deadline.
	SLAMissed(tenant string)
	// Refused: a submit was refused for the tenant's max-queued limit.
	Refused(tenant string)
	// Preempted: a running job of tenant was stopped to be requeued.
	Preempted(tenant string)
}

// Config configures a Scheduler. Zero fields take the defaults shown.
type Config struct {
	Store      Store
	Dispatcher Dispatcher
	Observer   Observer // nil: none
	// OnChange is called with every published job version, after the
	// commit; it must not block. nil: none.
	OnChange  func(*job.Job)
	Now       func() time.Time // default time.Now
	Logger    *slog.Logger     // default: discard
	Placement Placement        // default BinPack
	// Heartbeat is the interval agents are told to heartbeat at; default 5 s.
	Heartbeat time.Duration
	// Lease is how long a worker may stay silent before it is DOWN and its
	// jobs are lost; default 3 × Heartbeat + 5 s.
	Lease time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL on cancel; default 10 s.
	KillGrace time.Duration
	// AutoTenants creates the tenant of a submit when it does not exist,
	// instead of refusing the submit. Default false.
	AutoTenants bool
	// Aging is the wait that raises a pending job's priority by the whole
	// range (see EffectivePriority); default DefaultAging.
	Aging time.Duration
	// Preemption lets the scheduler stop preemptible jobs of tenants above
	// their share for tenants below it. Default false.
	Preemption bool
	// MaxMatrix is the most jobs one pipeline step's matrix may expand to;
	// default job.DefaultMaxMatrix.
	MaxMatrix int
	// MaxPipelineLinks is the most dependency links one pipeline may
	// create; default job.DefaultMaxPipelineLinks.
	MaxPipelineLinks int
	// WorkerGC is how long a worker stays DOWN before it is deleted, from
	// memory and from the store; default DefaultWorkerGC; negative: never.
	WorkerGC time.Duration
	// SealSecrets is called with every new job (Submit, SubmitArray,
	// RunPipeline) once its id is set and before it is stored or published,
	// when it has secret env values. It must set j.Spec.SecretEnv to a new
	// map of sealed values: the old map may be shared with the other jobs of
	// the same call. nil: values are stored as given.
	SealSecrets func(j *job.Job)
}

// Scheduler owns the live state of jobs and workers and the dispatch loop.
// All methods are safe for concurrent use; Pass and Run must not run
// concurrently with each other (Run calls Pass).
type Scheduler struct {
	cfg Config
	log *slog.Logger

	jobs    *xsync.MapOf[string, *job.Job]     // every job in memory; immutable values
	pending *xsync.MapOf[string, struct{}]     // ids of Pending jobs whose dependencies are done; kept by track and release
	blocked *xsync.MapOf[string, struct{}]     // ids of Pending jobs that wait for dependencies; kept by track and release
	active  *xsync.MapOf[string, struct{}]     // ids of Scheduled and Running jobs; kept by track
	deps    *xsync.MapOf[string, []string]     // job id → ids that depend on it; copy on write
	workers *xsync.MapOf[string, *workerState] // immutable values

	depCheck   *xsync.MapOf[string, struct{}]  // pending ids whose dependency just ended
	cancelSent *xsync.MapOf[string, time.Time] // job id → when the last stop order went out

	// reserved holds, by job id, the room a preemption is making for a
	// pending job; only the dispatch loop reads and writes it.
	reserved map[string]reservation

	tenantMu sync.Mutex                        // serialises tenant writes (read, change, store, publish)
	tenants  *xsync.MapOf[string, *job.Tenant] // immutable values
	fair     *fairState

	pipelines *xsync.MapOf[string, *job.Pipeline] // immutable values

	onWorker *workerJobs // the active jobs by worker; kept by track
	gc       workerGC    // worker records: their writes, and DOWN ones' deletion

	events hub
	wake   chan struct{}

	idMu      sync.Mutex
	idEntropy io.Reader // guarded by idMu
}

// New returns a Scheduler. Call Recover before serving, then Run.
func New(cfg Config) *Scheduler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 3*cfg.Heartbeat + 5*time.Second
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = 10 * time.Second
	}
	if cfg.Aging <= 0 {
		cfg.Aging = DefaultAging
	}
	if cfg.WorkerGC == 0 {
		cfg.WorkerGC = DefaultWorkerGC
	}
	return &Scheduler{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "scheduler"),
		jobs:       xsync.NewMapOf[string, *job.Job](),
		pending:    xsync.NewMapOf[string, struct{}](),
		blocked:    xsync.NewMapOf[string, struct{}](),
		active:     xsync.NewMapOf[string, struct{}](),
		onWorker:   newWorkerJobs(),
		deps:       xsync.NewMapOf[string, []string](),
		workers:    xsync.NewMapOf[string, *workerState](),
		depCheck:   xsync.NewMapOf[string, struct{}](),
		cancelSent: xsync.NewMapOf[string, time.Time](),
		tenants:    xsync.NewMapOf[string, *job.Tenant](),
		pipelines:  xsync.NewMapOf[string, *job.Pipeline](),
		fair:       newFairState(),
		reserved:   make(map[string]reservation),
		wake:       make(chan struct{}, 1),
		idEntropy:  ulid.Monotonic(crand.Reader, 0),
	}
}

// Config returns the effective configuration, defaults filled in.
func (s *Scheduler) Config() Config { return s.cfg }

// Recover rebuilds memory from the store: every job, the dependency index,
// the tenants and the known workers. Workers start disconnected and
// UNKNOWN (or DOWN, if they were): each has one lease, from now, to say
// Hello again before it is DOWN and the jobs it holds are lost.
func (s *Scheduler) Recover(ctx context.Context) error {
	now := s.cfg.Now()
	tenants, err := s.cfg.Store.Tenants(ctx)
	if err != nil {
		return fmt.Errorf("recover tenants: %w", err)
	}
	for _, t := range tenants {
		s.tenants.Store(t.Name, t)
	}
	pipelines, err := s.cfg.Store.Pipelines(ctx)
	if err != nil {
		return fmt.Errorf("recover pipelines: %w", err)
	}
	for _, p := range pipelines {
		s.pipelines.Store(p.ID, p)
	}
	defer func() {
		// A crash between retention's delete and its forget leaves records
		// of pipelines whose jobs are all gone.
		all := make(map[string]bool, len(pipelines))
		for _, p := range pipelines {
			all[p.ID] = true
		}
		s.forgetPipelines(ctx, all)
	}()
	err = s.cfg.Store.Scan(ctx, func(j *job.Job) error {
		s.publishRecovered(j)
		if j.State.Active() {
			s.fair.started(j, now)
		}
		for _, d := range j.Spec.DependsOn {
			s.addDependent(d, j.ID)
		}
		if j.State == job.Pending && len(j.Spec.DependsOn) > 0 {
			s.depCheck.Store(j.ID, struct{}{})
		}
		return nil
	})
	s.blocked.Range(func(id string, _ struct{}) bool {
		s.release(id) // every job is in memory now
		return true
	})
	if err != nil {
		return fmt.Errorf("recover jobs: %w", err)
	}
	ws, err := s.cfg.Store.Workers(ctx)
	if err != nil {
		return fmt.Errorf("recover workers: %w", err)
	}
	for _, w := range ws {
		s.workers.Store(w.ID, recoveredWorker(w, now))
	}
	s.poke()
	return nil
}

func (s *Scheduler) publishRecovered(j *job.Job) {
	s.jobs.Compute(j.ID, func(*job.Job, bool) (*job.Job, bool) {
		s.track(j)
		return j, false
	})
}

// Run is the dispatch loop: it runs a pass whenever something happened or
// the next timer is due, until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := s.Pass(ctx)
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(s.cfg.Now()), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-timer.C:
		}
	}
}

// poke wakes the dispatch loop; wake-ups that arrive during a pass coalesce.
func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Submit validates spec, stores a new Pending job durably and returns it.
// Errors: a *job.FieldError (wrapping job.ErrInvalid) naming the bad field;
// job.UnknownTenant (job.ErrNotFound) unless AutoTenants; job.OverQueued
// (job.ErrExhausted) past the tenant's max-queued limit; store errors.
func (s *Scheduler) Submit(ctx context.Context, spec job.Spec) (*job.Job, error) {
	spec, now, err := s.checkSpec(ctx, spec)
	if err != nil {
		return nil, err
	}
	j := &job.Job{ID: s.newID(now), Spec: spec, State: job.Pending, Attempt: 1, CreatedAt: now}
	s.seal(j)
	if err := s.cfg.Store.Insert(ctx, []*job.Job{j}); err != nil {
		s.refused(spec.Tenant, err)
		return nil, err
	}
	s.submitted([]*job.Job{j})
	return j, nil
}

// checkSpec normalizes and validates a submitted spec, clears the fields
// only the server sets, and makes sure its tenant exists.
func (s *Scheduler) checkSpec(ctx context.Context, spec job.Spec) (job.Spec, time.Time, error) {
	spec.Pipeline, spec.Step, spec.ContinueOnFailure = "", "", false
	spec.Array, spec.ArrayIndex, spec.ArrayLimit = "", 0, 0
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		return spec, time.Time{}, err
	}
	now := s.cfg.Now()
	if err := job.CheckDeadline("deadline", spec.Deadline, now); err != nil {
		return spec, now, err
	}
	return spec, now, s.ensureTenant(ctx, spec.Tenant)
}

// seal hands a new job with secret env values to Config.SealSecrets.
func (s *Scheduler) seal(j *job.Job) {
	if s.cfg.SealSecrets != nil && len(j.Spec.SecretEnv) > 0 {
		s.cfg.SealSecrets(j)
	}
}

func (s *Scheduler) newID(now time.Time) string {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	return ulid.MustNew(ulid.Timestamp(now), s.idEntropy).String()
}

// EffectivePriority is j's rank within its tenant now, with the configured
// aging (see the function EffectivePriority).
func (s *Scheduler) EffectivePriority(j *job.Job) float64 {
	return EffectivePriority(j, s.cfg.Now(), s.cfg.Aging)
}

// Get returns a job from memory, or job.ErrNotFound.
func (s *Scheduler) Get(id string) (*job.Job, error) {
	if j, ok := s.jobs.Load(id); ok {
		return j, nil
	}
	return nil, fmt.Errorf("job %s: %w", id, job.ErrNotFound)
}

// Subscribe returns a subscription to job changes that pass filter (nil:
// all), buffered to buffer events.
func (s *Scheduler) Subscribe(buffer int, filter func(*job.Job) bool) *Subscription {
	return s.events.subscribe(buffer, filter)
}

// Cancel stops a job in any non-terminal state: a Pending or Scheduled job
// is Cancelled at once; a Running job gets a stop order and ends Cancelled
// when its agent confirms (or when the confirmation is overdue). Cancelling
// a job whose cancel is already under way returns it unchanged. Errors:
// job.ErrNotFound; job.ErrConflict when the job is already terminal.
func (s *Scheduler) Cancel(ctx context.Context, id, reason string) (*job.Job, error) {
	if reason == "" {
		reason = ReasonUserCancel
	}
	for range 10 {
		cur, err := s.Get(id)
		if err != nil {
			return nil, err
		}
		if cur.State.Terminal() {
			return nil, job.Conflict(id, "already %s", cur.State)
		}
		next := s.cancelNext(cur, reason)
		if next == nil {
			return cur, nil
		}
		errs, err := s.apply(ctx, []job.Update{{Expect: cur.Expected(), Next: next}})
		if err != nil {
			return nil, err
		}
		if errors.Is(errs[0], job.ErrConflict) {
			s.refresh(ctx, id)
			continue
		}
		if errs[0] != nil {
			return nil, errs[0]
		}
		s.cancelled(cur, next, reason)
		return next, nil
	}
	return nil, job.Conflict(id, "changed too often while cancelling; try again")
}

// cancelNext is the record that cancels the non-terminal job cur: Cancelled
// at once, or for a Running job a stop order whose confirmation ends it.
// It returns nil when a cancel is already under way.
func (s *Scheduler) cancelNext(cur *job.Job, reason string) *job.Job {
	switch {
	case cur.State == job.Running && cur.CancelRequested != "" && !cur.Requeue:
		return nil
	case cur.State == job.Running:
		// A user's cancel also overrides a preemption under way.
		next := cur.Clone()
		next.CancelRequested, next.Requeue = reason, false
		return next
	}
	return cancelledJob(cur, reason, s.cfg.Now())
}

// cancelled sends the orders a committed cancel of cur needs.
func (s *Scheduler) cancelled(cur, next *job.Job, reason string) {
	switch cur.State {
	case job.Running:
		s.sendCancel(next, reason)
	case job.Scheduled:
		// Already Cancelled: the order only stops a start under way.
		s.cfg.Dispatcher.Cancel(cur.Worker, s.cancelOrder(cur, reason))
	}
}

// refresh reloads a job from the store after a lost compare-and-swap, in
// case memory has not caught up with the winner's commit yet.
func (s *Scheduler) refresh(ctx context.Context, id string) {
	if j, err := s.cfg.Store.Get(ctx, id); err == nil {
		s.publish(j)
	}
}

// apply writes updates through the store and publishes those that commit.
func (s *Scheduler) apply(ctx context.Context, updates []job.Update) ([]error, error) {
	errs, err := s.cfg.Store.Apply(ctx, updates)
	if err != nil {
		return nil, err
	}
	for i, u := range updates {
		if errs[i] == nil {
			s.publish(u.Next)
		}
	}
	return errs, nil
}

// publish makes a committed job version visible. Versions only move
// forward, so a slow publisher cannot overwrite a newer record; the pending
// and active sets are updated under the same key lock, so they always
// follow the newest version.
func (s *Scheduler) publish(j *job.Job) {
	won := false
	var prev *job.Job
	s.jobs.Compute(j.ID, func(old *job.Job, loaded bool) (*job.Job, bool) {
		if loaded && old.Version >= j.Version {
			return old, false
		}
		won, prev = true, old
		s.track(j)
		return j, false
	})
	if !won {
		return
	}
	if prev != nil && prev.State.Active() && (!j.State.Active() || j.Attempt != prev.Attempt) {
		end := j.FinishedAt
		if end.IsZero() {
			end = s.cfg.Now()
		}
		_, known := s.tenants.Load(prev.Spec.Tenant)
		s.fair.released(prev, end, s.weight(prev.Spec.Tenant), known)
	}
	if j.State == job.Pending && len(j.Spec.DependsOn) > 0 {
		s.release(j.ID)
	}
	if j.State.Terminal() {
		s.cancelSent.Delete(j.ID)
		for _, k := range s.dependents(j.ID) {
			if satisfies(j) {
				s.release(k)
			} else {
				s.depCheck.Store(k, struct{}{})
			}
		}
		if s.cfg.Observer != nil {
			s.cfg.Observer.Finished(j.Spec.Tenant, j.State)
		}
	}
	if j.State == job.Pending || j.State.Terminal() {
		s.poke()
	}
	if s.cfg.OnChange != nil {
		s.cfg.OnChange(j)
	}
	s.events.publish(j)
}

// track files a job id under the set its state belongs to. It runs inside
// the jobs map's Compute for that id.
//
// A Pending job with dependencies goes to the blocked set; release moves
// it to pending once they are done, so that a pass looks only at jobs
// that can start and a long chain costs no more than a flat list.
func (s *Scheduler) track(j *job.Job) {
	switch {
	case j.State == job.Pending && len(j.Spec.DependsOn) > 0:
		s.blocked.Store(j.ID, struct{}{})
		s.pending.Delete(j.ID)
		s.active.Delete(j.ID)
	case j.State == job.Pending:
		s.pending.Store(j.ID, struct{}{})
		s.active.Delete(j.ID)
	case j.State.Active():
		s.active.Store(j.ID, struct{}{})
		s.onWorker.set(j.ID, j.Worker)
		s.pending.Delete(j.ID)
		s.blocked.Delete(j.ID)
		return
	default:
		s.pending.Delete(j.ID)
		s.blocked.Delete(j.ID)
		s.active.Delete(j.ID)
	}
	s.onWorker.drop(j.ID)
}

// release moves job id from blocked to pending if its dependencies are all
// done. It runs after the commits of the job and of its dependencies are
// published, under the job's key lock, so that of two racing publishes
// (the job's own and its last dependency's) the later one sees the other.
func (s *Scheduler) release(id string) {
	s.jobs.Compute(id, func(cur *job.Job, loaded bool) (*job.Job, bool) {
		if loaded && cur.State == job.Pending && s.depsDone(cur) {
			if _, was := s.blocked.LoadAndDelete(id); was {
				s.pending.Store(id, struct{}{})
			}
		}
		return cur, !loaded
	})
}

func (s *Scheduler) dependents(id string) []string {
	kids, _ := s.deps.Load(id)
	return kids
}

func (s *Scheduler) addDependent(dep, child string) {
	s.deps.Compute(dep, func(old []string, _ bool) ([]string, bool) {
		if slices.Contains(old, child) {
			return old, false
		}
		return append(slices.Clip(old), child), false
	})
}

// Forget drops finished jobs from memory after retention deleted them from
// the store.
// Pipelines none of whose jobs is left are deleted too.
func (s *Scheduler) Forget(ctx context.Context, ids []string) {
	touched := make(map[string]bool)
	for _, id := range ids {
		if j, ok := s.jobs.Load(id); ok && j.Spec.Pipeline != "" {
			touched[j.Spec.Pipeline] = true
		}
		s.jobs.Delete(id)
		s.deps.Delete(id)
		s.pending.Delete(id)
		s.blocked.Delete(id)
		s.active.Delete(id)
		s.onWorker.drop(id)
	}
	s.forgetPipelines(ctx, touched)
}

// Jobs calls fn for every job in memory, in no particular order, until fn
// returns false. It is not a snapshot.
func (s *Scheduler) Jobs(fn func(*job.Job) bool) {
	s.jobs.Range(func(_ string, j *job.Job) bool { return fn(j) })
}
