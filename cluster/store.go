package cluster

import (
	"context"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// Store is the scheduler's view of durable state. store.DB (bbolt) and
// memstore.Store (the in-memory fake for tests) implement it and pass the
// same conformance suite (store/storetest).
//
// Every method is safe for concurrent use. A write returns only after it is
// durable; concurrent writes may share one commit.
type Store interface {
	// Insert stores new jobs, all or none, in one commit. Each job must be
	// Pending with Attempt 1; the store sets Version to 1. A DependsOn id
	// that is neither stored nor in the same call fails the whole call with
	// a *job.FieldError on field "after"; an id that exists already fails it
	// with job.ErrConflict. In the same transaction it admits the jobs by
	// tenant: a tenant that is not stored fails the call with
	// job.UnknownTenant, and a tenant whose non-terminal jobs plus the new
	// ones would pass its MaxQueued fails it with job.OverQueued, so that
	// concurrent inserts never overshoot the limit.
	Insert(ctx context.Context, jobs []*job.Job) error
	// Apply performs compare-and-swap updates in one commit. For each update
	// it compares the stored (State, Attempt) with Expect and, when they
	// match and Update.Check passes, stores Next with Version = stored+1
	// (and sets Next.Version to that). An update with Create materializes
	// a task of a stored array instead: Next must be a task of it
	// (job.Array.Position) that is not stored yet, and is stored with
	// Version 1; the task was counted against its tenant with its array,
	// so only a terminal Next changes the count. errs[i] is nil, or wraps
	// job.ErrConflict or job.ErrNotFound for update i alone; the others still
	// commit. A non-nil err means nothing was committed.
	Apply(ctx context.Context, updates []job.Update) (errs []error, err error)
	// Get returns the stored job or job.ErrNotFound.
	Get(ctx context.Context, id string) (*job.Job, error)
	// GetMany returns the stored jobs with the given ids, in one read:
	// jobs[i] is nil when ids[i] is not stored.
	GetMany(ctx context.Context, ids []string) ([]*job.Job, error)
	// InsertArray stores an array record (job.Array), which stands for all
	// its tasks until each is materialized by an Apply with Create. In the
	// same commit it admits its Len() tasks against its tenant as Insert
	// admits jobs (job.UnknownTenant, job.OverQueued). An id that exists
	// already fails it with job.ErrConflict.
	InsertArray(ctx context.Context, a *job.Array) error
	// Arrays returns every stored array record in id order.
	Arrays(ctx context.Context) ([]*job.Array, error)
	// CancelArray stores a (marked Cancelled) in place of its record and
	// applies updates (the cancels of its materialized tasks) in the same
	// commit; its tasks not materialized leave its tenant's count of queued
	// jobs there too. errs are as Apply's; job.ErrNotFound when the record
	// is not stored, job.ErrConflict when it is cancelled already.
	CancelArray(ctx context.Context, a *job.Array, updates []job.Update) (errs []error, err error)
	// DeleteArray deletes an array record (not its materialized tasks);
	// deleting one that does not exist is not an error.
	DeleteArray(ctx context.Context, id string) error
	// List returns up to f.Limit jobs matching f that come after f.After
	// in id order (descending with f.Desc), and the page token of the next
	// page ("" when there is none).
	List(ctx context.Context, f job.Filter) ([]*job.Job, string, error)
	// Count counts the jobs List would return for f over all its pages,
	// spending about budget units of work (about one per index entry it
	// visits; see store.DB.Count): exact is false when it stopped there, n
	// then being a lower bound.
	Count(ctx context.Context, f job.Filter, budget int) (n int, exact bool, err error)
	// JobsByPrefix returns the stored jobs of tenants (nil: every tenant)
	// whose ids start with prefix, at most max of them, in id order, with
	// their tenants, in O(log n + max) per tenant: the jobs of other
	// tenants change neither the answer nor its cost.
	JobsByPrefix(ctx context.Context, prefix string, tenants []string, max int) ([]job.IDRef, error)
	// Scan calls fn for every stored job in id order, in one read. fn must
	// not call the store.
	Scan(ctx context.Context, fn func(*job.Job) error) error
	// ScanBriefs is Scan with the brief of each job (job.Brief), which
	// decodes several times faster: recovery reads every job this way.
	ScanBriefs(ctx context.Context, fn func(*job.Brief) error) error
	// InsertPipeline stores a pipeline record and all its jobs in one
	// commit, or nothing: the jobs as Insert would (the same checks and
	// admission), and the record keyed by its id, which must be new
	// (job.ErrConflict otherwise).
	InsertPipeline(ctx context.Context, p *job.Pipeline, jobs []*job.Job) error
	// PutPipeline replaces a stored pipeline record; job.ErrNotFound when
	// there is none.
	PutPipeline(ctx context.Context, p *job.Pipeline) error
	// Pipelines returns every stored pipeline in id order.
	Pipelines(ctx context.Context) ([]*job.Pipeline, error)
	// DeletePipeline deletes a pipeline record (not its jobs); deleting one
	// that does not exist is not an error.
	DeletePipeline(ctx context.Context, id string) error
	// PutTenant stores (creates or replaces) a tenant record, keyed by its
	// name. The record must be valid (Tenant.Validate).
	PutTenant(ctx context.Context, t *job.Tenant) error
	// DeleteTenant deletes a tenant record. Errors: job.ErrNotFound; an
	// error wrapping job.ErrConflict for job.DefaultTenant, or while the
	// tenant has non-terminal jobs (checked in the same transaction).
	DeleteTenant(ctx context.Context, name string) error
	// SyncJobCounts replaces the store's counts of non-terminal jobs by
	// tenant (what Insert's admission reads) with counts, taken by the
	// caller from the same jobs, and reports whether they differed. It is
	// for recovery, while nothing else writes.
	SyncJobCounts(ctx context.Context, counts map[string]int) (bool, error)
	// Tenants returns every stored tenant in name order. The default
	// tenant always exists: opening a store creates it when missing.
	Tenants(ctx context.Context) ([]*job.Tenant, error)
	// PutWorker stores (creates or replaces) worker records, keyed by
	// their ids, in one commit; an invalid one (no id) fails the call with
	// a *job.FieldError and stores none.
	PutWorker(ctx context.Context, ws ...*job.Worker) error
	// DeleteWorker deletes worker records in one commit; an id that is not
	// stored is skipped.
	DeleteWorker(ctx context.Context, ids ...string) error
	// Workers returns every stored worker.
	Workers(ctx context.Context) ([]*job.Worker, error)
	// PutSchedule creates (expect 0) or replaces (the stored Version must
	// be expect) a schedule and sets s.Version to expect+1. Errors:
	// job.ErrConflict for a create whose key exists or a replace whose
	// version moved; job.ErrNotFound for a replace of none.
	PutSchedule(ctx context.Context, s *job.Schedule, expect uint64) error
	// FireSchedule replaces a stored schedule as PutSchedule does and, in
	// the same commit, inserts the jobs of its tick as Insert does (its
	// checks and admission), and p with them as InsertPipeline does when p
	// is not nil: all or nothing. The version compare makes a tick fire
	// once: a replay of the same fire finds the version moved
	// (job.ErrConflict) and inserts nothing.
	FireSchedule(ctx context.Context, s *job.Schedule, expect uint64, p *job.Pipeline, jobs []*job.Job) error
	// DeleteSchedule deletes the schedule under key (job.ScheduleKey), not
	// its jobs; job.ErrNotFound when there is none.
	DeleteSchedule(ctx context.Context, key string) error
	// Schedules returns every stored schedule in key order.
	Schedules(ctx context.Context) ([]*job.Schedule, error)
	// DeleteFinished deletes up to limit terminal jobs whose FinishedAt is
	// before the given time, except those keep (nil: none) says to keep,
	// and returns their ids. keep is called outside the store's locks and
	// transactions, so it may read the store.
	DeleteFinished(ctx context.Context, before time.Time, limit int, keep func(id string) bool) ([]string, error)
}
