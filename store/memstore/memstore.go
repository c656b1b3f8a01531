package memstore

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/record"
)

// Store is the in-memory store. The zero value is not usable: call New.
// Every method is safe for concurrent use. It keeps the bbolt store's
// records (package record), encoded, so that what it returns went through
// the same encoding, and shares nothing with its callers.
type Store struct {
	mu        sync.RWMutex      // guards everything below
	jobs      map[string][]byte // id → encoded record.JobRecord
	ids       []string          // job ids, sorted
	workers   map[string][]byte // id → encoded record.WorkerRecord
	tenants   map[string][]byte // name → encoded record.TenantRecord
	pipelines map[string][]byte // id → encoded record.PipelineRecord
	arrays    map[string]*job.Array
	schedules map[string][]byte // job.ScheduleKey → encoded record.ScheduleRecord
	queued    map[string]int    // tenant → its non-terminal jobs; absent is 0
	writeErr  error
}

// New returns a store with no jobs and only the default tenant (weight 1,
// no limits, created now).
func New() *Store {
	now := time.Now()
	def := &job.Tenant{Name: job.DefaultTenant, CreatedAt: now, UpdatedAt: now}
	def.Normalize()
	enc, err := record.MarshalTenant(def)
	if err != nil {
		panic(fmt.Sprintf("memstore: encode default tenant: %v", err))
	}
	return &Store{
		jobs:      make(map[string][]byte),
		workers:   make(map[string][]byte),
		tenants:   map[string][]byte{def.Name: enc},
		pipelines: make(map[string][]byte),
		arrays:    make(map[string]*job.Array),
		schedules: make(map[string][]byte),
		queued:    make(map[string]int),
	}
}

// SetWriteError makes every later write (Insert, Apply, InsertPipeline,
// PutPipeline, DeletePipeline, PutTenant, DeleteTenant, PutWorker,
// DeleteWorker, DeleteFinished) fail as a whole with err, as a
// failed commit would, until it is called with nil. It lets tests check that
// callers change nothing when the store fails.
func (s *Store) SetWriteError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeErr = err
}

// header reads the header of a stored job.
func header(enc []byte) record.Header {
	h, err := record.ReadHeader(enc)
	if err != nil {
		panic(fmt.Sprintf("memstore: decode job: %v", err)) // we encoded it
	}
	return h
}

// decode decodes the job stored under id.
func decode(id string, enc []byte) *job.Job {
	j, err := record.UnmarshalJob(id, enc)
	if err != nil {
		panic(fmt.Sprintf("memstore: decode job: %v", err)) // we encoded it
	}
	return j
}

// Insert stores new jobs, all or none; see scheduler.Store. The tenant
// checks run under the same lock as the insert.
func (s *Store) Insert(ctx context.Context, jobs []*job.Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(jobs) == 0 {
		return nil
	}
	encs, err := encodeNew(jobs)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	adding, err := s.checkInsert(jobs)
	if err != nil {
		return err
	}
	s.putJobs(jobs, encs, adding)
	return nil
}

// encodeNew checks new jobs with job.CheckNew and encodes them with
// version 1, for Insert and InsertPipeline.
func encodeNew(jobs []*job.Job) ([][]byte, error) {
	if err := job.CheckNew(jobs); err != nil {
		return nil, err
	}
	encs := make([][]byte, len(jobs))
	for i, j := range jobs {
		var err error
		if encs[i], err = record.MarshalJob(j, 1); err != nil {
			return nil, err
		}
	}
	return encs, nil
}

// checkInsert runs Insert's checks, in the bbolt store's order: every id
// new, every dependency stored or in the call, the tenants' admission. It
// changes nothing and returns the new jobs by tenant, for putJobs. s.mu
// must be held.
func (s *Store) checkInsert(jobs []*job.Job) (map[string]int, error) {
	inCall := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		if _, ok := s.jobs[j.ID]; ok || inCall[j.ID] {
			return nil, job.Conflict(j.ID, "already exists")
		}
		inCall[j.ID] = true
	}
	for _, j := range jobs {
		for _, dep := range j.Spec.DependsOn {
			if _, ok := s.jobs[dep]; !ok && !inCall[dep] {
				return nil, job.UnknownDependency(dep)
			}
		}
	}
	return s.admit(jobs)
}

