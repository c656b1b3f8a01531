package store

// The data dir's identity file. A database cut to 0 bytes or deleted
// looks to bbolt like a new one; the identity file beside it remembers that
// there was one, so that the server refuses to start empty.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/hodei-jobs/hodei/atomicfile"
	"github.com/hodei-jobs/hodei/job"
)

// Names of the files in a server's data dir that the store owns.
const (
	DBFile       = "hodei.db"
	IdentityFile = "hodei.identity"
)

// Identity says which cluster a database belongs to. The database keeps it
// in its meta bucket (so snapshots carry it), and the server writes it to
// DATA-DIR/hodei.identity as JSON, which outlives the loss of the database.
type Identity struct {
	ClusterID string    `json:"cluster_id"` // a ULID made on the first start
	Created   time.Time `json:"created"`    // when the cluster id was made
	Schema    uint64    `json:"schema"`     // the database's schema version
	Database  string    `json:"database"`   // the database's file name in the data dir
}

var (
	clusterIDKey = []byte("cluster_id")
	createdKey   = []byte("created")
)

// ensureIdentity reads the file's cluster id and creation time from meta,
// making them (at now) when missing: a new file, or one written before
// they existed.
func ensureIdentity(tx *bolt.Tx, now time.Time) (Identity, error) {
	meta := tx.Bucket(bucketMeta)
	id, ok := readIdentity(tx)
	if ok {
		return id, nil
	}
	id = Identity{
		ClusterID: ulid.MustNew(ulid.Timestamp(now), ulid.DefaultEntropy()).String(),
		Created:   now.UTC().Truncate(time.Second),
		Schema:    SchemaVersion,
		Database:  DBFile,
	}
	created := binary.BigEndian.AppendUint64(nil, uint64(id.Created.Unix()))
	if err := meta.Put(clusterIDKey, []byte(id.ClusterID)); err != nil {
		return Identity{}, fmt.Errorf("put cluster id: %w", err)
	}
	if err := meta.Put(createdKey, created); err != nil {
		return Identity{}, fmt.Errorf("put created: %w", err)
	}
	return id, nil
}

// readIdentity reads the identity a file keeps in its meta bucket; false
// when it has none (a file from before identities).
func readIdentity(tx *bolt.Tx) (Identity, bool) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return Identity{}, false
	}
	cid, created := meta.Get(clusterIDKey), meta.Get(createdKey)
	if len(cid) == 0 || len(created) != 8 {
		return Identity{}, false
	}
	id := Identity{
		ClusterID: string(cid),
		Created:   time.Unix(int64(binary.BigEndian.Uint64(created)), 0).UTC(),
		Database:  DBFile,
	}
	if v := meta.Get(schemaKey); len(v) == 8 {
		id.Schema = binary.BigEndian.Uint64(v)
	}
	return id, true
}

// Identity returns the database's cluster id and creation time, with this
// code's schema version. Safe for concurrent use.
func (db *DB) Identity() Identity { return db.identity }

// ReadIdentityFile reads DIR/hodei.identity. A missing file is an error
// wrapping fs.ErrNotExist; an unreadable one names the file.
func ReadIdentityFile(dir string) (Identity, error) {
	path := filepath.Join(dir, IdentityFile)
	b, err := readSmallFile(path, maxIdentityFile)
	if err != nil {
		return Identity{}, err
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return Identity{}, fmt.Errorf("%s: not an identity file (%w): restore it from a backup, or move it aside to have it written again from hodei.db", path, err)
	}
	if id.ClusterID == "" {
		return Identity{}, fmt.Errorf("%s: no cluster_id: restore it from a backup, or move it aside to have it written again from hodei.db", path)
	}
	if id.Database == "" {
		id.Database = DBFile
	}
	return id, nil
}

// maxIdentityFile bounds what ReadIdentityFile reads: the file is a few
// hundred bytes.
const maxIdentityFile = 64 << 10

// readSmallFile reads the regular file at path, of at most max bytes: a
// named pipe, a device or a huge file is an error naming it, not a read
// that blocks or fills memory.
func readSmallFile(path string, max int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s): restore it from a backup, or move it aside to have it written again from hodei.db", path, st.Mode().Type())
	}
	if st.Size() > max {
		return nil, fmt.Errorf("%s: %d bytes, more than an identity file's %d: restore it from a backup, or move it aside to have it written again from hodei.db", path, st.Size(), max)
	}
	return os.ReadFile(path)
}

