package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hodei-jobs/hodei/cron"
	"github.com/hodei-jobs/hodei/job"
)

// Cron schedules. Memory holds every schedule (they are few), keyed by
// job.ScheduleKey; every write to one — add, pause, resume, remove, a tick
// fired or skipped — runs under cronState.mu: read, decide, store, publish.
// The store compares the version of each write, so a fire replayed (a
// retry after a crash) cannot fire its tick twice; and a tick's jobs and
// the schedule's next run commit together, so a crash before that commit
// leaves the tick due, to fire after the restart under the catch-up
// policy. The loop (runCron) wakes at the earliest next run.

// cronRetry is how soon the loop tries again after a store error.
const cronRetry = time.Second

// cronState is the cluster's part for schedules.
type cronState struct {
	mu        sync.Mutex               // guards everything below; held across a schedule's store writes
	schedules map[string]*job.Schedule // by key; immutable values
	exprs     map[string]cron.Expr     // parsed, by key
	started   time.Time                // when Recover ran: ticks before it were missed while down
	wake      chan struct{}
}

// ReasonCronReplaced is the reason on a job an overlap "replace" cancelled.
const ReasonCronReplaced = "replaced by the next tick of its schedule"

// checkSchedule validates a new schedule (its tenant set): its fields, its
// expression and zone, and what it submits.
func (s *Cluster) checkSchedule(sc *job.Schedule, now time.Time) (cron.Expr, error) {
	if err := sc.Validate(); err != nil {
		return cron.Expr{}, err
	}
	e, err := cron.Parse(sc.Expr, sc.TimeZone)
	if err != nil {
		return cron.Expr{}, err
	}
	if sc.Pipeline != nil {
		sc.Pipeline.Tenant = sc.Tenant
		if _, err := sc.Pipeline.Jobs(job.PipelineLimits{MaxMatrix: s.cfg.MaxMatrix, MaxLinks: s.cfg.MaxPipelineLinks}); err != nil {
			return e, err
		}
		for _, st := range append([]job.Step{{Spec: sc.Pipeline.Defaults}}, sc.Pipeline.Steps...) {
			if err := s.cronSpecRules(st.Spec); err != nil {
				return e, err
			}
		}
		return e, nil
	}
	if err := s.cronSpecRules(sc.Spec); err != nil {
		return e, inJob(err)
	}
	sc.Spec.Tenant = sc.Tenant
	spec, err := validSpec(sc.Spec, now)
	if err != nil {
		return e, inJob(err)
	}
	if len(spec.DependsOn) > 0 {
		return e, inJob(job.Invalid("after", "a schedule's jobs cannot depend on given jobs"))
	}
	sc.Spec = spec
	return e, nil
}

// inJob names the field of a schedule's job spec an error is about as the
// request names it: "job.timeout".
func inJob(err error) error {
	if fe, ok := errors.AsType[*job.FieldError](err); ok {
		return &job.FieldError{Field: "job." + fe.Field, Rule: fe.Rule}
	}
	return err
}

// cronSpecRules are what a schedule's spec may not hold: a fixed deadline
// (each tick would share it), and secret values when there is nothing to
// seal them with (a schedule record keeps its spec).
func (s *Cluster) cronSpecRules(sp job.Spec) error {
	if !sp.Deadline.IsZero() {
		return job.Invalid("deadline", "a schedule's jobs cannot have a fixed deadline")
	}
	if len(sp.SecretEnv) > 0 && (s.cfg.SealScheduleSecrets == nil || s.cfg.OpenScheduleSecrets == nil) {
		return job.Invalid("secret_env", "a schedule's jobs cannot have secret values (they would be kept unsealed in the schedule)")
	}
	return nil
}

// scheduleSecrets replaces every secret env map of sc's job template (its
// job's, or its pipeline's defaults' and steps') with f's result. A
// pipeline's steps are copied first: they may be shared with the stored
// schedule.
func scheduleSecrets(sc *job.Schedule, f func(map[string]string) (map[string]string, error)) error {
	do := func(env *map[string]string) error {
		if len(*env) == 0 {
			return nil
		}
		out, err := f(*env)
		*env = out
		return err
	}
	if sc.Pipeline == nil {
		return do(&sc.Spec.SecretEnv)
	}
	p := *sc.Pipeline
	p.Steps = slices.Clone(p.Steps)
	sc.Pipeline = &p
	if err := do(&p.Defaults.SecretEnv); err != nil {
		return err
	}
	for i := range p.Steps {
		if err := do(&p.Steps[i].Spec.SecretEnv); err != nil {
			return err
		}
	}
	return nil
}