// putJobs stores jobs checked by checkInsert, adds adding to the tenants'
// counts and sets the jobs' Version to 1. s.mu must be held.
func (s *Store) putJobs(jobs []*job.Job, encs [][]byte, adding map[string]int) {
	for i, j := range jobs {
		s.jobs[j.ID] = encs[i]
		i, _ := slices.BinarySearch(s.ids, j.ID)
		s.ids = slices.Insert(s.ids, i, j.ID)
	}
	for name, n := range adding {
		s.addQueued(name, n)
	}
	for _, j := range jobs {
		j.Version = 1
	}
}

// Apply performs compare-and-swap updates; see scheduler.Store.
func (s *Store) Apply(ctx context.Context, updates []job.Update) ([]error, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	errs := make([]error, len(updates))
	encs := make([][]byte, len(updates))
	for i, u := range updates {
		if u.Next == nil {
			errs[i] = job.Invalid("next", "update %d has no job", i)
			continue
		}
		var err error
		if encs[i], err = record.MarshalJob(u.Next, 0); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return nil, s.writeErr
	}
	return s.applyEncoded(updates, encs, errs), nil
}

// apply encodes and applies updates. s.mu must be held.
func (s *Store) apply(updates []job.Update) ([]error, error) {
	errs := make([]error, len(updates))
	encs := make([][]byte, len(updates))
	for i, u := range updates {
		var err error
		if encs[i], err = record.MarshalJob(u.Next, 0); err != nil {
			return nil, err
		}
	}
	return s.applyEncoded(updates, encs, errs), nil
}

// applyEncoded applies updates whose errs are still nil. s.mu must be
// held.
func (s *Store) applyEncoded(updates []job.Update, encs [][]byte, errs []error) []error {
	versions := make([]uint64, len(updates))
	for i, u := range updates {
		if errs[i] != nil {
			continue
		}
		if u.Create {
			if errs[i] = s.create(u, encs[i]); errs[i] == nil {
				versions[i] = 1
			}
			continue
		}
		enc, ok := s.jobs[u.Next.ID]
		if !ok {
			errs[i] = fmt.Errorf("job %s: %w", u.Next.ID, job.ErrNotFound)
			continue
		}
		cur := header(enc)
		if !u.Expect.Matches(cur.State, cur.Attempt, cur.Version) {
			errs[i] = job.Conflict(u.Next.ID, "is %s attempt %d version %d, not %s attempt %d version %d",
				cur.State, cur.Attempt, cur.Version, u.Expect.State, u.Expect.Attempt, u.Expect.Version)
			continue
		}
		if err := u.Check(); err != nil {
			errs[i] = err
			continue
		}
		v := cur.Version + 1
		s.moveQueued(cur, u.Next)
		s.jobs[u.Next.ID] = record.WithVersion(encs[i], v)
		versions[i] = v
	}
	for i, u := range updates {
		if errs[i] == nil {
			u.Next.Version = versions[i]
		}
	}
	return errs
}

// Get returns the stored job or an error wrapping job.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*job.Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	enc, ok := s.jobs[id]
	if !ok {
		return nil, fmt.Errorf("job %s: %w", id, job.ErrNotFound)
	}
	return decode(id, enc), nil
}

// List returns a page of matching jobs in id order. It filters in memory,
// decoding every job it passes; the token is the last id returned when the
// page is full and more jobs are stored after it (the bbolt store's rule,
// where "more" is the rest of the index range it walks). Like the bbolt
// store it checks ctx every few hundred jobs and then fails with ctx.Err().
func (s *Store) List(ctx context.Context, f job.Filter) ([]*job.Job, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	limit := f.PageSize()
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*job.Job
	n := 0
	for id := range s.idsFrom(f) {
		if n++; n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, "", err
			}
		}
		if len(out) == limit {
			return out, out[len(out)-1].ID, nil
		}
		if j := decode(id, s.jobs[id]); f.Match(j) {
			out = append(out, j)
		}
	}
	return out, "", nil
}

// idsFrom yields the stored ids after f.After in the order of f (newest
// first with f.Desc), stopping newest first at the first id made before
// f.Since. The caller holds mu.
func (s *Store) idsFrom(f job.Filter) iter.Seq[string] {
	return func(yield func(string) bool) {
		i, found := len(s.ids), false
		if f.After != "" {
			i, found = slices.BinarySearch(s.ids, f.After)
		} else if !f.Desc {
			i = 0
		}
		if !f.Desc {
			if found {
				i++
			}
			for ; i < len(s.ids); i++ {
				if !yield(s.ids[i]) {
					return
				}
			}
			return
		}
		for i--; i >= 0; i-- {
			if !f.Since.IsZero() && job.IDBefore(s.ids[i], f.Since) {
				return
			}
			if !yield(s.ids[i]) {
				return
			}
		}
	}
}

