package cluster

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/puzpuzpuz/xsync/v3"

	"github.com/hodei-jobs/hodei/cron"
	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
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
	// Submitted: n jobs (or array tasks) of tenant were accepted.
	Submitted(tenant string, n int)
	Dispatched(tenant string, wait time.Duration)
	Finished(tenant string, state job.State, n int)
	// SLAMissed: a job was dispatched after its deadline.
	SLAMissed(tenant string)
	// Refused: a submit was refused for the tenant's max-queued limit.
	Refused(tenant string)
	// Preempted: a running job of tenant was stopped to be requeued.
	Preempted(tenant string)
	// WorkersLost: n workers were declared DOWN, silent past their lease
	// (their running jobs lost), or not back within a lease of a restart
	// while holding jobs.
	WorkersLost(n int)
}

// Cluster owns the live state of jobs and workers and the dispatch loop.
// All methods are safe for concurrent use; Pass and Run must not run
// concurrently with each other (Run calls Pass).
type Cluster struct {
	cfg Config
	log *slog.Logger

	// mu guards the job state (see state.go). Publishers hold it for a
	// few map and tree operations; a pass holds it while it takes its
	// snapshot and decides, which costs what the pass places.
	mu           sync.RWMutex
	wait         waitTable                      // Pending jobs, and arrays' entries
	needs        map[string][]string            // blocked job id → its dependencies
	unblocked    map[slot]int64                 // waiting entries that were blocked → when their dependencies let them run (Unix ns)
	active       map[string]*job.Job            // Scheduled and Running jobs, by id; immutable values
	queues       map[string]*tenantQueue        // tenant → its ready work
	delayed      delayHeap                      // waiting jobs whose backoff has not ended
	park         parking                        // ready jobs no ready worker could take, out of the queues
	held         *heldFor                       // the worker the last pass kept for a job, if any (reasons.go)
	rekeyed      time.Time                      // the last re-key of jobs with deadlines
	counts       map[string]*tenantCount        // tenant → what its unfinished jobs add up to
	tenantList   []*tenantCount                 // counts by tenantCount.idx
	arrays       map[string]*arrayState         // arrays with tasks not yet materialized
	arrayIDs     []string                       // the keys of arrays, sorted
	arrayRunning map[string]int                 // array id → its Scheduled and Running jobs (arrays with a limit)
	deps         map[string][]string            // job id → ids of unfinished jobs that depend on it
	depCheck     map[string]struct{}            // blocked ids whose dependencies the next pass looks at
	byWorker     map[string]map[string]struct{} // worker id → ids of its active jobs
	byArray      map[string]map[string]struct{} // array id → ids of its unfinished jobs

	recent *recentJobs // finished jobs lately published or read
	// strangers counts the versions published of jobs memory did not
	// hold; see submitted.
	strangers atomic.Uint64

	workers    *workerMap                      // immutable values
	cancelSent *xsync.MapOf[string, time.Time] // job id → when the last stop order went out

	// reserved holds, by job id, the room a preemption is making for a
	// pending job; only the dispatch loop reads and writes it.
	reserved map[string]reservation

	tenantMu sync.Mutex                        // serialises tenant writes (read, change, store, publish)
	tenants  *xsync.MapOf[string, *job.Tenant] // immutable values
	fair     *fairState

	pipelines *pipelineMap // immutable values, in id order too

	gc workerGC // worker records: their writes, and DOWN ones' deletion

	reasons reasonCache // what explains waiting jobs; see reasons.go

	// letGo holds, by job id, the pipeline of each pipeline job Retain let
	// retention delete, so that Forget looks only at those pipelines.
	letGo *xsync.MapOf[string, string]

	events hub
	wake   chan struct{}
	// alive is received from by Run between passes; see Alive.
	alive chan struct{}

	cron cronState // schedules; see cron.go

	idMu      sync.Mutex
	idEntropy io.Reader // guarded by idMu
	lastID    ulid.ULID // guarded by idMu; ids only grow, past reserved ranges too
}

