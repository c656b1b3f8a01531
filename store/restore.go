package store

// Offline restore of a snapshot into a data dir (hodei snapshot restore).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// SnapshotInfo describes a snapshot file that InspectSnapshot verified.
type SnapshotInfo struct {
	Path string `json:"path"`
	Size int64  `json:"bytes"`
	Txid uint64 `json:"txid"` // the commit it holds
	// Identity is the cluster the snapshot belongs to; HasIdentity is false
	// for a snapshot taken before identities existed (Identity then holds
	// only the schema).
	Identity    Identity `json:"identity"`
	HasIdentity bool     `json:"has_identity"`
	Jobs        int      `json:"jobs"` // records in the jobs bucket (array tasks not yet run are not counted)
	Tenants     int      `json:"tenants"`
	Pipelines   int      `json:"pipelines"`
	Tokens      int      `json:"tokens"`
	// What the snapshot's records depend on, besides the file: the secrets
	// key its secret env values are sealed with, the token signing key, the
	// cluster CA. The server refuses to start without the same files.
	NeedsSecretsKey bool `json:"needs_secrets_key"`
	NeedsTokenKey   bool `json:"needs_token_key"`
	NeedsCA         bool `json:"needs_ca"`
	// The fingerprints of those files the snapshot records, to compare
	// with the files of the data dir it is restored into.
	SecretsKeyCheck []byte `json:"-"`
	TokenKeyCheck   []byte `json:"-"`
	CACheck         []byte `json:"-"`
}

// InspectSnapshot verifies the database file at path without changing it:
// its layout (CheckFileLayout, both meta pages sound), bbolt's consistency
// check and the store's (Check), and that it is a hodei database of a
// schema this code can open. It opens the file read-only and waits at most
// DefaultLockTimeout for a writer that holds it. Errors name the file and
// wrap ErrDamaged, ErrSchema or ErrLocked.
func InspectSnapshot(path string) (SnapshotInfo, error) {
	layout, err := CheckFileLayout(path)
	if err != nil {
		return SnapshotInfo{}, err
	}
	if layout.DamagedMeta >= 0 {
		return SnapshotInfo{}, fmt.Errorf("%s: %w: meta page %d is damaged", path, ErrDamaged, layout.DamagedMeta)
	}
	info := SnapshotInfo{Path: path, Size: layout.Size, Txid: layout.Txid}
	bdb, err := openReadOnly(path)
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return SnapshotInfo{}, fmt.Errorf("%s: %w (a server has it open)", path, ErrLocked)
		}
		return SnapshotInfo{}, namingPath(path, err)
	}
	err = guard(path, func() error {
		return bdb.View(func(tx *bolt.Tx) error {
			if err := checkTx(tx); err != nil {
				return fmt.Errorf("%s: %w: %w", path, ErrDamaged, err)
			}
			return inspectTx(tx, &info)
		})
	})
	if cerr := closeGuarded(path, bdb); err == nil {
		err = cerr
	}
	if err != nil {
		return SnapshotInfo{}, namingPath(path, err)
	}
	return info, nil
}

// namingPath returns err naming the file at path once: an ErrDamaged
// error (guard, checkTx, CheckFileLayout) names it already.
func namingPath(path string, err error) error {
	if errors.Is(err, ErrDamaged) {
		return err
	}
	return fmt.Errorf("%s: %w", path, err)
}

// inspectTx checks that tx is a hodei database this code can open and
// fills info from it.
func inspectTx(tx *bolt.Tx, info *SnapshotInfo) error {
	meta := tx.Bucket(bucketMeta)
	var v []byte
	if meta != nil {
		v = meta.Get(schemaKey)
	}
	if len(v) != 8 {
		return fmt.Errorf("%w: no schema version in a meta bucket: not a hodei database", ErrSchema)
	}
	schema := binary.BigEndian.Uint64(v)
	if schema > SchemaVersion {
		return fmt.Errorf("%w: schema version %d, and this hodei knows up to %d: restore it with a newer hodei",
			ErrSchema, schema, SchemaVersion)
	}
	info.Identity, info.HasIdentity = readIdentity(tx)
	info.Identity.Schema = schema
	info.Identity.Database = DBFile
	count := func(name []byte) int {
		if b := tx.Bucket(name); b != nil {
			return b.Stats().KeyN
		}
		return 0
	}
	info.Jobs, info.Tenants, info.Pipelines, info.Tokens = count(bucketJobs), count(bucketTenants), count(bucketPipelines), count(bucketTokens)
	info.SecretsKeyCheck = bytes.Clone(meta.Get(keyCheckKey))
	info.TokenKeyCheck = bytes.Clone(meta.Get(tokenKeyCheckKey))
	info.CACheck = bytes.Clone(meta.Get(caCheckKey))
	info.NeedsSecretsKey = info.SecretsKeyCheck != nil
	info.NeedsTokenKey = info.TokenKeyCheck != nil
	info.NeedsCA = info.CACheck != nil
	return nil
}

