// Package store is Hodei's durable state: one bbolt file (hodei.db) holding
// jobs, workers and the other records, each encoded as the store's own
// protobuf record (package record, never the API's messages), and the
// append-only job log files beside it (logs/<job>/<n>.log). The file's
// schema version is checked at Open, which migrates an older file in its
// first transaction (migrate.go).
//
// DB implements scheduler.Store. Every write goes through one commit loop
// owned by the DB: a writer enqueues a request and the loop runs everything
// queued so far in one bbolt transaction, so a lone writer costs about one
// fsync and many concurrent writers share one. A write returns only after
// its transaction is on disk. Requests in one transaction are isolated from
// each other: a compare-and-swap that loses or an unknown dependency fails
// that request alone, and writes nothing.
//
// Insert admits jobs by tenant in the transaction that stores them: the
// tenant must be stored and, when it has a MaxQueued, its count of
// non-terminal jobs plus the new ones must fit. The counts live in their own
// bucket, kept by Insert and Apply in their transactions and rebuilt from the
// jobs at every Open.
//
// List finds jobs through secondary indexes (index.go), one bucket per
// filter (tenant, state, array, pipeline, label, name) and one of finish
// times by minute, written in the transaction that writes each job; a page
// walks, forward or newest first, the runs of ids of one filter (list.go),
// so it costs the runs it walks, not the whole store, and a listing stops
// when its context ends. Count counts what List would list within a
// budget and says when it stopped short. JobsByPrefix finds ids by their
// start with one seek (one per tenant in the tenant index, for a caller
// limited to tenants). Open builds the indexes a file written before them
// lacks.
//
// A pipeline record (its steps and the ids of their jobs) is stored with its
// jobs by InsertPipeline, in one request: the jobs get Insert's checks and
// admission, and any failure writes neither the record nor a job.
//
// The audit trail (audit.go) is append-only: AppendAudit stores a batch
// in one transaction under keys ordered by time, ListAudit reads newest
// first and DeleteAuditBefore applies retention, oldest first. Its values
// are the store's own protobuf record, not the API's AuditRecord.
//
// Caveats:
//   - Values read from bbolt are only valid inside their transaction; the
//     store copies (decodes) everything before the transaction ends, and
//     never opens a read transaction while the same goroutine holds another
//     (a remap of the file would deadlock). Scan reads in chunks so that its
//     callback may call the store.
//   - InitialMmapSize is sized so that normal growth needs no remap, which
//     would otherwise wait for every open read transaction (a snapshot, a
//     long List) and stall the writers meanwhile.
//   - Only one process may open the file; a second one fails after
//     Options.LockTimeout with ErrLocked.
//   - Open reads the header of every stored job to rebuild the counts by
//     tenant, so its time grows with the jobs kept (DeleteFinished bounds
//     them). Migrating a file of an older schema rewrites every record in
//     that one transaction, which holds the rewritten pages in memory
//     until it commits: about the size of the file.
//     them). The first Open of a file written before the indexes also
//     decodes every job, in the same transaction, to build them.
//   - A List with several filters walks the index of one (array, pipeline,
//     exact name, window, name pattern, label, tenant, state: the first
//     given) and looks the others up per job, so its cost follows that
//     filter's range: a common label combined with a rare tenant reads the
//     label's range. A name pattern whose literal prefix more than 1,024
//     names share, or that selects more than 256, is checked on each job
//     of the range walked instead.
//   - In a write transaction bbolt's cursor can step into pages the
//     transaction emptied (Last never returns when all are; Prev returns
//     nil too early): the index writer goes through keyBefore.
//   - bbolt does not clear the pages it frees: an overwritten value stays in
//     the file (and its snapshots) until the page is reused. Secret env
//     values arrive sealed, so this only matters for the one-time sealing of
//     an older file (SealSecrets), after which CompactFile rewrites it.
//
// A damaged file is refused rather than mapped (fileguard.go): Open reads
// the two meta pages and checks the file's size against the last commit
// before bbolt maps it, and runs bbolt's open and the opening transaction
// with panics and memory faults turned into ErrDamaged. OpenDataDir adds the
// identity file beside the database (datadir.go), so that a lost or emptied
// database is refused (ErrMissing) instead of started empty; Restore puts a
// verified snapshot in place (restore.go).
//
// Subpackages: memstore is an in-memory fake with the same semantics for the
// scheduler's tests, and storetest is the conformance suite both pass.
package store

import "errors"

// Errors returned by Open. Everything else the store returns wraps one of
// job's sentinel errors (ErrInvalid, ErrNotFound, ErrConflict, ErrClosed) or
// is an I/O error.
var (
	// ErrLocked: another process (or another DB in this one) holds the
	// database file open.
	ErrLocked = errors.New("database file is locked by another process")
	// ErrSchema: the file's schema version is newer than this code knows
	// (written by a newer Hodei), or it cannot be read (a damaged file, or
	// not Hodei's). The message says which, the versions, and what to do.
	ErrSchema = errors.New("unsupported database schema")
)