// Count counts the jobs List would return for f over all its pages. It
// reads them all, so it is always exact; budget is not used.
func (s *Store) Count(ctx context.Context, f job.Filter, _ int) (int, bool, error) {
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	f.After = ""
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for id := range s.idsFrom(f) {
		if f.Match(decode(id, s.jobs[id])) {
			n++
		}
	}
	return n, true, nil
}

// JobsByPrefix returns the stored jobs of tenants (nil: every tenant)
// whose ids start with prefix, at most max, in id order, with their
// tenants.
func (s *Store) JobsByPrefix(ctx context.Context, prefix string, tenants []string, max int) ([]job.IDRef, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []job.IDRef
	i, _ := slices.BinarySearch(s.ids, prefix)
	for ; i < len(s.ids) && strings.HasPrefix(s.ids[i], prefix) && len(out) < max; i++ {
		t := decode(s.ids[i], s.jobs[s.ids[i]]).Spec.Tenant
		if tenants == nil || slices.Contains(tenants, t) {
			out = append(out, job.IDRef{ID: s.ids[i], Tenant: t})
		}
	}
	return out, nil
}

// Scan calls fn for every stored job in id order. Like the bbolt store it
// does not hold its lock while fn runs, so fn may call the store; a job
// written during the scan may or may not be seen.
func (s *Store) Scan(ctx context.Context, fn func(*job.Job) error) error {
	after := ""
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.mu.RLock()
		i, found := slices.BinarySearch(s.ids, after)
		if found {
			i++
		}
		var j *job.Job
		if i < len(s.ids) {
			j = decode(s.ids[i], s.jobs[s.ids[i]])
		}
		s.mu.RUnlock()
		if j == nil {
			return nil
		}
		if err := fn(j); err != nil {
			return err
		}
		after = j.ID
	}
}

// PutWorker stores (creates or replaces) worker records, all or none.
func (s *Store) PutWorker(ctx context.Context, ws ...*job.Worker) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	encs := make([][]byte, len(ws))
	for i, w := range ws {
		if w == nil || w.ID == "" || len(w.ID) > job.MaxIDLen {
			return job.Invalid("worker_id", "must be 1 to %d bytes", job.MaxIDLen)
		}
		enc, err := record.MarshalWorker(w)
		if err != nil {
			return err
		}
		encs[i] = enc
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	for i, w := range ws {
		s.workers[w.ID] = encs[i]
	}
	return nil
}

// DeleteWorker deletes worker records; ids not stored are skipped.
func (s *Store) DeleteWorker(ctx context.Context, ids ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	for _, id := range ids {
		delete(s.workers, id)
	}
	return nil
}

// Workers returns every stored worker in id order.
func (s *Store) Workers(ctx context.Context) ([]*job.Worker, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*job.Worker
	for _, id := range slices.Sorted(maps.Keys(s.workers)) {
		w, err := record.UnmarshalWorker(id, s.workers[id])
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// DeleteFinished deletes up to limit terminal jobs whose FinishedAt is set
// and before the given time, oldest id first, and returns their ids.
func (s *Store) DeleteFinished(ctx context.Context, before time.Time, limit int, keepID func(string) bool) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	cutoff := before.UnixNano()
	finished := func(id string) bool {
		enc, ok := s.jobs[id]
		if !ok {
			return false
		}
		h := header(enc)
		return h.State.Terminal() && h.Finished != 0 && h.Finished < cutoff
	}
	// keepID may call the store: ask it without the lock.
	s.mu.RLock()
	var found []string
	for _, id := range s.ids {
		if job.MadeAfter(id, before) {
			break // made after the cutoff: neither it nor a later id finished before it
		}
		if finished(id) {
			found = append(found, id)
		}
	}
	s.mu.RUnlock()
	var chosen []string
	for _, id := range found {
		if len(chosen) == limit {
			break
		}
		if keepID == nil || !keepID(id) {
			chosen = append(chosen, id)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return nil, s.writeErr
	}
	var deleted []string
	for _, id := range chosen {
		if finished(id) {
			deleted = append(deleted, id)
			delete(s.jobs, id)
		}
	}
	s.ids = slices.DeleteFunc(s.ids, func(id string) bool { _, ok := s.jobs[id]; return !ok })
	return deleted, nil
}

// ScanBriefs calls fn with the brief of every stored job in id order; see
// store.DB.ScanBriefs.
func (s *Store) ScanBriefs(ctx context.Context, fn func(*job.Brief) error) error {
	return s.Scan(ctx, func(j *job.Job) error {
		b := j.Brief()
		return fn(&b)
	})
}
