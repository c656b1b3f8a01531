package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/hodei-jobs/hodei/job"
)

// SchemaVersion is the layout of the buckets and values this code writes.
// Open migrates a file with an older one and refuses a file with a newer
// one (see migrate.go).
const SchemaVersion = 4

// Bucket names. meta holds the schema version under schemaKey. tenant_jobs
// is derived data: the count of each tenant's non-terminal jobs, rebuilt
// from jobs at every Open (see tenants.go), so it needs no schema change.
// The job indexes (index_*, indexBuckets in index.go) are derived data
// too, built at Open when missing.
var (
	bucketJobs       = []byte("jobs")
	bucketWorkers    = []byte("workers")
	bucketTenants    = []byte("tenants")
	bucketTenantJobs = []byte("tenant_jobs")
	bucketPipelines  = []byte("pipelines")
	bucketTokens     = []byte("tokens")
	bucketAudit      = []byte("audit")
	bucketAgents     = []byte("agents")
	bucketArrays     = []byte("arrays")
	bucketSchedules  = []byte("schedules")
	bucketMeta       = []byte("meta")
	schemaKey        = []byte("schema")

	allBuckets = [][]byte{bucketJobs, bucketWorkers, bucketTenants, bucketTenantJobs,
		bucketPipelines, bucketTokens, bucketAudit, bucketAgents, bucketArrays, bucketSchedules, bucketMeta,
		bucketUsageAttempts, bucketUsageRollups}
)

// Options configure Open. The zero value is the production setting.
type Options struct {
	// Logger receives the store's few messages (open, close). Nil discards them.
	Logger *slog.Logger
	// NoSync skips fsync on commit: a crash may lose acknowledged writes.
	// For tests and benchmarks only. Default false.
	NoSync bool
	// LockTimeout is how long Open waits for the file lock held by another
	// process before it fails with ErrLocked. Default 1 s.
	LockTimeout time.Duration
	// InitialMmapSize is the size of the memory map, in bytes. It is virtual
	// memory, not resident; while the file fits, growth needs no remap, which
	// would wait for open read transactions and stall writers. Default 1 GiB.
	InitialMmapSize int
	// MaxBatch caps the requests the commit loop runs in one transaction,
	// and is the length of its queue. Default 4096.
	MaxBatch int
	// MaxBatchBytes caps the encoded bytes of one transaction; the request
	// that crosses it is the last one taken. Default 32 MiB.
	MaxBatchBytes int
}

// Defaults of Options.
const (
	DefaultLockTimeout     = time.Second
	DefaultInitialMmapSize = 1 << 30
	DefaultMaxBatch        = 4096
	DefaultMaxBatchBytes   = 32 << 20
)

// DB is the bbolt store. It implements scheduler.Store; every method is safe
// for concurrent use. Create it with Open and release it with Close.
type DB struct {
	bolt *bolt.DB
	log  *slog.Logger
	opts Options
	// skipFreelistAtClose leaves the free list out of the file at Close,
	// as a crash does (tests of what a crash leaves).
	skipFreelistAtClose bool
	// identity is the file's cluster id and creation time, read or made
	// at Open; it never changes.
	identity Identity

	reqs    chan *request // writers → commit loop; capacity MaxBatch
	closing chan struct{} // closed by Close: the loop stops taking requests
	done    chan struct{} // closed when the commit loop has returned

	closeMu  sync.Mutex // guards closed and closeErr
	closed   bool
	closeErr error

	statsMu sync.Mutex // guards stats
	stats   Stats

	health health // whether commits succeed (health.go)

	// idx gathers the index changes of the commit the loop is running;
	// only the commit loop's goroutine uses it.
	idx *txIndex

	// Test hooks, nil in production. enqueued runs after a request is on
	// the queue; listed runs each time List checks its context, with the
	// keys it has visited so far.
	enqueued atomic.Pointer[func()]
	listed   atomic.Pointer[func(visited int)]
}

// Stats counts the commit loop's work since Open.
type Stats struct {
	Commits  uint64 // transactions committed
	Requests uint64 // write requests in those transactions
	Failed   uint64 // transactions that failed as a whole
	// CommitSeconds counts the loop's transactions, failed ones included,
	// by how long each took, writes and fsync included:
	// CommitSeconds[i] counts those that took more than CommitBuckets[i-1]
	// and at most CommitBuckets[i]; the last element those that took more
	// than every bound. CommitTime is the sum of the durations.
	CommitSeconds [len(CommitBuckets) + 1]uint64
	CommitTime    time.Duration
}

// CommitBuckets are the upper bounds, in seconds, of Stats.CommitSeconds:
// from 100 µs (a small transaction's fsync takes about 400 µs) doubling
// to about 6.5 s (a disk that stalls).
var CommitBuckets = [...]float64{
	0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256,
	0.0512, 0.1024, 0.2048, 0.4096, 0.8192, 1.6384, 3.2768, 6.5536,
}