// CronAdd validates and stores a new schedule, its next run the first
// tick after now, and wakes the cron loop. Errors: *job.FieldError
// ("schedule", "timezone", "name", the spec's fields); job.ErrConflict
// when its tenant has a schedule of that name; the tenant errors of
// Submit; store errors.
func (s *Cluster) CronAdd(ctx context.Context, sc job.Schedule) (*job.Schedule, error) {
	if sc.Tenant == "" {
		sc.Tenant = job.DefaultTenant
	}
	now := s.cfg.Now()
	e, err := s.checkSchedule(&sc, now)
	if err != nil {
		return nil, err
	}
	if err := s.ensureTenant(ctx, sc.Tenant); err != nil {
		return nil, err
	}
	if s.cfg.SealScheduleSecrets != nil {
		key := sc.Key()
		_ = scheduleSecrets(&sc, func(env map[string]string) (map[string]string, error) {
			return s.cfg.SealScheduleSecrets(key, env), nil
		})
	}
	sc.CreatedAt, sc.Version = now, 0
	sc.NextRun = e.Next(now)
	sc.LastTick, sc.LastRun, sc.LastJob, sc.Skipped, sc.LastSkip = time.Time{}, time.Time{}, "", 0, ""
	s.cron.mu.Lock()
	defer s.cron.mu.Unlock()
	if err := s.cfg.Store.PutSchedule(ctx, &sc, 0); err != nil {
		if errors.Is(err, job.ErrConflict) {
			return nil, fmt.Errorf("schedule %q of tenant %s already exists: %w", sc.Name, sc.Tenant, job.ErrConflict)
		}
		return nil, err
	}
	s.publishSchedule(&sc, e)
	return &sc, nil
}

// Schedules returns the schedules of tenants (nil: all), by key.
func (s *Cluster) Schedules(tenants []string) []*job.Schedule {
	s.cron.mu.Lock()
	defer s.cron.mu.Unlock()
	var out []*job.Schedule
	for _, k := range slices.Sorted(maps.Keys(s.cron.schedules)) {
		sc := s.cron.schedules[k]
		if tenants == nil || slices.Contains(tenants, sc.Tenant) {
			out = append(out, sc)
		}
	}
	return out
}

// Schedule returns one schedule, or job.ErrNotFound.
func (s *Cluster) Schedule(tenant, name string) (*job.Schedule, error) {
	s.cron.mu.Lock()
	defer s.cron.mu.Unlock()
	return s.scheduleLocked(tenant, name)
}

func (s *Cluster) scheduleLocked(tenant, name string) (*job.Schedule, error) {
	sc, ok := s.cron.schedules[job.ScheduleKey(tenant, name)]
	if !ok {
		return nil, fmt.Errorf("schedule %q of tenant %s: %w", name, tenant, job.ErrNotFound)
	}
	return sc, nil
}

// CronPause stops a schedule's ticks; pausing a paused one changes
// nothing.
func (s *Cluster) CronPause(ctx context.Context, tenant, name string) (*job.Schedule, error) {
	return s.changeSchedule(ctx, tenant, name, func(n *job.Schedule, _ cron.Expr) bool {
		changed := !n.Paused
		n.Paused = true
		return changed
	})
}

// CronResume starts a paused schedule's ticks again from the first tick
// after now: those that passed while it was paused are skipped.
func (s *Cluster) CronResume(ctx context.Context, tenant, name string) (*job.Schedule, error) {
	now := s.cfg.Now()
	return s.changeSchedule(ctx, tenant, name, func(n *job.Schedule, e cron.Expr) bool {
		if !n.Paused {
			return false
		}
		n.Paused = false
		n.NextRun = e.Next(now)
		return true
	})
}

// changeSchedule applies change to a copy of a schedule and, when it
// reports a change, stores and publishes the copy.
func (s *Cluster) changeSchedule(ctx context.Context, tenant, name string, change func(*job.Schedule, cron.Expr) bool) (*job.Schedule, error) {
	s.cron.mu.Lock()
	defer s.cron.mu.Unlock()
	cur, err := s.scheduleLocked(tenant, name)
	if err != nil {
		return nil, err
	}
	n := *cur
	e := s.cron.exprs[cur.Key()]
	if !change(&n, e) {
		return cur, nil
	}
	if err := s.cfg.Store.PutSchedule(ctx, &n, cur.Version); err != nil {
		return nil, s.reloadSchedule(ctx, cur, err)
	}
	s.publishSchedule(&n, e)
	return &n, nil
}

