package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// Reasons recorded on the jobs of pipelines.
const (
	ReasonPipelineCancelled = "pipeline cancelled"
)

// cancelAll cancels the jobs with the given ids in one commit, skipping
// those that ended, and returns the ids it cancelled or is stopping. A job
// that changed meanwhile is cancelled on its own.
func (s *Cluster) cancelAll(ctx context.Context, ids []string, reason string) ([]string, error) {
	if reason == "" {
		reason = scheduler.ReasonUserCancel
	}
	var (
		done    []string
		olds    []*job.Job
		updates []job.Update
	)
	jobs, err := s.GetMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, cur := range jobs {
		if cur == nil || cur.State.Terminal() {
			continue
		}
		id := cur.ID
		next := s.cancelNext(cur, reason)
		if next == nil {
			done = append(done, id) // already stopping
			continue
		}
		olds = append(olds, cur)
		u := job.Change(cur, next)
		u.Create = s.isLazy(cur)
		updates = append(updates, u)
	}
	if len(updates) == 0 {
		return done, nil
	}
	errs, err := s.apply(ctx, updates)
	if err != nil {
		return done, err
	}
	for i, u := range updates {
		id := u.Next.ID
		if errs[i] == nil {
			s.cancelled(olds[i], u.Next, reason)
			done = append(done, id)
			continue
		}
		switch _, err := s.Cancel(ctx, id, reason); {
		case err == nil:
			done = append(done, id)
		case errors.Is(err, job.ErrConflict), errors.Is(err, job.ErrNotFound):
			// ended meanwhile
		default:
			return done, err
		}
	}
	slices.Sort(done)
	return done, nil
}

// RunPipeline validates a pipeline, expands its steps into jobs (one per
// matrix combination), each waiting for every job of the steps it needs,
// and stores the pipeline and all its jobs in one commit, or nothing.
// Errors: a *job.FieldError naming the step and the field; the tenant and
// queued-limit errors of Submit; store errors.
func (s *Cluster) RunPipeline(ctx context.Context, spec job.PipelineSpec) (*job.Pipeline, []*job.Job, error) {
	if spec.Tenant == "" {
		spec.Tenant = job.DefaultTenant
	}
	now := s.cfg.Now()
	p, jobs, err := s.buildPipeline(spec, now)
	if err != nil {
		return nil, nil, err
	}
	if err := s.ensureTenant(ctx, spec.Tenant); err != nil {
		return nil, nil, err
	}
	mark := s.strangers.Load()
	if err := s.cfg.Store.InsertPipeline(ctx, p, jobs); err != nil {
		s.refused(spec.Tenant, err)
		return nil, nil, err
	}
	s.pipelines.Store(p.ID, p)
	s.submitted(jobs, mark)
	return p, jobs, nil
}

// buildPipeline validates a pipeline spec (its tenant set) and expands it
// into its record and jobs, with new ids, stored nowhere yet.
func (s *Cluster) buildPipeline(spec job.PipelineSpec, now time.Time) (*job.Pipeline, []*job.Job, error) {
	expanded, err := spec.Jobs(job.PipelineLimits{MaxMatrix: s.cfg.MaxMatrix, MaxLinks: s.cfg.MaxPipelineLinks})
	if err != nil {
		return nil, nil, err
	}
	p := &job.Pipeline{ID: s.newID(now), Name: spec.Name, Tenant: spec.Tenant, CreatedAt: now}
	stepJobs := make(map[string][]string, len(spec.Steps))
	var jobs []*job.Job
	for i, st := range spec.Steps {
		for _, sj := range expanded[i] {
			js := sj.Spec
			if err := job.CheckDeadline("steps."+st.Name+".deadline", js.Deadline, now); err != nil {
				return nil, nil, err
			}
			js.Pipeline = p.ID
			js.Normalize()
			j := &job.Job{ID: s.newID(now), Spec: js, State: job.Pending, Attempt: 1, CreatedAt: now}
			s.seal(j)
			jobs = append(jobs, j)
			stepJobs[st.Name] = append(stepJobs[st.Name], jobs[len(jobs)-1].ID)
		}
	}
	k := 0
	for i, st := range spec.Steps {
		var deps []string
		for _, n := range st.Needs {
			deps = append(deps, stepJobs[n]...)
		}
		for range expanded[i] {
			jobs[k].Spec.DependsOn = deps
			k++
		}
		p.Steps = append(p.Steps, job.PipelineStep{Name: st.Name, Needs: slices.Clone(st.Needs),
			ContinueOnFailure: st.ContinueOnFailure, Jobs: stepJobs[st.Name]})
	}
	return p, jobs, nil
}