// New returns a Cluster. Call Recover before serving, then Run.
func New(cfg Config) *Cluster {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Settings = cfg.Settings.withDefaults()
	s := &Cluster{
		cfg:          cfg,
		log:          cfg.Logger.With("component", "cluster"),
		needs:        make(map[string][]string),
		unblocked:    make(map[slot]int64),
		active:       make(map[string]*job.Job),
		queues:       make(map[string]*tenantQueue),
		counts:       make(map[string]*tenantCount),
		arrays:       make(map[string]*arrayState),
		arrayRunning: make(map[string]int),
		deps:         make(map[string][]string),
		depCheck:     make(map[string]struct{}),
		byWorker:     make(map[string]map[string]struct{}),
		byArray:      make(map[string]map[string]struct{}),
		recent:       newRecentJobs(recentJobsSize),
		workers:      newWorkerMap(),
		cancelSent:   xsync.NewMapOf[string, time.Time](),
		tenants:      xsync.NewMapOf[string, *job.Tenant](),
		pipelines:    newPipelineMap(),
		letGo:        xsync.NewMapOf[string, string](),
		fair:         newFairState(),
		reserved:     make(map[string]reservation),
		wake:         make(chan struct{}, 1),
		alive:        make(chan struct{}),
		idEntropy:    ulid.Monotonic(crand.Reader, 0),
	}
	s.delayed.t = &s.wait
	s.cron.schedules = make(map[string]*job.Schedule)
	s.cron.exprs = make(map[string]cron.Expr)
	s.cron.wake = make(chan struct{}, 1)
	return s
}

// Config returns the effective configuration, defaults filled in.
func (s *Cluster) Config() Config { return s.cfg }

// Recover rebuilds memory from the store in one pass over the jobs: the
// unfinished jobs, the arrays and which of their tasks are jobs already,
// the tenants' figures, the dependency index, the tenants, pipelines and
// known workers. Workers start disconnected and UNKNOWN (or DOWN, if they
// were): each has one lease, from now, to say Hello again before it is
// DOWN and the jobs it holds are lost.
func (s *Cluster) Recover(ctx context.Context) error {
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
	arrays, err := s.cfg.Store.Arrays(ctx)
	if err != nil {
		return fmt.Errorf("recover arrays: %w", err)
	}
	byArray := make(map[string]*job.Array, len(arrays))
	for _, a := range arrays {
		byArray[a.ID] = a
	}
	materialized := make(map[string][]int)
	var active []string
	withJobs := make(map[string]bool, len(pipelines)) // pipelines that have a job left
	s.mu.Lock()
	err = s.cfg.Store.ScanBriefs(ctx, func(b *job.Brief) error {
		if a := byArray[b.Array]; a != nil {
			if p, ok := a.Position(b.ID); ok {
				materialized[a.ID] = append(materialized[a.ID], p)
			}
		}
		if b.Pipeline != "" {
			withJobs[b.Pipeline] = true
		}
		switch {
		case b.State == job.Pending:
			s.addPending(b, now)
		case b.State.Active():
			active = append(active, b.ID)
		}
		return nil
	})
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("recover jobs: %w", err)
	}
	// Active jobs are few (what the workers hold): read them in full.
	full, err := s.cfg.Store.GetMany(ctx, active)
	if err != nil {
		return fmt.Errorf("recover active jobs: %w", err)
	}
	for _, j := range full {
		if j != nil && j.State.Active() {
			s.track(j)
			s.fair.started(j, now)
		}
	}
	s.mu.Lock()
	for _, a := range arrays {
		s.addArray(a, materialized[a.ID])
	}
	counts := make(map[string]int, len(s.counts))
	for t, c := range s.counts {
		counts[t] = c.Pending + c.Scheduled + c.Running
	}
	s.mu.Unlock()
	if changed, err := s.cfg.Store.SyncJobCounts(ctx, counts); err != nil {
		return fmt.Errorf("recover job counts: %w", err)
	} else if changed {
		s.log.Warn("job counts by tenant were off; rebuilt from the jobs", "tenants", len(counts))
	}
	// A crash between retention's delete and its forget leaves records
	// of pipelines whose jobs are all gone: the read above found them.
	gone := make(map[string]bool)
	for _, p := range pipelines {
		if !withJobs[p.ID] {
			gone[p.ID] = true
		}
	}
	s.forgetPipelines(ctx, gone)
	ws, err := s.cfg.Store.Workers(ctx)
	if err != nil {
		return fmt.Errorf("recover workers: %w", err)
	}
	for _, w := range ws {
		s.workers.Store(w.ID, recoveredWorker(w, now))
	}
	if err := s.recoverSchedules(ctx, now); err != nil {
		return err
	}
	s.poke()
	return nil
}

