package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// Reasons recorded on the jobs of pipelines.
const (
	ReasonPipelineCancelled = "pipeline cancelled"
)

// SubmitArray stores one job per index of arr, all in one commit, and
// returns the array id and the jobs in index order. Each job gets
// HODEI_ARRAY_INDEX in its env; at most arr.Limit of them run at once.
// Errors: as Submit's, and a *job.FieldError on "array".
func (s *Cluster) SubmitArray(ctx context.Context, spec job.Spec, arr job.ArraySpec) (string, []*job.Job, error) {
	if err := arr.Validate(); err != nil {
		return "", nil, err
	}
	spec, now, err := s.checkSpec(ctx, spec)
	if err != nil {
		return "", nil, err
	}
	arrayID := s.newID(now)
	name := spec.Name
	if name == "" {
		name = path.Base(spec.Argv()[0])
		if spec.Script != "" {
			name = "script"
		}
	}
	jobs := make([]*job.Job, 0, arr.Len())
	for i := arr.First; i <= arr.Last; i++ {
		js := spec
		js.Env = maps.Clone(spec.Env)
		if js.Env == nil {
			js.Env = make(map[string]string, 1)
		}
		js.Env["HODEI_ARRAY_INDEX"] = strconv.Itoa(i)
		js.Array, js.ArrayIndex, js.ArrayLimit = arrayID, i, arr.Limit
		js.Name = fmt.Sprintf("%s[%d]", name, i)
		j := &job.Job{ID: s.newID(now), Spec: js, State: job.Pending, Attempt: 1, CreatedAt: now}
		s.seal(j)
		jobs = append(jobs, j)
	}
	if err := s.cfg.Store.Insert(ctx, jobs); err != nil {
		s.refused(spec.Tenant, err)
		return "", nil, err
	}
	s.submitted(jobs)
	return arrayID, jobs, nil
}

// CancelArray cancels every job of an array that has not ended and returns
// their ids. Errors: job.ErrNotFound when no job has that array id.
func (s *Cluster) CancelArray(ctx context.Context, arrayID, reason string) ([]string, error) {
	return s.CancelArrayOf(ctx, arrayID, reason, nil)
}

// CancelArrayOf is CancelArray for a caller that sees only some tenants:
// an array of a tenant for which sees is false is not found, as a missing
// one. sees nil: every tenant. The array's jobs share their tenant, so one
// scan both finds them and checks it.
func (s *Cluster) CancelArrayOf(ctx context.Context, arrayID, reason string, sees func(tenant string) bool) ([]string, error) {
	var (
		ids    []string
		tenant string
		found  bool
	)
	s.jobs.Range(func(id string, j *job.Job) bool {
		if j.Spec.Array == arrayID {
			found, tenant = true, j.Spec.Tenant
			if !j.State.Terminal() {
				ids = append(ids, id)
			}
		}
		return true
	})
	if !found || (sees != nil && !sees(tenant)) {
		return nil, fmt.Errorf("array %s: %w", arrayID, job.ErrNotFound)
	}
	slices.Sort(ids)
	return s.cancelAll(ctx, ids, reason)
}

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
	for _, id := range ids {
		cur := s.jobOrNil(id)
		if cur == nil || cur.State.Terminal() {
			continue
		}
		next := s.cancelNext(cur, reason)
		if next == nil {
			done = append(done, id) // already stopping
			continue
		}
		olds = append(olds, cur)
		updates = append(updates, job.Update{Expect: cur.Expected(), Next: next})
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
	expanded, err := spec.Jobs(job.PipelineLimits{MaxMatrix: s.cfg.MaxMatrix, MaxLinks: s.cfg.MaxPipelineLinks})
	if err != nil {
		return nil, nil, err
	}
	if err := s.ensureTenant(ctx, spec.Tenant); err != nil {
		return nil, nil, err
	}
	now := s.cfg.Now()
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
	if err := s.cfg.Store.InsertPipeline(ctx, p, jobs); err != nil {
		s.refused(spec.Tenant, err)
		return nil, nil, err
	}
	s.pipelines.Store(p.ID, p)
	s.submitted(jobs)
	return p, jobs, nil
}

// submitted indexes and publishes jobs just inserted.
func (s *Cluster) submitted(jobs []*job.Job) {
	for _, j := range jobs {
		for _, d := range j.Spec.DependsOn {
			s.addDependent(d, j.ID)
		}
		if len(j.Spec.DependsOn) > 0 {
			// A dependency may have failed before the index above knew of j.
			s.depCheck.Store(j.ID, struct{}{})
		}
	}
	for _, j := range jobs {
		s.publish(j)
		if s.cfg.Observer != nil {
			s.cfg.Observer.Submitted(j.Spec.Tenant)
		}
	}
}