// submitted publishes jobs just inserted: new and Pending, they are filed
// under one hold of the lock, then announced. mark is s.strangers read
// before their insert: a later version of one of them published meanwhile
// (a cancel, read from the store) was of a job memory did not hold, so
// while the count has not moved none was, and the jobs are filed without
// looking each one up.
func (s *Cluster) submitted(jobs []*job.Job, mark uint64) {
	now := s.cfg.Now()
	s.mu.Lock()
	moved := s.strangers.Load() != mark
	for _, j := range jobs {
		if moved && s.known(j.ID) {
			continue
		}
		b := j.Brief()
		s.addPending(&b, now)
	}
	s.mu.Unlock()
	byTenant := make(map[string]int, 1)
	for _, j := range jobs {
		byTenant[j.Spec.Tenant]++
		if s.cfg.OnChange != nil {
			s.cfg.OnChange(j)
		}
		s.events.publish(j)
	}
	if s.cfg.Observer != nil {
		for t, n := range byTenant {
			s.cfg.Observer.Submitted(t, n)
		}
	}
	s.poke()
}

// PipelineStatus is a pipeline with its state and its jobs.
type PipelineStatus struct {
	Pipeline *job.Pipeline
	State    job.PipelineState
	Jobs     []*job.Job // in step order; jobs retention deleted are left out
}

// Pipeline returns one pipeline with its jobs, or job.ErrNotFound.
func (s *Cluster) Pipeline(ctx context.Context, id string) (PipelineStatus, error) {
	p, ok := s.pipelines.Load(id)
	if !ok {
		return PipelineStatus{}, fmt.Errorf("pipeline %s: %w", id, job.ErrNotFound)
	}
	jobs, err := s.pipelineJobs(ctx, p)
	if err != nil {
		return PipelineStatus{}, err
	}
	st := PipelineStatus{Pipeline: p, State: p.StateOf(func(id string) *job.Job { return jobs[id] })}
	for _, jid := range p.JobIDs() {
		if j := jobs[jid]; j != nil {
			st.Jobs = append(st.Jobs, j)
		}
	}
	return st, nil
}

// pipelineJobs reads the jobs of a pipeline that are left, by id.
func (s *Cluster) pipelineJobs(ctx context.Context, p *job.Pipeline) (map[string]*job.Job, error) {
	ids := p.JobIDs()
	jobs, err := s.GetMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*job.Job, len(ids))
	for i, j := range jobs {
		if j != nil {
			out[ids[i]] = j
		}
	}
	return out, nil
}

// Page sizes of Pipelines.
const (
	DefaultPipelinePage = 50
	MaxPipelinePage     = 1000
)

// PipelineFilter is what Pipelines lists: the pipelines of Tenants (every
// tenant when nil; none when empty but not nil), newest first, after the
// id After (from the newest when ""), at most Limit of them (0:
// DefaultPipelinePage; at most MaxPipelinePage).
type PipelineFilter struct {
	Tenants []string
	After   string
	Limit   int
}

// Pipelines returns one page of pipelines with their states, without
// their jobs, newest first, and the page token of the next page ("" when
// there is none): the last id of this one. It finds the page in an
// ordered index (per tenant for f.Tenants) and reads only the page's
// pipelines' jobs, so a page costs its size, not the number of pipelines
// kept. A pipeline created after the first page was read is newer than
// every page token, so paging on neither skips nor repeats one.
func (s *Cluster) Pipelines(ctx context.Context, f PipelineFilter) ([]PipelineStatus, string, error) {
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = DefaultPipelinePage
	case limit > MaxPipelinePage:
		limit = MaxPipelinePage
	}
	if f.Tenants != nil && len(f.Tenants) == 0 {
		return nil, "", nil
	}
	ids, more := s.pipelines.newest(f.Tenants, f.After, limit)
	page := make([]*job.Pipeline, 0, len(ids))
	var jobIDs []string
	for _, id := range ids {
		if p, ok := s.pipelines.Load(id); ok { // else deleted meanwhile
			page = append(page, p)
			jobIDs = append(jobIDs, p.JobIDs()...)
		}
	}
	// The jobs of the whole page in one read: the unfinished from memory,
	// the rest in one transaction.
	got, err := s.GetMany(ctx, jobIDs)
	if err != nil {
		return nil, "", err
	}
	jobs := make(map[string]*job.Job, len(got))
	for i, j := range got {
		if j != nil {
			jobs[jobIDs[i]] = j
		}
	}
	out := make([]PipelineStatus, len(page))
	for i, p := range page {
		out[i] = PipelineStatus{Pipeline: p, State: p.StateOf(func(id string) *job.Job { return jobs[id] })}
	}
	next := ""
	if more && len(ids) > 0 {
		next = ids[len(ids)-1]
	}
	return out, next, nil
}

