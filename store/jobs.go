package store

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/record"
	"github.com/oklog/ulid/v2"
)

// Insert stores new jobs, all or none, in one commit, and sets their Version
// to 1 once it is durable. See scheduler.Store for the rules; a job that is
// not Pending with Attempt 1 fails the call with a *job.FieldError. The
// tenant checks (job.UnknownTenant, job.OverQueued) read the counts in the
// commit's transaction, after the requests before this one in it, so that
// concurrent calls cannot pass a MaxQueued together.
func (db *DB) Insert(ctx context.Context, jobs []*job.Job) error {
	if len(jobs) == 0 {
		return nil
	}
	in, err := prepareInsert(jobs)
	if err != nil {
		return err
	}
	err = db.write(ctx, in.size, func(tx *bolt.Tx) error {
		adding, err := in.check(tx)
		if err != nil {
			return err
		}
		return in.put(tx, db.idx, adding)
	})
	if err != nil {
		return err
	}
	in.committed()
	return nil
}

// insertion is a batch of new jobs on its way into the store, shared by
// Insert and InsertPipeline. A request checks it (check), then writes it
// (put), so that a request that fails a check has written nothing and fails
// alone.
type insertion struct {
	jobs      []*job.Job
	ascending bool      // the jobs' ids ascend strictly
	encs      [][]byte  // jobs[i] encoded with version 1
	adds      indexAdds // the jobs' index entries
	size      int       // encoded bytes, for MaxBatchBytes
}

// prepareInsert checks new jobs with job.CheckNew, encodes them and makes
// their index keys, on the caller's goroutine (and, for a large batch, on
// every CPU).
func prepareInsert(jobs []*job.Job) (*insertion, error) {
	if err := job.CheckNew(jobs); err != nil {
		return nil, err
	}
	in := &insertion{jobs: jobs, encs: make([][]byte, len(jobs)), ascending: true}
	for i := 1; i < len(jobs) && in.ascending; i++ {
		in.ascending = jobs[i-1].ID < jobs[i].ID
	}
	if err := in.encode(); err != nil {
		return nil, err
	}
	for _, enc := range in.encs {
		in.size += len(enc)
	}
	return in, nil
}

// encodeChunk is the fewest jobs worth a goroutine of their own in
// insertion.encode.
const encodeChunk = 256