// PipelineStatus is a pipeline with its state and its jobs.
type PipelineStatus struct {
	Pipeline *job.Pipeline
	State    job.PipelineState
	Jobs     []*job.Job // in step order; jobs retention deleted are left out
}

// Pipeline returns one pipeline with its jobs, or job.ErrNotFound.
func (s *Cluster) Pipeline(id string) (PipelineStatus, error) {
	p, ok := s.pipelines.Load(id)
	if !ok {
		return PipelineStatus{}, fmt.Errorf("pipeline %s: %w", id, job.ErrNotFound)
	}
	st := PipelineStatus{Pipeline: p, State: p.StateOf(s.jobOrNil)}
	for _, jid := range p.JobIDs() {
		if j := s.jobOrNil(jid); j != nil {
			st.Jobs = append(st.Jobs, j)
		}
	}
	return st, nil
}

// Pipelines returns every pipeline with its state, newest first, without
// their jobs.
func (s *Cluster) Pipelines() []PipelineStatus {
	var out []PipelineStatus
	s.pipelines.Range(func(_ string, p *job.Pipeline) bool {
		out = append(out, PipelineStatus{Pipeline: p, State: p.StateOf(s.jobOrNil)})
		return true
	})
	slices.SortFunc(out, func(a, b PipelineStatus) int { return cmp.Compare(b.Pipeline.ID, a.Pipeline.ID) })
	return out
}

func (s *Cluster) jobOrNil(id string) *job.Job {
	j, _ := s.jobs.Load(id)
	return j
}

// CancelPipeline marks a pipeline cancelled and cancels every job of it
// that has not ended, in one commit. Errors: job.ErrNotFound;
// job.ErrConflict when the pipeline has already ended.
func (s *Cluster) CancelPipeline(ctx context.Context, id, reason string) (PipelineStatus, error) {
	st, err := s.Pipeline(id)
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
	return s.Pipeline(id)
}

// forgetPipelines deletes the records of pipelines none of whose jobs is
// left in memory (retention deleted them all).
func (s *Cluster) forgetPipelines(ctx context.Context, touched map[string]bool) {
	for id := range touched {
		p, ok := s.pipelines.Load(id)
		if !ok || slices.ContainsFunc(p.JobIDs(), func(j string) bool { return s.jobOrNil(j) != nil }) {
			continue
		}
		if err := s.cfg.Store.DeletePipeline(ctx, id); err != nil {
			s.log.Warn("delete pipeline", "pipeline", id, "err", err)
			continue
		}
		s.pipelines.Delete(id)
	}
}

// stepDependencyReason says why a dependent of dep was cancelled, naming
// dep's step when it has one and passing on the first cause along a chain
// of cancellations.
func stepDependencyReason(dep *job.Job) string {
	if dep.State == job.Cancelled && strings.HasPrefix(dep.Reason, "dependency ") {
		return dep.Reason
	}
	name := dep.ID
	if dep.Spec.Step != "" {
		name = dep.Spec.Step
	}
	verb := "failed"
	if dep.State == job.Cancelled {
		verb = "was cancelled"
	}
	return fmt.Sprintf(scheduler.ReasonDependencyFmt, name, verb)
}

// Retain returns the function retention asks, for each finished job it
// would delete for having ended before the given time, whether to keep it
// instead: while a job that waits for it has not ended, and while its
// pipeline has a job that has not ended or ended after before, so that a
// pipeline's jobs go together and its state stays what it was. The
// function is for one retention round, from one goroutine.
func (s *Cluster) Retain(before time.Time) func(id string) bool {
	done := make(map[string]bool) // pipeline id → all of it may go
	return func(id string) bool {
		for _, k := range s.dependents(id) {
			if d := s.jobOrNil(k); d != nil && !d.State.Terminal() {
				return true
			}
		}
		j := s.jobOrNil(id)
		if j == nil || j.Spec.Pipeline == "" {
			return false
		}
		may, seen := done[j.Spec.Pipeline]
		if !seen {
			may = true
			if p, ok := s.pipelines.Load(j.Spec.Pipeline); ok {
				for _, jid := range p.JobIDs() {
					if o := s.jobOrNil(jid); o != nil && (!o.State.Terminal() || !o.FinishedAt.Before(before)) {
						may = false
						break
					}
				}
			}
			done[j.Spec.Pipeline] = may
		}
		return !may
	}
}