// observeCommit counts one transaction that took d. The caller holds
// statsMu.
func (s *Stats) observeCommit(d time.Duration) {
	sec := d.Seconds()
	i := 0
	for i < len(CommitBuckets) && sec > CommitBuckets[i] {
		i++
	}
	s.CommitSeconds[i]++
	s.CommitTime += d
}

// Open opens or creates the database file at path (its directory is created
// if missing), creates the buckets, checks the schema version (migrating an
// older file in the same transaction, and logging what it rewrote), stores the
// default tenant when it is missing, recounts each tenant's non-terminal
// jobs when it migrates a file, builds the job indexes missing from a file
// written before they existed (decoding every job; logged with the count),
// all in one transaction, and starts the commit loop. It fails with
// ErrLocked when another process holds the file, and with ErrSchema when the
// file is newer than this code or its schema version cannot be read.
func Open(path string, opts Options) (*DB, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.InitialMmapSize <= 0 {
		opts.InitialMmapSize = DefaultInitialMmapSize
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	bdb, info, err := openBolt(path, &bolt.Options{
		Timeout:         opts.LockTimeout,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: opts.InitialMmapSize,
		NoSync:          opts.NoSync,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: waited %s: %w (is another hodei serve using this data dir?)",
			path, opts.LockTimeout, ErrLocked)
	}
	if errors.Is(err, ErrDamaged) {
		return nil, fmt.Errorf("open store: %w", err) // the error names the file
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	log := opts.Logger.With("component", "store")
	if info.DamagedMeta >= 0 {
		log.Warn("one of the database's two meta pages is damaged; bbolt uses the other one, "+
			"the file is as of that commit and the next commit rewrites the damaged page",
			"path", path, "damaged_meta_page", info.DamagedMeta, "txid", info.Txid)
	}
	var (
		mig       *migrated
		indexed   []string // index buckets created
		indexJobs int      // jobs read to fill them
		ident     Identity
	)
	start := time.Now()
	err = guard(path, func() error {
		return bdb.Update(func(tx *bolt.Tx) error {
			var err error
			if mig, err = initFile(tx, start); err != nil {
				return err
			}
			if ident, err = ensureIdentity(tx, start); err != nil {
				return err
			}
			indexed, indexJobs, err = ensureIndexes(tx)
			return err
		})
	})
	if err != nil {
		_ = closeGuarded(path, bdb)
		if errors.Is(err, ErrDamaged) {
			return nil, fmt.Errorf("open store: %w", err)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db := &DB{
		bolt:     bdb,
		log:      log,
		opts:     opts,
		identity: ident,
		reqs:     make(chan *request, opts.MaxBatch),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	db.health = health{log: db.log, path: path, now: time.Now}
	switch {
	case mig != nil && mig.From == 1:
		db.log.Info("store migrated", "path", path, "from_schema", mig.From, "to_schema", SchemaVersion,
			"jobs", mig.Jobs, "pipelines", mig.Pipelines, "workers", mig.Workers, "tenants", mig.Tenants,
			"tokens", mig.Tokens, "agents", mig.Agents, "took", time.Since(start))
	case mig != nil:
		// Only the indexes changed: their rebuild is logged below.
		db.log.Info("store migrated", "path", path, "from_schema", mig.From, "to_schema", SchemaVersion,
			"records", "unchanged", "indexes", "rebuilt")
	}
	if len(indexed) > 0 {
		db.log.Info("job indexes built", "indexes", indexed, "jobs", indexJobs, "took", time.Since(start).Round(time.Millisecond))
	}
	go db.run()
	db.log.Info("store opened", "path", path, "schema", SchemaVersion)
	return db, nil
}

// initFile creates missing buckets, checks or records the schema (migrating
// an older file, and returning what it migrated) and stores the default
// tenant (created at now) when missing. The counts of non-terminal jobs by
// tenant are kept in the same transactions as the jobs, so they are
// rebuilt only with a migration, not read back from every job at each
// start; Check verifies them.
func initFile(tx *bolt.Tx, now time.Time) (*migrated, error) {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return nil, fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	mig, err := checkSchema(tx)
	if err != nil {
		return nil, err
	}
	if err := ensureDefaultTenant(tx, now); err != nil {
		return nil, err
	}
	if mig != nil {
		return mig, rebuildJobCounts(tx)
	}
	return nil, nil
}

// Close stops the commit loop, fails the requests still queued with
// job.ErrClosed, waits for the loop and closes the file. A write already in
// a transaction finishes first. Close is safe to call more than once; later
// calls return the first call's result.
func (db *DB) Close() error {
	db.closeMu.Lock()
	defer db.closeMu.Unlock()
	if db.closed {
		return db.closeErr
	}
	db.closed = true
	close(db.closing)
	<-db.done
	// The last commit writes the free list into the file (the commit
	// loop's do not: NoFreelistSync), so that the next open reads it
	// instead of walking every page to rebuild it (PreflightFile).
	if db.health.get().Err == nil && !db.skipFreelistAtClose {
		db.bolt.NoFreelistSync = false
		if err := db.bolt.Update(func(*bolt.Tx) error { return nil }); err != nil {
			db.log.Warn("the free list could not be written at close; the next start rebuilds it", "err", err)
		}
	}
	if err := db.bolt.Close(); err != nil {
		db.closeErr = fmt.Errorf("close store: %w", err)
	}
	db.log.Info("store closed")
	return db.closeErr
}

// Stats returns the commit loop's counters.
func (db *DB) Stats() Stats {
	db.statsMu.Lock()
	defer db.statsMu.Unlock()
	return db.stats
}

// Snapshot writes a consistent copy of the database, as of one read
// transaction, to w and returns the bytes written. Writers go on meanwhile.
// The copy is a valid bbolt file. It stops with ctx.Err() when ctx ends.
func (db *DB) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	if err := db.usable(ctx); err != nil {
		return 0, err
	}
	var n int64
	err := db.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(ctxWriter{ctx, w})
		return err
	})
	if cerr := ctx.Err(); err != nil && cerr != nil {
		err = cerr // bbolt formats some writer errors with %s, losing the cause
	}
	if err != nil {
		return n, fmt.Errorf("snapshot: %w", err)
	}
	return n, nil
}

// ctxWriter fails writes once its context has ended.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// Check runs bbolt's consistency check over the whole file, then checks
// the job indexes against the jobs (every job has its entries, no entry is
// stray), and returns the problems found, joined, or nil. It holds the write lock while it runs
// (bbolt's check is only safe against concurrent writers inside a write
// transaction), so it is meant for tests and maintenance, not the hot path.
func (db *DB) Check() error {
	if err := db.usable(context.Background()); err != nil {
		return err
	}
	tx, err := db.bolt.Begin(true)
	if err != nil {
		return fmt.Errorf("check: %w", closedErr(err))
	}
	defer func() { _ = tx.Rollback() }()
	return guard(db.bolt.Path(), func() error { return checkTx(tx) })
}

// CheckFile runs Check's checks on a closed database file, such as a
// snapshot, opening it read-only. Indexes the file does not have yet (it
// was written before them) are not checked.
func CheckFile(path string) error {
	if _, err := CheckFileLayout(path); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	bdb, err := openReadOnly(path)
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	err = guard(path, func() error { return bdb.View(checkTx) })
	if cerr := closeGuarded(path, bdb); err == nil && cerr != nil {
		err = fmt.Errorf("check %s: %w", path, cerr)
	}
	return err
}

// openReadOnly opens the closed database file at path read-only under
// guard, so that a page bbolt cannot map is ErrDamaged, not a crash.
func openReadOnly(path string) (bdb *bolt.DB, err error) {
	err = guard(path, func() error {
		bdb, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: DefaultLockTimeout})
		return err
	})
	return bdb, err
}