// Restored is what Restore did.
type Restored struct {
	Snapshot SnapshotInfo
	Database string // the database path it wrote
	// KeptAside is where the database it replaced now is, or "" when the
	// data dir held none.
	KeptAside string
}

// Restore puts the snapshot at snapshot in place as DIR/hodei.db, for a
// server that is stopped. It verifies the snapshot first (InspectSnapshot)
// and changes nothing when that fails; it refuses with ErrLocked while a
// process holds DIR/hodei.db. It copies the snapshot to a synced temporary
// file in DIR, renames the database there to hodei.db.before-restore-TIME
// (now, UTC), renames the copy to hodei.db, syncs the directory, and
// writes DIR/hodei.identity from the snapshot's identity (or removes it
// for a snapshot without one: the server then writes it at its start).
// The other files of the data dir (the key files, logs/) are left as they
// are.
func Restore(snapshot, dir string, now time.Time) (Restored, error) {
	info, err := InspectSnapshot(snapshot)
	if err != nil {
		return Restored{}, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return Restored{}, fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dir, DBFile)
	out := Restored{Snapshot: info, Database: path}
	if st, err := os.Stat(path); err == nil {
		if sst, err := os.Stat(snapshot); err == nil && os.SameFile(st, sst) {
			return Restored{}, fmt.Errorf("%s is the data dir's database itself: restore a snapshot saved elsewhere", snapshot)
		}
		lock, err := lockFile(path)
		if err != nil {
			return Restored{}, err
		}
		defer lock.Close()
		out.KeptAside = asideName(path, now)
	} else if !errors.Is(err, os.ErrNotExist) {
		return Restored{}, err
	}
	tmp, err := copyToTemp(snapshot, dir)
	if err != nil {
		return Restored{}, err
	}
	defer os.Remove(tmp) // after the rename, a name that no longer exists
	if out.KeptAside != "" {
		if err := os.Rename(path, out.KeptAside); err != nil {
			return Restored{}, fmt.Errorf("keep the old database aside: %w", err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return Restored{}, fmt.Errorf("put the snapshot in place: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return Restored{}, fmt.Errorf("sync %s: %w", dir, err)
	}
	if info.HasIdentity {
		err = WriteIdentityFile(dir, info.Identity)
	} else if err = os.Remove(filepath.Join(dir, IdentityFile)); errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if err != nil {
		return Restored{}, fmt.Errorf("the snapshot is in place as %s, but: %w", path, err)
	}
	return out, nil
}

// asideName is the name the database at path is kept under when a restore
// replaces it: path.before-restore-TIME, with .N added when taken.
func asideName(path string, now time.Time) string {
	base := path + ".before-restore-" + now.UTC().Format("20060102T150405Z")
	name := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(name); errors.Is(err, os.ErrNotExist) {
			return name
		}
		name = fmt.Sprintf("%s.%d", base, i)
	}
}

// copyToTemp copies the file at from to a new, synced file (0600) in dir
// and returns its name.
func copyToTemp(from, dir string) (name string, err error) {
	src, err := os.Open(from)
	if err != nil {
		return "", err
	}
	defer src.Close()
	f, err := os.CreateTemp(dir, "."+DBFile+".restore-*")
	if err != nil {
		return "", fmt.Errorf("copy the snapshot: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	_, err = io.Copy(f, src)
	if err = errors.Join(err, f.Chmod(0o600), f.Sync(), f.Close()); err != nil {
		return "", fmt.Errorf("copy the snapshot into %s: %w", dir, err)
	}
	return f.Name(), nil
}