// CancelPipeline marks a pipeline cancelled and cancels every job of it
// that has not ended, in one commit. Errors: job.ErrNotFound;
// job.ErrConflict when the pipeline has already ended.
func (s *Cluster) CancelPipeline(ctx context.Context, id, reason string) (PipelineStatus, error) {
	st, err := s.Pipeline(ctx, id)
	if err != nil {
		return st, err
	}
	if st.State.Terminal() {
		return st, fmt.Errorf("pipeline %s: already %s: %w", id, st.State, job.ErrConflict)
	}
	if reason == "" {
		reason = ReasonPipelineCancelled
	}
	if !st.Pipeline.Cancelled {
		p := st.Pipeline.Clone()
		p.Cancelled = true
		if err := s.cfg.Store.PutPipeline(ctx, p); err != nil {
			return st, err
		}
		s.pipelines.Store(id, p)
	}
	if _, err := s.cancelAll(ctx, st.Pipeline.JobIDs(), reason); err != nil {
		return st, err
	}
	return s.Pipeline(ctx, id)
}

// forgetPipelines deletes the records of pipelines none of whose jobs is
// left in memory (retention deleted them all).
func (s *Cluster) forgetPipelines(ctx context.Context, touched map[string]bool) {
	for id := range touched {
		p, ok := s.pipelines.Load(id)
		if !ok {
			continue
		}
		if jobs, err := s.pipelineJobs(ctx, p); err != nil || len(jobs) > 0 {
			continue
		}
		if err := s.cfg.Store.DeletePipeline(ctx, id); err != nil {
			s.log.Warn("delete pipeline", "pipeline", id, "err", err)
			continue
		}
		s.pipelines.Delete(id)
	}
}

// Retain returns the function retention asks, for each finished job it
// would delete for having ended before the given time, whether to keep it
// instead: while a job that waits for it has not ended; while its
// pipeline has a job that has not ended or ended after before, so that a
// pipeline's jobs go together and its state stays what it was; and while
// the record of its array is kept. The
// function is for one retention round, from one goroutine.
func (s *Cluster) Retain(ctx context.Context, before time.Time) func(id string) bool {
	done := make(map[string]bool) // pipeline id → all of it may go
	get := func(id string) *job.Job {
		j, err := s.Get(ctx, id)
		if err != nil {
			return nil
		}
		return j
	}
	return func(id string) bool {
		for _, k := range s.dependents(id) {
			if d := get(k); d != nil && !d.State.Terminal() {
				return true
			}
		}
		j := get(id)
		if j == nil {
			return false
		}
		if _, kept := s.Array(j.Spec.Array); kept {
			// While its array's record is kept, a task's job is the
			// record that it ran: recovery takes a task with no job for
			// one never run. The record goes first (SweepArrays).
			return true
		}
		if j.Spec.Pipeline == "" {
			return false
		}
		may, seen := done[j.Spec.Pipeline]
		if !seen {
			may = true
			if p, ok := s.pipelines.Load(j.Spec.Pipeline); ok {
				jobs, err := s.pipelineJobs(ctx, p)
				if err != nil {
					return true
				}
				for _, o := range jobs {
					if !o.State.Terminal() || !o.FinishedAt.Before(before) {
						may = false
						break
					}
				}
			}
			done[j.Spec.Pipeline] = may
		}
		if may {
			s.letGo.Store(id, j.Spec.Pipeline)
		}
		return !may
	}
}
