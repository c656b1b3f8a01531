package memstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// Store is the in-memory store. The zero value is not usable: call New.
// Every method is safe for concurrent use.
type Store struct {
	mu        sync.RWMutex      // guards everything below
	jobs      map[string][]byte // id → encoded hodeipb.Job
	ids       []string          // job ids, sorted
	workers   map[string][]byte // id → encoded hodeipb.Worker
	tenants   map[string][]byte // name → encoded hodeipb.Tenant
	pipelines map[string][]byte // id → encoded hodeipb.Pipeline
	queued    map[string]int    // tenant → its non-terminal jobs; absent is 0
	writeErr  error
}

// New returns a store with no jobs and only the default tenant (weight 1,
// no limits, created now).
func New() *Store {
	now := time.Now()
	def := &job.Tenant{Name: job.DefaultTenant, CreatedAt: now, UpdatedAt: now}
	def.Normalize()
	enc, err := proto.Marshal(hodeipb.FromTenant(def))
	if err != nil {
		panic(fmt.Sprintf("memstore: encode default tenant: %v", err))
	}
	return &Store{
		jobs:      make(map[string][]byte),
		workers:   make(map[string][]byte),
		tenants:   map[string][]byte{def.Name: enc},
		pipelines: make(map[string][]byte),
		queued:    make(map[string]int),
	}
}

// SetWriteError makes every later write (Insert, Apply, InsertPipeline,
// PutPipeline, DeletePipeline, PutTenant, DeleteTenant, PutWorker,
// DeleteFinished) fail as a whole with err, as a
// failed commit would, until it is called with nil. It lets tests check that
// callers change nothing when the store fails.
func (s *Store) SetWriteError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeErr = err
}

// setVersion re-encodes enc with another version.
func setVersion(enc []byte, version uint64) []byte {
	pb := decodePB(enc)
	pb.Version = version
	b, err := proto.Marshal(pb)
	if err != nil {
		panic(fmt.Sprintf("memstore: re-encode job: %v", err)) // it encoded once
	}
	return b
}

func decodePB(b []byte) *hodeipb.Job {
	var pb hodeipb.Job
	if err := proto.Unmarshal(b, &pb); err != nil {
		panic(fmt.Sprintf("memstore: decode job: %v", err)) // we encoded it
	}
	return &pb
}

func decode(b []byte) *job.Job { return decodePB(b).ToJob() }

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
		if encs[i], err = hodeipb.MarshalJob(j, 1); err != nil {
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
		if encs[i], err = hodeipb.MarshalJob(u.Next, 0); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return nil, s.writeErr
	}
	versions := make([]uint64, len(updates))
	for i, u := range updates {
		if errs[i] != nil {
			continue
		}
		enc, ok := s.jobs[u.Next.ID]
		if !ok {
			errs[i] = fmt.Errorf("job %s: %w", u.Next.ID, job.ErrNotFound)
			continue
		}
		cur := decodePB(enc)
		state, attempt := job.State(cur.GetState()), int(cur.GetAttempt())
		if !u.Expect.Matches(state, attempt, cur.GetVersion()) {
			errs[i] = job.Conflict(u.Next.ID, "is %s attempt %d version %d, not %s attempt %d version %d",
				state, attempt, cur.GetVersion(), u.Expect.State, u.Expect.Attempt, u.Expect.Version)
			continue
		}
		if err := u.Check(); err != nil {
			errs[i] = err
			continue
		}
		v := cur.GetVersion() + 1
		s.jobs[u.Next.ID] = setVersion(encs[i], v)
		s.moveQueued(cur, u.Next)
		versions[i] = v
	}
	for i, u := range updates {
		if errs[i] == nil {
			u.Next.Version = versions[i]
		}
	}
	return errs, nil
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
	return decode(enc), nil
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
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = job.DefaultPageSize
	case limit > job.MaxPageSize:
		limit = job.MaxPageSize
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	i := 0
	if f.After != "" {
		var found bool
		i, found = slices.BinarySearch(s.ids, f.After)
		if found {
			i++
		}
	}
	var out []*job.Job
	for n := 1; i < len(s.ids); i, n = i+1, n+1 {
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, "", err
			}
		}
		if len(out) == limit {
			return out, out[len(out)-1].ID, nil
		}
		j := decode(s.jobs[s.ids[i]])
		if f.Match(j) {
			out = append(out, j)
		}
	}
	return out, "", nil
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
			j = decode(s.jobs[s.ids[i]])
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

// PutWorker stores (creates or replaces) a worker record.
func (s *Store) PutWorker(ctx context.Context, w *job.Worker) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if w == nil || w.ID == "" || len(w.ID) > job.MaxIDLen {
		return job.Invalid("worker_id", "must be 1 to %d bytes", job.MaxIDLen)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	enc, err := proto.Marshal(hodeipb.FromWorker(w))
	if err != nil {
		return fmt.Errorf("encode worker %s: %w: %w", w.ID, job.ErrInvalid, err)
	}
	s.workers[w.ID] = enc
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
		var pb hodeipb.Worker
		if err := proto.Unmarshal(s.workers[id], &pb); err != nil {
			return nil, fmt.Errorf("decode worker %s: %w", id, err)
		}
		out = append(out, pb.ToWorker())
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return nil, s.writeErr
	}
	cutoff := before.UnixNano()
	var deleted []string
	keep := s.ids[:0]
	for _, id := range s.ids {
		pb := decodePB(s.jobs[id])
		fin := pb.GetFinishedUnixNano()
		if len(deleted) < limit && job.State(pb.GetState()).Terminal() && fin != 0 && fin < cutoff &&
			(keepID == nil || !keepID(id)) {
			deleted = append(deleted, id)
			delete(s.jobs, id)
			continue
		}
		keep = append(keep, id)
	}
	clear(s.ids[len(keep):])
	s.ids = keep
	return deleted, nil
}
