package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// An array is one record until its tasks run (job.Array). Its tasks that
// are not jobs yet are one entry in its tenant's queue (a scheduler.Waiting
// with Tasks), from which Decide draws them in index order; a pass that
// dispatches one materializes it in the same commit as the dispatch. A task
// is also materialized when it is cancelled on its own; looking one up by
// id shows it as it would be, without writing it.

// SubmitArray stores an array of the spec, one task per index of arr, as
// one record in one commit, and returns it. Each task gets
// HODEI_ARRAY_INDEX in its env; at most arr.Limit of them run at once.
// Errors: as Submit's, and a *job.FieldError on "array".
func (s *Cluster) SubmitArray(ctx context.Context, spec job.Spec, arr job.ArraySpec) (*job.Array, error) {
	if err := arr.Validate(); err != nil {
		return nil, err
	}
	spec, now, err := s.checkSpec(ctx, spec)
	if err != nil {
		return nil, err
	}
	spec.Name = job.ArrayName(spec)
	a := &job.Array{ID: s.newIDs(now, arr.Len()), Spec: spec, First: arr.First, Last: arr.Last, Limit: arr.Limit, CreatedAt: now}
	if len(spec.SecretEnv) > 0 {
		// Sealing is per job id; the tasks share their array's.
		j := &job.Job{ID: a.ID, Spec: spec}
		s.seal(j)
		a.Spec.SecretEnv = j.Spec.SecretEnv
	}
	if err := s.cfg.Store.InsertArray(ctx, a); err != nil {
		s.refused(spec.Tenant, err)
		return nil, err
	}
	s.mu.Lock()
	s.addArray(a, nil)
	s.mu.Unlock()
	if s.cfg.Observer != nil {
		s.cfg.Observer.Submitted(spec.Tenant, a.Len())
	}
	s.poke()
	return a, nil
}

// addArray files an array in memory, with the positions of its tasks that
// are jobs already. The caller holds mu.
func (s *Cluster) addArray(a *job.Array, materialized []int) {
	slices.Sort(materialized)
	next := 0
	for next < len(materialized) && materialized[next] == next {
		next++
	}
	t := &scheduler.Tasks{Array: a.ID, First: a.First, Count: a.Len(), Next: next, Skip: slices.Clip(materialized[next:])}
	st := &arrayState{rec: a, tasks: t, entry: noSlot}
	s.arrays[a.ID] = st
	i, _ := slices.BinarySearch(s.arrayIDs, a.ID)
	s.arrayIDs = slices.Insert(s.arrayIDs, i, a.ID)
	if a.Cancelled || t.Left() == 0 {
		return
	}
	s.addWaiting(a.Spec.Tenant, t.Left(), a.Spec.Resources)
	s.enqueueArray(st)
}

// enqueueArray files the queue entry of an array's unmaterialized tasks,
// keyed as its first one. The caller holds mu.
func (s *Cluster) enqueueArray(st *arrayState) {
	first := st.rec.Task(st.tasks.Next)
	w := scheduler.WaitingOf(first, s.cfg.Now(), s.cfg.Aging)
	w.ID, w.Tasks = st.rec.ID, st.tasks
	w.Array, w.ArrayLimit = st.rec.ID, int32(st.rec.Limit)
	st.entry = s.wait.add(w, s.count(w.Tenant).idx, 0, true)
	s.enqueue(st.entry)
}

// materialized records that task j of an array is a job now (dispatched,
// cancelled or retried on its own): its array no longer stands for it.
func (s *Cluster) materialized(j *job.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.arrays[j.Spec.Array]
	if st == nil {
		return
	}
	p, ok := st.rec.Position(j.ID)
	if !ok {
		return
	}
	t := *st.tasks
	switch {
	case p < t.Next:
		return
	case p == t.Next:
		t.Next++
		for len(t.Skip) > 0 && t.Skip[0] <= t.Next {
			if t.Skip[0] == t.Next {
				t.Next++
			}
			t.Skip = t.Skip[1:]
		}
	default:
		i, found := slices.BinarySearch(t.Skip, p)
		if found {
			return
		}
		t.Skip = slices.Insert(slices.Clone(t.Skip), i, p)
	}
	if !st.rec.Cancelled {
		s.addWaiting(st.rec.Spec.Tenant, -1, st.rec.Spec.Resources)
	}
	s.setTasks(st, &t)
}

// setTasks replaces an array's task set and its queue entry. The caller
// holds mu.
func (s *Cluster) setTasks(st *arrayState, t *scheduler.Tasks) {
	if st.entry != noSlot {
		s.unfile(st.entry)
		st.entry = noSlot
	}
	st.tasks = t
	if !st.rec.Cancelled && t.Left() > 0 {
		s.enqueueArray(st)
	}
}