// Run is the dispatch loop: it runs a pass whenever something happened or
// the next timer is due, until ctx ends. It runs the cron loop beside it
// (runCron) and returns once both have stopped.
func (s *Cluster) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { s.runCron(ctx) })
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := s.Pass(ctx)
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(s.cfg.Now()), time.Millisecond)
		}
		timer.Reset(wait)
	idle:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-s.alive: // see Alive; no pass for it
				continue
			case <-s.wake:
			case <-timer.C:
			}
			break idle
		}
	}
}

// Alive returns nil once the dispatch loop (Run), between two passes, has
// answered, or ctx.Err() if ctx ends first: a pass that hangs (a store
// that no longer commits, a deadlock) leaves it unanswered. It is what the
// systemd watchdog pings are made of. Safe for concurrent use; it never
// runs a pass.
func (s *Cluster) Alive(ctx context.Context) error {
	select {
	case s.alive <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// poke wakes the dispatch loop; wake-ups that arrive during a pass coalesce.
func (s *Cluster) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Submit validates spec, stores a new Pending job durably and returns it.
// Errors: a *job.FieldError (wrapping job.ErrInvalid) naming the bad field;
// job.UnknownTenant (job.ErrNotFound) unless AutoTenants; job.OverQueued
// (job.ErrExhausted) past the tenant's max-queued limit; store errors.
func (s *Cluster) Submit(ctx context.Context, spec job.Spec) (*job.Job, error) {
	spec, now, err := s.checkSpec(ctx, spec)
	if err != nil {
		return nil, err
	}
	j := &job.Job{ID: s.newID(now), Spec: spec, State: job.Pending, Attempt: 1, CreatedAt: now}
	s.seal(j)
	mark := s.strangers.Load()
	if err := s.cfg.Store.Insert(ctx, []*job.Job{j}); err != nil {
		s.refused(spec.Tenant, err)
		return nil, err
	}
	s.submitted([]*job.Job{j}, mark)
	return j, nil
}

// checkSpec normalizes and validates a submitted spec, clears the fields
// only the server sets, and makes sure its tenant exists.
func (s *Cluster) checkSpec(ctx context.Context, spec job.Spec) (job.Spec, time.Time, error) {
	now := s.cfg.Now()
	spec, err := validSpec(spec, now)
	if err != nil {
		return spec, now, err
	}
	return spec, now, s.ensureTenant(ctx, spec.Tenant)
}

// validSpec is the part of checkSpec that reads nothing but the spec and
// the time: it clears what only pipelines and arrays set, normalizes and
// validates.
func validSpec(spec job.Spec, now time.Time) (job.Spec, error) {
	spec.Pipeline, spec.Step, spec.ContinueOnFailure = "", "", false
	spec.Array, spec.ArrayIndex, spec.ArrayLimit = "", 0, 0
	spec.Normalize()
	if err := spec.Validate(); err != nil {
		return spec, err
	}
	return spec, job.CheckDeadline("deadline", spec.Deadline, now)
}

// seal hands a new job with secret env values to Config.SealSecrets.
func (s *Cluster) seal(j *job.Job) {
	if s.cfg.SealSecrets != nil && len(j.Spec.SecretEnv) > 0 {
		s.cfg.SealSecrets(j)
	}
}

// newID returns a new job id, greater than every id made before.
func (s *Cluster) newID(now time.Time) string {
	return s.newIDs(now, 0)
}

// newIDs returns a new id and reserves the n ids that follow it (an
// array's tasks, see job.TaskID): no later id falls in that range.
func (s *Cluster) newIDs(now time.Time, n int) string {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	id := ulid.MustNew(ulid.Timestamp(now), s.idEntropy)
	if id.Compare(s.lastID) <= 0 {
		id = ulid.MustParse(job.AddID(s.lastID.String(), 1))
	}
	s.lastID = ulid.MustParse(job.AddID(id.String(), uint64(n)))
	return id.String()
}

// EffectivePriority is j's rank within its tenant now, with the configured
// aging (see scheduler.EffectivePriority).
func (s *Cluster) EffectivePriority(j *job.Job) float64 {
	return scheduler.EffectivePriority(j, s.cfg.Now(), s.cfg.Aging)
}

// Get returns a job: an active one from memory, a finished one from the
// recent cache, any other from the store, and a task of an array that is
// not materialized yet as it would be. Errors: job.ErrNotFound; store
// errors.
func (s *Cluster) Get(ctx context.Context, id string) (*job.Job, error) {
	s.mu.RLock()
	j := s.active[id]
	s.mu.RUnlock()
	if j != nil {
		return j, nil
	}
	if j := s.recent.get(id); j != nil {
		return j, nil
	}
	j, err := s.cfg.Store.Get(ctx, id)
	if errors.Is(err, job.ErrNotFound) {
		if t := s.lazyTask(id); t != nil {
			return t, nil
		}
	}
	return j, err
}

// Subscribe returns a subscription to job changes that pass filter (nil:
// all), buffered to buffer events.
func (s *Cluster) Subscribe(buffer int, filter func(*job.Job) bool) *Subscription {
	return s.events.subscribe(buffer, filter)
}

// Cancel stops a job in any non-terminal state: a Pending or Scheduled job
// is Cancelled at once; a Running job gets a stop order and ends Cancelled
// when its agent confirms (or when the confirmation is overdue). Cancelling
// a job whose cancel is already under way returns it unchanged. Errors:
// job.ErrNotFound; job.ErrConflict when the job is already terminal.
func (s *Cluster) Cancel(ctx context.Context, id, reason string) (*job.Job, error) {
	if reason == "" {
		reason = scheduler.ReasonUserCancel
	}
	for range 10 {
		cur, err := s.Get(ctx, id)
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
		u := job.Change(cur, next)
		u.Create = s.isLazy(cur)
		errs, err := s.apply(ctx, []job.Update{u})
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
func (s *Cluster) cancelNext(cur *job.Job, reason string) *job.Job {
	switch {
	case cur.State == job.Running && cur.Stop != job.NoStop && cur.Stop != job.StopRequeue:
		return nil
	case cur.State == job.Running:
		// A user's cancel also overrides a preemption under way.
		next := cur.Clone()
		next.CancelRequested, next.Stop = reason, job.StopCancel
		return next
	}
	return scheduler.Cancelled(cur, reason, s.cfg.Now())
}

// cancelled sends the orders a committed cancel of cur needs.
func (s *Cluster) cancelled(cur, next *job.Job, reason string) {
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
func (s *Cluster) refresh(ctx context.Context, id string) {
	if j, err := s.cfg.Store.Get(ctx, id); err == nil {
		s.publish(j)
	}
}

// apply writes updates through the store and publishes those that commit.
// Creates of array tasks are marked materialized before they are published.
func (s *Cluster) apply(ctx context.Context, updates []job.Update) ([]error, error) {
	errs, err := s.cfg.Store.Apply(ctx, updates)
	if err != nil {
		return nil, err
	}
	for i, u := range updates {
		if errs[i] == nil {
			if u.Create {
				s.materialized(u.Next)
			}
			s.publish(u.Next)
		}
	}
	return errs, nil
}

// publish makes a committed job version visible. Versions only move
// forward, so a slow publisher cannot overwrite a newer record.
func (s *Cluster) publish(j *job.Job) {
	prev, won := s.track(j)
	if !won {
		return
	}
	if prev != nil && (!j.State.Active() || j.Attempt != prev.Attempt) {
		end := j.FinishedAt
		if end.IsZero() {
			end = s.cfg.Now()
		}
		_, known := s.tenants.Load(prev.Spec.Tenant)
		s.fair.released(prev, end, s.weight(prev.Spec.Tenant), known)
	}
	if j.State.Terminal() {
		s.recent.put(j)
		s.cancelSent.Delete(j.ID)
		if s.cfg.Observer != nil {
			s.cfg.Observer.Finished(j.Spec.Tenant, j.State, 1)
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

// track files a committed job version in memory and reports whether it is
// newer than what memory had, with the active version it replaces.
func (s *Cluster) track(j *job.Job) (prev *job.Job, won bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl, ok := s.wait.lookup(j.ID); ok {
		e := s.wait.at(sl)
		if e.version >= j.Version {
			return nil, false
		}
		tenant, res, array := s.tenantList[e.tenant].name, e.res, s.wait.arrays.get(e.array)
		s.unfile(sl)
		s.addWaiting(tenant, -1, res)
		unindex(s.byArray, array, j.ID)
	} else if old, ok := s.active[j.ID]; ok {
		if old.Version >= j.Version {
			return nil, false
		}
		prev = old
		s.unactive(old)
	} else if r := s.recent.get(j.ID); r != nil {
		if r.Version >= j.Version {
			return nil, false // ended meanwhile
		}
	} else {
		s.strangers.Add(1)
	}
	switch {
	case j.State == job.Pending:
		b := j.Brief()
		s.addPending(&b, s.cfg.Now())
	case j.State.Active():
		s.active[j.ID] = j
		s.addActive(j, 1)
		index(s.byWorker, j.Worker, j.ID)
		index(s.byArray, j.Spec.Array, j.ID)
	default:
		for _, k := range s.deps[j.ID] {
			s.depCheck[k] = struct{}{}
		}
		for _, d := range j.Spec.DependsOn {
			kids := slices.DeleteFunc(slices.Clone(s.deps[d]), func(k string) bool { return k == j.ID })
			if len(kids) == 0 {
				delete(s.deps, d)
			} else {
				s.deps[d] = kids
			}
		}
	}
	return prev, true
}

// known reports whether memory has a version of job id. The caller holds
// mu.
func (s *Cluster) known(id string) bool {
	if _, ok := s.wait.lookup(id); ok {
		return true
	}
	if _, ok := s.active[id]; ok {
		return true
	}
	return s.recent.get(id) != nil
}

// addPending files a Pending job in memory: in its tenant's queue, the
// delayed heap or the blocked set. The caller holds mu.
func (s *Cluster) addPending(b *job.Brief, now time.Time) {
	c := s.count(b.Tenant)
	b.Tenant = c.name
	w := scheduler.WaitingFrom(b, now, s.cfg.Aging)
	sl := s.wait.add(&w, c.idx, b.Version, false)
	isBlocked := len(b.DependsOn) > 0
	if isBlocked {
		s.needs[b.ID] = b.DependsOn
		s.depCheck[b.ID] = struct{}{}
		for _, d := range b.DependsOn {
			s.addDependent(d, b.ID)
		}
	}
	s.file(sl, isBlocked, now)
	s.addWaiting(b.Tenant, 1, b.Resources)
	if b.Array != "" {
		// Not to hold on to the record the brief was decoded from.
		index(s.byArray, s.wait.arrays.get(s.wait.at(sl).array), strings.Clone(b.ID))
	}
}

// intern returns the one copy of a tenant's name the cluster keeps, so
// that the jobs in memory share it, and files its counts. The caller
// holds mu.
func (s *Cluster) intern(tenant string) string {
	if c, ok := s.counts[tenant]; ok {
		return c.name
	}
	tenant = strings.Clone(tenant)
	c := &tenantCount{name: tenant, idx: uint32(len(s.tenantList))}
	s.counts[tenant] = c
	s.tenantList = append(s.tenantList, c)
	return tenant
}

// unactive takes an active job out of memory. The caller holds mu.
func (s *Cluster) unactive(j *job.Job) {
	delete(s.active, j.ID)
	s.addActive(j, -1)
	unindex(s.byWorker, j.Worker, j.ID)
	unindex(s.byArray, j.Spec.Array, j.ID)
}

// index and unindex keep a set of ids under a key ("" is no key).
func index(m map[string]map[string]struct{}, key, id string) {
	if key == "" {
		return
	}
	ids := m[key]
	if ids == nil {
		ids = make(map[string]struct{})
		m[key] = ids
	}
	ids[id] = struct{}{}
}

func unindex(m map[string]map[string]struct{}, key, id string) {
	if ids := m[key]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(m, key)
		}
	}
}

// addDependent records that child waits for dep. The caller holds mu.
func (s *Cluster) addDependent(dep, child string) {
	kids := s.deps[dep]
	if !slices.Contains(kids, child) {
		s.deps[dep] = append(kids, child)
	}
}

// dependents returns the ids of the unfinished jobs that wait for id.
func (s *Cluster) dependents(id string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.deps[id])
}

// Forget drops finished jobs from the recent cache after retention deleted
// them from the store. Pipelines none of whose jobs is left are deleted
// too: of those Retain let go, so a round costs the jobs it deleted, not
// every pipeline's.
func (s *Cluster) Forget(ctx context.Context, ids []string) {
	touched := make(map[string]bool)
	for _, id := range ids {
		s.recent.drop(id)
		if p, ok := s.letGo.Load(id); ok {
			touched[p] = true
		}
	}
	// What Retain let go and retention did not delete after all (it
	// changed meanwhile) is asked again next round.
	s.letGo.Clear()
	s.forgetPipelines(ctx, touched)
}