// maxCheckErrors is how many of bbolt's findings a failed check lists.
const maxCheckErrors = 10

// checkTx reads every page of tx in the caller's goroutine (walkTx: run it
// under guard, so that a damaged page is an error, not a crash in bbolt's
// checker goroutine), then runs bbolt's consistency check and the store's.
func checkTx(tx *bolt.Tx) error {
	if err := walkTx(tx); err != nil {
		return fmt.Errorf("consistency check: %w", err)
	}
	var errs []error
	more := 0
	for err := range tx.Check() { // drain it all: the checker is a goroutine
		if len(errs) == maxCheckErrors {
			more++
			continue
		}
		errs = append(errs, err)
	}
	if more > 0 {
		errs = append(errs, fmt.Errorf("… and %d more", more))
	}
	if len(errs) == 0 && current(tx) {
		// The counts and indexes are read only from a sound file of
		// this schema.
		if err := checkJobCounts(tx); err != nil {
			errs = append(errs, err)
		}
		if err := checkIndexes(tx); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("consistency check: %w", errors.Join(errs...))
	}
	return nil
}

// usable returns ctx.Err() or job.ErrClosed when a call must not start.
func (db *DB) usable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-db.closing:
		return fmt.Errorf("store: %w", job.ErrClosed)
	default:
		return nil
	}
}

// view runs fn in a read transaction, reporting a closed file as
// job.ErrClosed.
func (db *DB) view(fn func(*bolt.Tx) error) error {
	return closedErr(db.bolt.View(fn))
}

func closedErr(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("store: %w", job.ErrClosed)
	}
	return err
}

// current reports whether the file in tx has this code's schema (an older
// one is migrated at Open, and its values are read only then).
func current(tx *bolt.Tx) bool {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return false
	}
	v := meta.Get(schemaKey)
	return len(v) == 8 && binary.BigEndian.Uint64(v) == SchemaVersion
}