// WriteIdentityFile writes id to DIR/hodei.identity, all or nothing.
func WriteIdentityFile(dir string, id Identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, IdentityFile)
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ErrMissing: the data dir's identity file says it held a database, and
// the database is missing or empty.
var ErrMissing = errors.New("database is gone")

// OpenDataDir opens DIR/hodei.db as Open does, guarded by the identity file
// DIR/hodei.identity:
//   - no identity file and no database: a new cluster; both are made.
//   - an identity file and a missing or empty database: refused with
//     ErrMissing, naming both files and the restore command, never
//     started empty.
//   - an empty database and no identity file: refused with ErrDamaged (bbolt
//     writes a new file's first pages before it returns, so an empty file
//     is damage, or a first start that never finished).
//   - a database and no identity file (made before identity files): the
//     file is written from the database and logged (adopted).
//   - both, of different clusters: refused; hodei snapshot restore writes
//     the identity file that goes with the database it puts in place.
func OpenDataDir(dir string, opts Options) (*DB, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	path := filepath.Join(dir, DBFile)
	idPath := filepath.Join(dir, IdentityFile)
	restore := fmt.Sprintf("hodei snapshot restore FILE --data-dir %s", dir)
	id, err := ReadIdentityFile(dir)
	hasID := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	st, err := os.Stat(path)
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open store: %w", err)
	case err == nil && !st.Mode().IsRegular():
		return nil, fmt.Errorf("%s: %w: it is not a regular file (%s); restore the last snapshot with: %s",
			path, ErrDamaged, st.Mode().Type(), restore)
	case hasID && (err != nil || st.Size() == 0):
		what := "is missing"
		if err == nil {
			what = "is empty (0 bytes)"
		}
		return nil, fmt.Errorf("%s %s, but %s says this data dir holds the database of cluster %s (since %s): %w; "+
			"refusing to start with an empty one. Restore the last snapshot with: %s "+
			"(or, to start a new cluster here, move both files aside)",
			path, what, idPath, id.ClusterID, id.Created.Format(time.RFC3339), ErrMissing, restore)
	case err == nil && st.Size() == 0:
		return nil, fmt.Errorf("%s is empty (0 bytes): %w; refusing to start with an empty database. "+
			"Restore the last snapshot with: %s; if this data dir never held jobs (its first start was interrupted), delete the file",
			path, ErrDamaged, restore)
	}
	existed := err == nil
	db, err := Open(path, opts)
	if err != nil {
		if errors.Is(err, ErrDamaged) {
			return nil, fmt.Errorf("%w; restore the last snapshot with: %s (which keeps the damaged file aside)", err, restore)
		}
		return nil, err
	}
	got := db.Identity()
	switch {
	case hasID && id.ClusterID != got.ClusterID:
		db.Close()
		return nil, job.Quietly(job.ErrConflict, "%s is the database of cluster %s, but %s says this data dir holds cluster %s: "+
			"put a database in place with %s, which also writes the identity file",
			path, got.ClusterID, idPath, id.ClusterID, restore)
	case hasID && id.Schema == got.Schema && id.Created.Equal(got.Created) && id.Database == got.Database:
		return db, nil
	}
	if err := WriteIdentityFile(dir, got); err != nil {
		db.Close()
		return nil, err
	}
	switch {
	case hasID: // the schema changed (a migration)
	case existed:
		log.Info("adopted a database from before identity files: wrote its identity file",
			"path", idPath, "cluster_id", got.ClusterID)
	default:
		log.Info("new cluster", "cluster_id", got.ClusterID, "identity", idPath)
	}
	return db, nil
}

// lockedByOther reports whether another open file description (another
// process, or a bbolt DB in this one) holds a writer's lock on the file at
// path, as bbolt takes it.
func lockedByOther(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// lockFile takes bbolt's writer lock on the file at path without waiting;
// it fails with ErrLocked while a server (or anything) has the file open.
// The returned file holds the lock until closed.
func lockFile(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (is hodei serve running on this data dir? stop it first)", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}