// lazyTask returns the task with job id id of an array, as it is before
// it is materialized, or nil when id is no such task.
func (s *Cluster) lazyTask(id string) *job.Job {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.arrayOf(id)
	if st == nil {
		return nil
	}
	p, ok := st.rec.Position(id)
	if !ok || p < st.tasks.Next {
		return nil
	}
	if _, found := slices.BinarySearch(st.tasks.Skip, p); found {
		return nil
	}
	return st.rec.Task(p)
}

// arrayOf returns the array whose task ids cover id. The caller holds mu.
func (s *Cluster) arrayOf(id string) *arrayState {
	i := sort.SearchStrings(s.arrayIDs, id) // the first array id >= id
	if i == 0 {
		return nil
	}
	return s.arrays[s.arrayIDs[i-1]]
}

// Array returns the record of an array whose record is kept (it has tasks
// not yet materialized, or retention has not deleted it yet).
func (s *Cluster) Array(id string) (*job.Array, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if st := s.arrays[id]; st != nil {
		return st.rec, true
	}
	return nil, false
}

// isLazy reports whether j is a task not yet materialized (it has never
// been stored, so it has no version).
func (s *Cluster) isLazy(j *job.Job) bool { return j.Version == 0 && j.Spec.Array != "" }

// MaxListedTasks is the most task ids an answer about a whole array
// lists; a larger array is answered with a count.
const MaxListedTasks = 10_000

// CancelArray cancels every task of an array that has not ended and
// returns how many, with their ids when there are at most MaxListedTasks.
// Errors: job.ErrNotFound when there is no such array.
func (s *Cluster) CancelArray(ctx context.Context, arrayID, reason string) ([]string, int, error) {
	return s.CancelArrayOf(ctx, arrayID, reason, nil)
}

// CancelArrayOf is CancelArray for a caller that sees only some tenants:
// an array of a tenant for which sees is false is not found, as a missing
// one. sees nil: every tenant. The array record, its tasks not yet
// materialized and its unfinished jobs end in one commit.
func (s *Cluster) CancelArrayOf(ctx context.Context, arrayID, reason string, sees func(tenant string) bool) ([]string, int, error) {
	if reason == "" {
		reason = scheduler.ReasonUserCancel
	}
	for range 10 {
		s.mu.RLock()
		st := s.arrays[arrayID]
		ids := s.arrayJobs(arrayID)
		s.mu.RUnlock()
		if st == nil {
			// Every task is a job: cancel them as jobs.
			return s.cancelArrayJobs(ctx, arrayID, reason, sees)
		}
		if sees != nil && !sees(st.rec.Spec.Tenant) {
			return nil, 0, fmt.Errorf("array %s: %w", arrayID, job.ErrNotFound)
		}
		if st.rec.Cancelled {
			// Cancelled already: what is left is jobs a pass dispatched
			// as the cancel committed.
			done, err := s.cancelAll(ctx, ids, reason)
			return done, len(done), err
		}
		now := s.cfg.Now()
		a := st.rec.Clone()
		a.Cancelled, a.CancelReason, a.CancelledAt = true, reason, now
		olds, updates, err := s.cancelUpdates(ctx, ids, reason)
		if err != nil {
			return nil, 0, err
		}
		errs, err := s.cfg.Store.CancelArray(ctx, a, updates)
		if errors.Is(err, job.ErrConflict) {
			continue // cancelled meanwhile
		}
		if err != nil {
			return nil, 0, err
		}
		done, n := s.cancelledArray(a)
		if s.cfg.Observer != nil && n > 0 {
			s.cfg.Observer.Finished(a.Spec.Tenant, job.Cancelled, n)
		}
		handled := make(map[string]bool, len(updates))
		for i, u := range updates {
			if errs[i] != nil {
				continue // ended or changed meanwhile (dispatched, started): cancelled below from what it is now
			}
			handled[u.Next.ID] = true
			s.publish(u.Next)
			s.cancelled(olds[i], u.Next, reason)
			n++
			if n <= MaxListedTasks {
				done = append(done, u.Next.ID)
			}
		}
		// A pass may have dispatched a task between the read of the
		// array's jobs and the commit, or a task's update lost to its
		// start: cancel those too.
		s.mu.RLock()
		late := slices.DeleteFunc(s.arrayJobs(arrayID), func(id string) bool { return handled[id] })
		s.mu.RUnlock()
		more, err := s.cancelAll(ctx, late, reason)
		if err != nil {
			return nil, 0, err
		}
		n += len(more)
		done = append(done, more...)
		if n > MaxListedTasks {
			done = nil
		}
		slices.Sort(done)
		return done, n, nil
	}
	return nil, 0, job.Conflict(arrayID, "changed too often while cancelling; try again")
}