// CronRemove deletes a schedule, not the jobs it submitted.
func (s *Cluster) CronRemove(ctx context.Context, tenant, name string) error {
	s.cron.mu.Lock()
	defer s.cron.mu.Unlock()
	cur, err := s.scheduleLocked(tenant, name)
	if err != nil {
		return err
	}
	if err := s.cfg.Store.DeleteSchedule(ctx, cur.Key()); err != nil && !errors.Is(err, job.ErrNotFound) {
		return err
	}
	delete(s.cron.schedules, cur.Key())
	delete(s.cron.exprs, cur.Key())
	return nil
}

// CronRun submits a schedule's job (or pipeline) now, outside its ticks
// and whatever its overlap policy, and returns its id; the schedule's next
// run does not move.
func (s *Cluster) CronRun(ctx context.Context, tenant, name string) (string, error) {
	s.cron.mu.Lock()
	defer s.cron.mu.Unlock()
	cur, err := s.scheduleLocked(tenant, name)
	if err != nil {
		return "", err
	}
	now := s.cfg.Now()
	n := *cur
	return s.submitTick(ctx, &n, s.cron.exprs[cur.Key()], now, now, true)
}

// publishSchedule puts a stored schedule in memory and wakes the loop.
// s.cron.mu must be held.
func (s *Cluster) publishSchedule(sc *job.Schedule, e cron.Expr) {
	s.cron.schedules[sc.Key()] = sc
	s.cron.exprs[sc.Key()] = e
	select {
	case s.cron.wake <- struct{}{}:
	default:
	}
}

// reloadSchedule reads a schedule back from the store after a write of it
// failed with err, so that memory follows what is stored (a version that
// moved, a record that is gone), and returns err.
func (s *Cluster) reloadSchedule(ctx context.Context, cur *job.Schedule, err error) error {
	if !errors.Is(err, job.ErrConflict) && !errors.Is(err, job.ErrNotFound) {
		return err
	}
	all, rerr := s.cfg.Store.Schedules(ctx)
	if rerr != nil {
		return err
	}
	delete(s.cron.schedules, cur.Key())
	for _, sc := range all {
		if sc.Key() == cur.Key() {
			s.cron.schedules[sc.Key()] = sc
		}
	}
	return err
}

// recoverSchedules loads the stored schedules; started is when the server
// started, which tells the ticks missed while it was down from the others.
func (s *Cluster) recoverSchedules(ctx context.Context, started time.Time) error {
	all, err := s.cfg.Store.Schedules(ctx)
	if err != nil {
		return fmt.Errorf("recover schedules: %w", err)
	}
	s.cron.mu.Lock()
	defer s.cron.mu.Unlock()
	s.cron.started = started
	for _, sc := range all {
		e, err := cron.Parse(sc.Expr, sc.TimeZone)
		if err != nil {
			// Stored after the same parse: a zone database that lost the zone.
			s.log.Error("schedule cannot be parsed any more; it will not fire", "schedule", sc.Key(), "err", err)
			continue
		}
		s.cron.schedules[sc.Key()] = sc
		s.cron.exprs[sc.Key()] = e
	}
	return nil
}

// runCron fires the schedules' ticks as they come due, until ctx ends.
func (s *Cluster) runCron(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := s.FireDue(ctx)
		wait := time.Hour
		if !next.IsZero() {
			wait = min(max(next.Sub(s.cfg.Now()), time.Millisecond), time.Hour)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.cron.wake:
		case <-timer.C:
		}
	}
}

// FireDue fires (or skips) every tick due now of every schedule not
// paused, and returns the earliest next run left (zero: none). A schedule
// whose store write failed is tried again cronRetry later.
func (s *Cluster) FireDue(ctx context.Context) time.Time {
	s.cron.mu.Lock()
	defer s.cron.mu.Unlock()
	now := s.cfg.Now()
	var earliest time.Time
	for _, k := range slices.Sorted(maps.Keys(s.cron.schedules)) {
		sc := s.cron.schedules[k]
		if sc.Paused || sc.NextRun.IsZero() {
			continue
		}
		next := sc.NextRun
		if !next.After(now) {
			var err error
			if next, err = s.fireSchedule(ctx, sc, now); err != nil {
				s.log.Log(ctx, job.StoreErrLevel(err), "schedule tick not stored; trying again", "schedule", k, "err", err)
				next = now.Add(cronRetry)
			}
		}
		if earliest.IsZero() || next.Before(earliest) {
			earliest = next
		}
	}
	return earliest
}

