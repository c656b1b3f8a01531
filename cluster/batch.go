package cluster

import (
	"context"
	"errors"
	"runtime"
	"sync"

	"github.com/hodei-jobs/hodei/job"
)

// SubmitBatch validates every spec as Submit does, stores one new Pending
// job per spec in one commit, all or none, and returns them in the order
// of specs. Dependencies may name stored jobs, not other jobs of the batch
// (they get their ids here).
//
// Errors: a *job.FieldError on "specs" for a batch that is empty, has more
// than job.MaxBatch specs or more than job.MaxBatchBytes of them; the first
// spec that is refused fails the whole call, with a *job.FieldError whose
// field is under its index ("specs[3].command"), or a *job.BatchError
// wrapping job.UnknownTenant; job.OverQueued (job.ErrExhausted) when a
// tenant's non-terminal jobs plus its jobs of the batch would pass its
// max-queued limit; store errors. Nothing is stored when it fails.
func (s *Cluster) SubmitBatch(ctx context.Context, specs []job.Spec) ([]*job.Job, error) {
	if err := job.CheckBatchLen(len(specs)); err != nil {
		return nil, err
	}
	known, err := s.knownJobs(ctx, specs)
	if err != nil {
		return nil, err
	}
	// Validation reads nothing but the specs: it runs on every CPU, and
	// makes the jobs there too, with ids from one reservation for the
	// batch (they follow each other; a refused batch leaves a gap). The
	// checks that read the cluster's state follow, in order, so that the
	// first spec at fault is the one named.
	now := s.cfg.Now()
	first := s.newIDs(now, len(specs)-1)
	jobs := make([]*job.Job, len(specs))
	errs := make([]error, len(specs))
	sizes := make([]int, len(specs))
	inParallel(len(specs), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			sizes[i] = specs[i].Size()
			spec, err := validSpec(specs[i], now)
			if err != nil {
				errs[i] = err
				continue
			}
			jobs[i] = &job.Job{ID: job.AddID(first, uint64(i)), Spec: spec, State: job.Pending, Attempt: 1, CreatedAt: now}
		}
	})
	// The batch's size first: a batch too large is refused as a whole.
	total := 0
	for i, n := range sizes {
		if total += n; total > job.MaxBatchBytes {
			return nil, job.BatchTooBig(i)
		}
	}
	tenants := make(map[string]bool, 1)
	for i, j := range jobs {
		err := errs[i]
		if err == nil && !tenants[j.Spec.Tenant] {
			err = s.ensureTenant(ctx, j.Spec.Tenant)
			tenants[j.Spec.Tenant] = err == nil
		}
		if err == nil {
			err = s.checkBatchSpec(&j.Spec, known)
		}
		if err != nil {
			return nil, job.InBatch(i, err)
		}
		s.seal(j)
	}
	// The store checks the tenants and dependencies again, in the
	// transaction: the checks above only find which spec is at fault.
	mark := s.strangers.Load()
	if err := s.cfg.Store.Insert(ctx, jobs); err != nil {
		s.refusedBatch(jobs, err)
		return nil, err
	}
	s.submitted(jobs, mark)
	return jobs, nil
}

// checkBatchSpec checks what the store's Insert would refuse for the whole
// batch without naming the spec: a request above its tenant's running
// limit, a dependency that is not a known job.
func (s *Cluster) checkBatchSpec(spec *job.Spec, known map[string]bool) error {
	if t, ok := s.tenants.Load(spec.Tenant); ok {
		if err := t.CheckFits(spec); err != nil {
			return err
		}
	}
	for _, dep := range spec.DependsOn {
		if !known[dep] {
			return job.UnknownDependency(dep)
		}
	}
	return nil
}

// parallelChunk is the fewest specs worth a goroutine of their own in
// inParallel.
const parallelChunk = 256

// inParallel calls fn over [0, n) split in ranges, one per CPU when n is
// large enough to be worth it, and returns when every call has.
func inParallel(n int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n/parallelChunk)
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	per := (n + workers - 1) / workers
	for w := range workers {
		wg.Go(func() { fn(w*per, min((w+1)*per, n)) })
	}
	wg.Wait()
}

// refusedBatch counts a batch refused for a max-queued limit once for each
// of its tenants that has one.
func (s *Cluster) refusedBatch(jobs []*job.Job, err error) {
	if s.cfg.Observer == nil || !errors.Is(err, job.ErrExhausted) {
		return
	}
	seen := make(map[string]bool)
	for _, j := range jobs {
		name := j.Spec.Tenant
		if seen[name] {
			continue
		}
		seen[name] = true
		if t, ok := s.tenants.Load(name); ok && t.MaxQueued > 0 {
			s.refused(name, err)
		}
	}
}

// knownJobs reads, in one go, which of the jobs the specs depend on exist.
func (s *Cluster) knownJobs(ctx context.Context, specs []job.Spec) (map[string]bool, error) {
	var ids []string
	for i := range specs {
		ids = append(ids, specs[i].DependsOn...)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	jobs, err := s.GetMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(ids))
	for i, j := range jobs {
		known[ids[i]] = j != nil
	}
	return known, nil
}