// encode encodes the jobs with version 1 and gathers their index entries
// (making the chunks of the large groups, indexAdds.encode). Encoding is
// most of the CPU time of a large insert, so a batch of several
// encodeChunks is split over the CPUs, each part gathering its own
// entries, which are joined in order after; the goroutines end before it
// returns. The error is that of the first job, in order, that failed.
func (in *insertion) encode() error {
	encode := func(lo, hi int, adds *indexAdds) error {
		for i := lo; i < hi; i++ {
			enc, err := encodeJob(in.jobs[i], 1)
			if err != nil {
				return err
			}
			in.encs[i] = enc
			if err := adds.job(in.jobs[i]); err != nil {
				return err
			}
		}
		return nil
	}
	n := len(in.jobs)
	workers := min(runtime.GOMAXPROCS(0), n/encodeChunk)
	if workers <= 1 {
		if err := encode(0, n, &in.adds); err != nil {
			return err
		}
		in.adds.encode()
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	parts := make([]indexAdds, workers)
	per := (n + workers - 1) / workers
	for w := range workers {
		wg.Go(func() { errs[w] = encode(w*per, min((w+1)*per, n), &parts[w]) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	for w := range parts {
		in.adds.join(&parts[w])
	}
	in.adds.encode()
	return nil
}

// check runs Insert's checks in tx: every id new (job.ErrConflict), every
// dependency stored or in the batch (a *job.FieldError on "after"), and
// the tenants' admission (admit). It writes nothing, so its errors are
// plain: they fail the request alone. It returns the new jobs by tenant,
// for put.
func (in *insertion) check(tx *bolt.Tx) (map[string]int, error) {
	b := tx.Bucket(bucketJobs)
	var inCall func(id string) bool
	if in.afterLast(b) {
		// None is stored, none repeats, and the batch's ids are sorted.
		inCall = func(id string) bool {
			_, found := slices.BinarySearchFunc(in.jobs, id, func(j *job.Job, id string) int { return strings.Compare(j.ID, id) })
			return found
		}
	} else {
		seen := make(map[string]bool, len(in.jobs))
		for _, j := range in.jobs {
			if seen[j.ID] || b.Get([]byte(j.ID)) != nil {
				return nil, job.Conflict(j.ID, "already exists")
			}
			seen[j.ID] = true
		}
		inCall = func(id string) bool { return seen[id] }
	}
	for _, j := range in.jobs {
		for _, dep := range j.Spec.DependsOn {
			if !inCall(dep) && b.Get([]byte(dep)) == nil {
				return nil, job.UnknownDependency(dep)
			}
		}
	}
	return admit(tx, in.jobs)
}

// afterLast reports whether the ids of the batch ascend (in.ascending,
// found before the transaction) and the first is after the last stored
// id, as new ids (time-ordered ULIDs) normally are: then none of them can
// be stored, and check needs no lookup per job.
func (in *insertion) afterLast(b *bolt.Bucket) bool {
	last, _ := b.Cursor().Last()
	return in.ascending && in.jobs[0].ID > string(last)
}

// put writes the jobs, gives their index entries to idx (the commit's, see
// txIndex) and adds adding (from check) to the tenants' counts.
// Every error it returns is an abort: it may have written part of the batch.
func (in *insertion) put(tx *bolt.Tx, idx *txIndex, adding map[string]int) error {
	b := tx.Bucket(bucketJobs)
	for i, j := range in.jobs {
		if err := b.Put([]byte(j.ID), in.encs[i]); err != nil {
			return abort(fmt.Errorf("put job %s: %w", j.ID, err))
		}
	}
	idx.adds = append(idx.adds, &in.adds)
	for name, n := range adding {
		if err := addJobCount(tx, name, int64(n)); err != nil {
			return abort(err)
		}
	}
	return nil
}

// committed sets Version 1 on the caller's jobs, once their commit is
// durable.
func (in *insertion) committed() {
	for _, j := range in.jobs {
		j.Version = 1
	}
}

// Apply performs compare-and-swap updates in one commit; see scheduler.Store.
// Next.Version of each update that succeeded is set once the commit is
// durable. An update with a nil Next fails alone with job.ErrInvalid. A job
// that moves to a terminal state leaves its tenant's count of queued jobs in
// the same transaction, and the job's index keys that changed (its state's,
// for a transition) are replaced in it too. The stored jobs are read and
// decoded for that before the commit, on the caller's goroutine.
func (db *DB) Apply(ctx context.Context, updates []job.Update) ([]error, error) {
	if len(updates) == 0 {
		return make([]error, 0), nil
	}
	p, err := db.prepareApply(updates)
	if err != nil {
		return nil, err
	}
	if err := db.write(ctx, p.size, p.apply); err != nil {
		return nil, err
	}
	p.committed()
	return p.errs, nil
}

// application is a batch of updates on its way into the store, encoded,
// with their index keys, on the caller's goroutine; Apply and CancelArray
// write one.
type application struct {
	db       *DB
	updates  []job.Update
	encs     [][]byte
	entries  [][]indexEntry // the index keys of each Next
	stored   []storedIndex  // the index keys of each stored job, read before the commit
	errs     []error
	versions []uint64
	size     int
}

func (db *DB) prepareApply(updates []job.Update) (*application, error) {
	p := &application{db: db, updates: updates, encs: make([][]byte, len(updates)), entries: make([][]indexEntry, len(updates)),
		errs: make([]error, len(updates)), versions: make([]uint64, len(updates))}
	for i, u := range updates {
		if u.Next == nil {
			p.errs[i] = job.Invalid("next", "update %d has no job", i)
			continue
		}
		p.entries[i] = indexEntries(u.Next)
		if err := checkIndexKeys(p.entries[i]); err != nil {
			p.errs[i] = err
			continue
		}
		enc, err := encodeJob(u.Next, 0)
		if err != nil {
			return nil, err
		}
		p.encs[i] = enc
		p.size += len(enc)
	}
	p.stored = db.readIndexed(updates, p.errs)
	return p, nil
}

// apply writes the updates in tx, their index changes going to the
// commit's (see txIndex); one that fails a check fails alone.
func (p *application) apply(tx *bolt.Tx) error {
	var iw indexWriter
	var arrays arrayCache
	for i, u := range p.updates {
		if p.errs[i] != nil {
			continue
		}
		var v uint64
		var err error
		if u.Create {
			if arrays == nil {
				arrays = make(arrayCache)
			}
			v, err = createTask(tx, u, p.encs[i], p.entries[i], &iw, arrays)
		} else {
			v, err = applyOne(tx, u, p.encs[i], p.entries[i], p.stored[i], &iw)
		}
		if _, ok := err.(*abortError); ok {
			return err
		}
		p.errs[i], p.versions[i] = err, v
	}
	p.db.idx.w.ops = append(p.db.idx.w.ops, iw.ops...)
	return nil
}

// committed sets the new versions on the caller's jobs, once durable.
func (p *application) committed() {
	for i, u := range p.updates {
		if p.errs[i] == nil {
			u.Next.Version = p.versions[i]
		}
	}
}

// applyOne checks and writes one update, with next its index keys (their
// changes go to iw), and returns the new version. The index keys to replace are those of the
// stored job: a transition changes only its state's key, but a change the
// transition table forbids must not leave a stale one. They come from
// stored (read before the commit) when the stored value is still the one
// read then, and from decoding it otherwise.
func applyOne(tx *bolt.Tx, u job.Update, enc []byte, next []indexEntry, stored storedIndex, iw *indexWriter) (uint64, error) {
	b := tx.Bucket(bucketJobs)
	key := []byte(u.Next.ID)
	cur := b.Get(key)
	if cur == nil {
		return 0, fmt.Errorf("job %s: %w", u.Next.ID, job.ErrNotFound)
	}
	h, err := readHeader(cur)
	if err != nil {
		return 0, fmt.Errorf("job %s: %w", u.Next.ID, err)
	}
	if !u.Expect.Matches(h.State, h.Attempt, h.Version) {
		return 0, job.Conflict(u.Next.ID, "is %s attempt %d version %d, not %s attempt %d version %d",
			h.State, h.Attempt, h.Version, u.Expect.State, u.Expect.Attempt, u.Expect.Version)
	}
	if err := u.Check(); err != nil {
		return 0, err
	}
	old := stored.entries
	if !stored.matches(cur, h.Version) {
		if old, err = storedEntries(u.Next.ID, cur); err != nil {
			return 0, err
		}
	}
	// The counts and indexes first: h.Tenant aliases cur, which the Put
	// replaces.
	if err := moveJobCount(tx, h, u.Next); err != nil {
		return 0, abort(fmt.Errorf("job %s: %w", u.Next.ID, err))
	}
	iw.move(old, next)
	// Read before the Put, which replaces what h aliases.
	ended, attempt := endsAttempt(h.State, h.Attempt, u.Next), h.Attempt
	v := h.Version + 1
	if err := b.Put(key, withVersion(enc, v)); err != nil {
		return 0, abort(fmt.Errorf("put job %s: %w", u.Next.ID, err))
	}
	if ended {
		if err := putUsage(tx, attemptUsage(u.Next, attempt)); err != nil {
			return 0, err
		}
	}
	return v, nil
}

// Get returns the stored job or an error wrapping job.ErrNotFound.
func (db *DB) Get(ctx context.Context, id string) (*job.Job, error) {
	if err := db.usable(ctx); err != nil {
		return nil, err
	}
	var enc []byte
	err := db.view(func(tx *bolt.Tx) error {
		enc = bytes.Clone(tx.Bucket(bucketJobs).Get([]byte(id)))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	if enc == nil {
		return nil, fmt.Errorf("job %s: %w", id, job.ErrNotFound)
	}
	return decodeJob(id, enc)
}

// List returns up to f.Limit jobs (default job.DefaultPageSize, at most
// job.MaxPageSize) matching f that come after f.After in id order, or with
// f.Desc in descending id order. The page token is the last id returned
// when the page is full and more candidates follow it (the next page may
// then be empty), else "".
//
// It reads one transaction. It walks the runs of ids planList chooses for
// f (an index's values, or the jobs bucket) from f.After, checks the other
// filters by looking their keys up, and decodes only the jobs that pass
// those, so that a page costs about what the walked runs hold up to its
// last job, not the whole store. It checks ctx every listCheckEvery keys,
// so that a listing whose client went away stops; it then fails with an
// error wrapping ctx.Err().
func (db *DB) List(ctx context.Context, f job.Filter) ([]*job.Job, string, error) {
	if err := db.usable(ctx); err != nil {
		return nil, "", err
	}
	var (
		out  []*job.Job
		next string
	)
	err := db.view(func(tx *bolt.Tx) error {
		var err error
		out, next, err = planList(tx, f).run(ctx, tx, db.listed.Load())
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("list jobs: %w", err)
	}
	return out, next, nil
}

// Count counts the stored jobs that List would return for f over all its
// pages (f.After and f.Limit aside), walking what List walks without
// reading the jobs unless a filter needs them, and spending at most budget
// units: about one per id visited, more per index lookup or job read. When
// the budget runs out it returns what it counted and exact false: a lower
// bound, so that a count never costs a scan of a million jobs.
func (db *DB) Count(ctx context.Context, f job.Filter, budget int) (n int, exact bool, err error) {
	if err := db.usable(ctx); err != nil {
		return 0, false, err
	}
	err = db.view(func(tx *bolt.Tx) error {
		var err error
		n, exact, err = planList(tx, f).count(ctx, tx, budget)
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("count jobs: %w", err)
	}
	return n, exact, nil
}

// JobsByPrefix returns the stored jobs whose ids start with prefix, at
// most max of them, in id order: their ids and tenants. With tenants
// (nil: every tenant) it returns only the jobs of those tenants, reading
// each one's run of the tenant index from prefix on, so that what other
// tenants hold changes neither the answer nor its cost: resolving an id
// someone typed costs O(log n + max) per tenant. Without, it seeks the
// prefix in the jobs bucket and reads only what it returns.
func (db *DB) JobsByPrefix(ctx context.Context, prefix string, tenants []string, max int) ([]job.IDRef, error) {
	if err := db.usable(ctx); err != nil {
		return nil, err
	}
	var out []job.IDRef
	err := db.view(func(tx *bolt.Tx) error {
		p := []byte(prefix)
		if tenants == nil {
			c := tx.Bucket(bucketJobs).Cursor()
			for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p) && len(out) < max; k, v = c.Next() {
				h, err := readHeader(v)
				if err != nil {
					return fmt.Errorf("job %s: %w", k, err)
				}
				out = append(out, job.IDRef{ID: string(k), Tenant: string(h.Tenant)})
			}
			return nil
		}
		b := tx.Bucket(indexBuckets[indexTenant])
		for _, t := range tenants {
			pc := newPostingCursorFrom(b, indexPrefix(t), p)
			for n := 0; pc.head() != nil && bytes.HasPrefix(pc.head(), p) && n < max; n++ {
				out = append(out, job.IDRef{ID: string(pc.head()), Tenant: t})
				pc.advance()
			}
			if pc.err != nil {
				return fmt.Errorf("index %s: %w", indexTenant, pc.err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("jobs by prefix %q: %w", prefix, err)
	}
	if len(tenants) > 1 {
		slices.SortFunc(out, func(a, b job.IDRef) int { return strings.Compare(a.ID, b.ID) })
		out = out[:min(len(out), max)]
	}
	return out, nil
}

// Scan calls fn for every stored job in id order, in one read
// transaction with a sequential cursor: it is a consistent snapshot, and
// it is how the cluster recovers at start. fn must not call the store
// (the transaction is open). An error from fn (or ctx ending) stops the
// scan and is returned.
func (db *DB) Scan(ctx context.Context, fn func(*job.Job) error) error {
	return db.scanJobs(ctx, func(k, v []byte) error {
		j, err := decodeJob(string(k), v)
		if err != nil {
			return fmt.Errorf("job %s: %w", k, err)
		}
		return fn(j)
	})
}

// scanJobs calls each with every stored job's key and value, in id
// order, in one read transaction, until it returns an error or ctx ends.
func (db *DB) scanJobs(ctx context.Context, each func(k, v []byte) error) error {
	if err := db.usable(ctx); err != nil {
		return err
	}
	n := 0
	err := db.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketJobs).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if n++; n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if err := each(k, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan jobs: %w", err)
	}
	return nil
}

// finishedBefore reports whether a stored job may be deleted by
// DeleteFinished(before).
func finishedBefore(h header, before int64) bool {
	return h.State.Terminal() && h.Finished != 0 && h.Finished < before
}

// DeleteFinished deletes up to limit terminal jobs whose FinishedAt is set
// and before the given time, oldest id first, and returns their ids. It
// finds them in a read transaction, so that the scan does not hold up
// writers, then deletes them in one write transaction that checks each again.
// A limit <= 0 deletes nothing.
func (db *DB) DeleteFinished(ctx context.Context, before time.Time, limit int, keep func(string) bool) ([]string, error) {
	if err := db.usable(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	cutoff := before.UnixNano()
	// Ids are made at submit and sort by time, so the scan ends at the
	// first job made after the cutoff (job.MadeAfter): a sweep reads the
	// jobs older than the retention, not every queued one. stop is the
	// least id made after it; a key from there on is checked for being an
	// id at all.
	var first ulid.ULID
	if err := first.SetTime(uint64(max(before.UnixMilli()+1, 0))); err != nil {
		first = ulid.ULID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} // a time past any id's
	}
	stop := []byte(first.String())
	madeAfter := func(k []byte) bool { return bytes.Compare(k, stop) >= 0 && job.MadeAfter(string(k), before) }
	// keep may call the store: it is asked outside the read transaction,
	// one chunk of candidates at a time.
	var found [][]byte
	var after []byte
	for len(found) < limit {
		var chunk [][]byte
		err := db.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketJobs).Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			var last []byte // valid in the transaction: copied once below
			for ; k != nil && len(chunk) < limit; k, v = c.Next() {
				if madeAfter(k) {
					k = nil // the rest were made after the cutoff
					break
				}
				h, err := readHeader(v)
				if err != nil {
					return fmt.Errorf("job %s: %w", k, err)
				}
				if finishedBefore(h, cutoff) {
					chunk = append(chunk, bytes.Clone(k))
				}
				last = k
			}
			after = nil
			if k != nil {
				after = bytes.Clone(last)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("delete finished jobs: %w", err)
		}
		for _, k := range chunk {
			if len(found) < limit && (keep == nil || !keep(string(k))) {
				found = append(found, k)
			}
		}
		if after == nil {
			break
		}
	}
	if len(found) == 0 {
		return nil, nil
	}
	var deleted []string
	err := db.write(ctx, 0, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		var (
			del [][]byte
			iw  indexWriter
		)
		for _, k := range found {
			v := b.Get(k)
			if v == nil {
				continue
			}
			h, err := readHeader(v)
			if err != nil || !finishedBefore(h, cutoff) {
				continue
			}
			j, err := decodeJob(string(k), v)
			if err != nil {
				continue // left alone, as a header that does not decode
			}
			iw.del(indexEntries(j))
			del = append(del, k)
		}
		db.idx.w.ops = append(db.idx.w.ops, iw.ops...)
		for _, k := range del {
			if err := b.Delete(k); err != nil {
				return abort(fmt.Errorf("delete job %s: %w", k, err))
			}
		}
		deleted = make([]string, len(del))
		for i, k := range del {
			deleted[i] = string(k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delete finished jobs: %w", err)
	}
	return deleted, nil
}

// PutWorker stores (creates or replaces) worker records, keyed by their
// ids, all in one commit, or none when one is invalid.
func (db *DB) PutWorker(ctx context.Context, ws ...*job.Worker) error {
	encs := make([][]byte, len(ws))
	size := 0
	for i, w := range ws {
		if w == nil || w.ID == "" || len(w.ID) > job.MaxIDLen {
			return job.Invalid("worker_id", "must be 1 to %d bytes", job.MaxIDLen)
		}
		enc, err := encodeWorker(w)
		if err != nil {
			return err
		}
		encs[i] = enc
		size += len(enc)
	}
	return db.write(ctx, size, func(tx *bolt.Tx) error {
		for i, w := range ws {
			if err := tx.Bucket(bucketWorkers).Put([]byte(w.ID), encs[i]); err != nil {
				return abort(fmt.Errorf("put worker %s: %w", w.ID, err))
			}
		}
		return nil
	})
}

// DeleteWorker deletes worker records in one commit; an id that is not
// stored is skipped.
func (db *DB) DeleteWorker(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return db.usable(ctx)
	}
	return db.write(ctx, 0, func(tx *bolt.Tx) error {
		for _, id := range ids {
			if err := tx.Bucket(bucketWorkers).Delete([]byte(id)); err != nil {
				return abort(fmt.Errorf("delete worker %s: %w", id, err))
			}
		}
		return nil
	})
}

// Workers returns every stored worker in id order.
func (db *DB) Workers(ctx context.Context) ([]*job.Worker, error) {
	if err := db.usable(ctx); err != nil {
		return nil, err
	}
	var out []*job.Worker
	err := db.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketWorkers).ForEach(func(k, v []byte) error {
			w, err := decodeWorker(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, w)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	return out, nil
}

// ScanBriefs calls fn with the brief of every stored job in id order, in
// one read transaction with a sequential cursor; see job.Brief. It is how
// the cluster recovers at start: a brief decodes several times faster than
// a job and leaves less garbage. fn must not call the store.
func (db *DB) ScanBriefs(ctx context.Context, fn func(*job.Brief) error) error {
	return db.scanJobs(ctx, func(k, v []byte) error {
		b, err := record.UnmarshalBrief(string(k), v)
		if err != nil {
			return err
		}
		return fn(&b)
	})
}