// fireSchedule fires or skips the due ticks of sc by its policies, one
// commit per tick, and returns its next run. s.cron.mu must be held.
func (s *Cluster) fireSchedule(ctx context.Context, sc *job.Schedule, now time.Time) (time.Time, error) {
	e := s.cron.exprs[sc.Key()]
	plan := cron.Plan(e, sc.NextRun, now, s.cron.started, sc.CatchUp, sc.StartingDeadline)
	cur := *sc
	cur.Skipped += int64(plan.Skipped)
	if plan.SkipWhy != "" {
		cur.LastSkip = plan.SkipWhy
	}
	if len(plan.Fire) == 0 {
		cur.NextRun, cur.LastTick = plan.NextTick, maxTime(cur.LastTick, now)
		return cur.NextRun, s.putSchedule(ctx, sc, &cur, e)
	}
	for i, tick := range plan.Fire {
		cur.NextRun = plan.NextTick
		if i+1 < len(plan.Fire) {
			cur.NextRun = plan.Fire[i+1]
		}
		cur.LastTick = tick
		if why, err := s.overlap(ctx, &cur); err != nil {
			return sc.NextRun, err
		} else if why != "" {
			cur.Skipped++
			cur.LastSkip = why
			if err := s.putSchedule(ctx, s.cron.schedules[sc.Key()], &cur, e); err != nil {
				return sc.NextRun, err
			}
			continue
		}
		if _, err := s.submitTick(ctx, &cur, e, tick, now, false); err != nil {
			return sc.NextRun, err
		}
	}
	return cur.NextRun, nil
}

// putSchedule stores n in place of cur (a skip: no job) and publishes it.
func (s *Cluster) putSchedule(ctx context.Context, cur, n *job.Schedule, e cron.Expr) error {
	if err := s.cfg.Store.PutSchedule(ctx, n, cur.Version); err != nil {
		return s.reloadSchedule(ctx, cur, err)
	}
	c := *n
	s.publishSchedule(&c, e)
	return nil
}

// overlap applies the overlap policy before a tick of n: the reason to
// skip the tick, or "" to submit it (after cancelling the previous job
// for "replace").
func (s *Cluster) overlap(ctx context.Context, n *job.Schedule) (string, error) {
	if n.LastJob == "" || n.Overlap == job.OverlapAllow {
		return "", nil
	}
	running, err := s.cronRunning(ctx, n)
	if err != nil || !running {
		return "", err
	}
	if n.Overlap == job.OverlapForbid {
		return fmt.Sprintf("%s had not ended (overlap forbid)", n.LastJob), nil
	}
	var cerr error
	if n.Pipeline != nil {
		_, cerr = s.CancelPipeline(ctx, n.LastJob, ReasonCronReplaced)
	} else {
		_, cerr = s.Cancel(ctx, n.LastJob, ReasonCronReplaced)
	}
	if cerr != nil && !errors.Is(cerr, job.ErrConflict) && !errors.Is(cerr, job.ErrNotFound) {
		return "", cerr
	}
	return "", nil
}

// cronRunning reports whether the last job (or pipeline) of n has not
// ended.
func (s *Cluster) cronRunning(ctx context.Context, n *job.Schedule) (bool, error) {
	if n.Pipeline != nil {
		st, err := s.Pipeline(ctx, n.LastJob)
		if errors.Is(err, job.ErrNotFound) {
			return false, nil
		}
		return err == nil && !st.State.Terminal(), err
	}
	j, err := s.Get(ctx, n.LastJob)
	if errors.Is(err, job.ErrNotFound) {
		return false, nil
	}
	return err == nil && !j.State.Terminal(), err
}

// CronLastState is the state of the last job (or pipeline) a schedule
// submitted: "" when none, "gone" when retention deleted it.
func (s *Cluster) CronLastState(ctx context.Context, sc *job.Schedule) string {
	if sc.LastJob == "" {
		return ""
	}
	if sc.Pipeline != nil {
		st, err := s.Pipeline(ctx, sc.LastJob)
		if err != nil {
			return "gone"
		}
		return st.State.String()
	}
	j, err := s.Get(ctx, sc.LastJob)
	if err != nil {
		return "gone"
	}
	return j.State.String()
}