// arrayJobs returns the ids of an array's unfinished jobs (its
// materialized tasks), sorted. The caller holds mu.
func (s *Cluster) arrayJobs(arrayID string) []string {
	ids := make([]string, 0, len(s.byArray[arrayID]))
	for id := range s.byArray[arrayID] {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// cancelledArray publishes a committed cancel of an array's record and
// returns how many of its tasks it ended unmaterialized, with their ids
// when there are at most MaxListedTasks.
func (s *Cluster) cancelledArray(a *job.Array) ([]string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.arrays[a.ID]
	if st == nil || st.rec.Cancelled {
		return nil, 0
	}
	left := st.tasks.Left()
	var ids []string
	if left <= MaxListedTasks {
		for p := range st.tasks.Positions() {
			ids = append(ids, job.TaskID(a.ID, p))
		}
	}
	s.addWaiting(a.Spec.Tenant, -left, a.Spec.Resources)
	st.rec = a
	s.setTasks(st, st.tasks)
	return ids, left
}

// cancelUpdates reads the jobs with the given ids and returns, for those
// not ended, the updates that cancel them.
func (s *Cluster) cancelUpdates(ctx context.Context, ids []string, reason string) ([]*job.Job, []job.Update, error) {
	jobs, err := s.GetMany(ctx, ids)
	if err != nil {
		return nil, nil, err
	}
	var olds []*job.Job
	var updates []job.Update
	for _, cur := range jobs {
		if cur == nil || cur.State.Terminal() {
			continue
		}
		next := s.cancelNext(cur, reason)
		if next == nil {
			continue // already stopping
		}
		olds = append(olds, cur)
		updates = append(updates, job.Change(cur, next))
	}
	return olds, updates, nil
}

// cancelArrayJobs cancels the unfinished jobs of an array whose record is
// gone (every task was materialized). Errors: job.ErrNotFound when no job
// of it is left.
func (s *Cluster) cancelArrayJobs(ctx context.Context, arrayID, reason string, sees func(string) bool) ([]string, int, error) {
	jobs, _, err := s.cfg.Store.List(ctx, job.Filter{Array: arrayID, Limit: 1})
	if err != nil {
		return nil, 0, err
	}
	if len(jobs) == 0 || (sees != nil && !sees(jobs[0].Spec.Tenant)) {
		return nil, 0, fmt.Errorf("array %s: %w", arrayID, job.ErrNotFound)
	}
	s.mu.RLock()
	ids := s.arrayJobs(arrayID)
	s.mu.RUnlock()
	done, err := s.cancelAll(ctx, ids, reason)
	return done, len(done), err
}

// GetMany returns the jobs with the given ids, a missing one nil: the
// active ones from memory, the others in one read of the store, and tasks
// not yet jobs as they would be.
func (s *Cluster) GetMany(ctx context.Context, ids []string) ([]*job.Job, error) {
	out := make([]*job.Job, len(ids))
	var rest []string
	var at []int
	s.mu.RLock()
	for i, id := range ids {
		if j := s.active[id]; j != nil {
			out[i] = j
			continue
		}
		rest = append(rest, id)
		at = append(at, i)
	}
	s.mu.RUnlock()
	if len(rest) == 0 {
		return out, nil
	}
	stored, err := s.cfg.Store.GetMany(ctx, rest)
	if err != nil {
		return nil, err
	}
	for k, j := range stored {
		if j == nil {
			j = s.lazyTask(rest[k])
		}
		out[at[k]] = j
	}
	return out, nil
}

// SweepArrays deletes the records of arrays that are done — cancelled
// before the given time, or with every task materialized, none of them
// unfinished, and made before that time — so that retention takes their
// tasks' jobs as it takes other jobs. Retention calls it each round.
func (s *Cluster) SweepArrays(ctx context.Context, before time.Time) {
	var done []string
	s.mu.RLock()
	for id, st := range s.arrays {
		switch {
		case st.rec.Cancelled && st.rec.CancelledAt.Before(before) && len(s.byArray[id]) == 0:
		case !st.rec.Cancelled && st.tasks.Left() == 0 && st.rec.CreatedAt.Before(before) && len(s.byArray[id]) == 0:
		default:
			continue
		}
		done = append(done, id)
	}
	s.mu.RUnlock()
	for _, id := range done {
		if err := s.cfg.Store.DeleteArray(ctx, id); err != nil {
			s.log.Warn("delete array", "array", id, "err", err)
			continue
		}
		s.mu.Lock()
		if st := s.arrays[id]; st != nil {
			if st.entry != noSlot {
				s.unfile(st.entry)
			}
			delete(s.arrays, id)
			if i, ok := slices.BinarySearch(s.arrayIDs, id); ok {
				s.arrayIDs = slices.Delete(s.arrayIDs, i, i+1)
			}
		}
		s.mu.Unlock()
	}
}