// submitTick makes the job (or pipeline) of n's tick and stores it with n
// (whose NextRun the caller set) in one commit, then publishes both; it
// returns the id submitted. A submit refused for the tenant (its queued
// limit, a tenant deleted) or for the spec is returned when manual (a
// `cron run`); a tick's is recorded as a skip, and is no error of the
// loop. s.cron.mu must be held.
func (s *Cluster) submitTick(ctx context.Context, n *job.Schedule, e cron.Expr, tick, now time.Time, manual bool) (string, error) {
	cur := s.cron.schedules[n.Key()]
	labels := map[string]string{job.CronLabel: n.Name}
	env := map[string]string{job.CronTimeEnv: tick.In(e.Location()).Format(time.RFC3339), job.CronNameEnv: n.Name}
	var (
		p    *job.Pipeline
		jobs []*job.Job
		id   string
	)
	// The template's secret values are sealed for the schedule; each job
	// gets them sealed for itself (s.seal, buildPipeline).
	tpl := *n
	if s.cfg.OpenScheduleSecrets != nil {
		key := n.Key()
		if err := scheduleSecrets(&tpl, func(env map[string]string) (map[string]string, error) {
			return s.cfg.OpenScheduleSecrets(key, env)
		}); err != nil {
			return "", s.refusedTick(ctx, cur, n, e, err, manual)
		}
	}
	if tpl.Pipeline != nil {
		spec := *tpl.Pipeline
		spec.Tenant = n.Tenant
		spec.Defaults.Labels = merged(spec.Defaults.Labels, labels)
		spec.Defaults.Env = merged(spec.Defaults.Env, env)
		var err error
		if p, jobs, err = s.buildPipeline(spec, now); err != nil {
			return "", s.refusedTick(ctx, cur, n, e, err, manual)
		}
		id = p.ID
	} else {
		spec := tpl.Spec
		spec.Tenant = n.Tenant
		if spec.Name == "" {
			spec.Name = n.Name // jobs ls shows whose tick it is
		}
		spec.Labels = merged(spec.Labels, labels)
		spec.Env = merged(spec.Env, env)
		spec, err := validSpec(spec, now)
		if err != nil {
			return "", s.refusedTick(ctx, cur, n, e, err, manual)
		}
		j := &job.Job{ID: s.newID(now), Spec: spec, State: job.Pending, Attempt: 1, CreatedAt: now}
		s.seal(j)
		jobs, id = []*job.Job{j}, j.ID
	}
	next := *n
	next.LastRun, next.LastJob = now, id
	mark := s.strangers.Load()
	if err := s.cfg.Store.FireSchedule(ctx, &next, cur.Version, p, jobs); err != nil {
		if isRefusal(err) {
			s.refused(n.Tenant, err)
			return "", s.refusedTick(ctx, cur, n, e, err, manual)
		}
		return "", s.reloadSchedule(ctx, cur, err)
	}
	*n = next
	c := next
	s.publishSchedule(&c, e)
	if p != nil {
		s.pipelines.Store(p.ID, p)
	}
	s.submitted(jobs, mark)
	return id, nil
}

// refusedTick records a tick whose submit was refused (err) as skipped;
// a manual run's refusal is returned instead.
func (s *Cluster) refusedTick(ctx context.Context, cur, n *job.Schedule, e cron.Expr, err error, manual bool) error {
	if manual {
		return err
	}
	n.Skipped++
	n.LastSkip = "submit refused: " + err.Error()
	if perr := s.putSchedule(ctx, cur, n, e); perr != nil {
		return perr
	}
	*n = *s.cron.schedules[n.Key()]
	return nil
}

// isRefusal reports whether a store error refuses the request itself (the
// same request would fail again) rather than failing to store it.
func isRefusal(err error) bool {
	return errors.Is(err, job.ErrInvalid) || errors.Is(err, job.ErrExhausted) ||
		(errors.Is(err, job.ErrNotFound) && !errors.Is(err, job.ErrUnwritable))
}

// merged returns a new map of base's pairs and then add's.
func merged(base, add map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(add))
	maps.Copy(out, base)
	maps.Copy(out, add)
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
