package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/hodei-jobs/hodei/job"
)

// Keys in the meta bucket for sealed secrets. keyCheckKey holds the check
// value of the key the secret env values are sealed with (never the key);
// secretsSealedKey marks that every job stored before sealing existed has
// been sealed, so that SealSecrets walks the jobs once.
var (
	keyCheckKey      = []byte("secrets_key_check")
	secretsSealedKey = []byte("secrets_sealed")
)

// sealChunk is how many jobs one SealSecrets transaction reads.
const sealChunk = 512

// KeyCheck returns the key check value stored by SetKeyCheck, or nil when
// the file has none (new, or written before secrets were sealed). It is a
// copy: the caller owns it.
func (db *DB) KeyCheck(ctx context.Context) ([]byte, error) {
	return db.metaGet(ctx, keyCheckKey)
}

// SetKeyCheck stores the check value of the key secrets are sealed with,
// durably. Storing the value already stored does nothing; replacing another
// one fails with job.ErrConflict (a key check changes only by hand, with the
// data it protects).
func (db *DB) SetKeyCheck(ctx context.Context, check []byte) error {
	return db.metaBind(ctx, keyCheckKey, check)
}

// metaGet returns a copy of a meta value, or nil.
func (db *DB) metaGet(ctx context.Context, key []byte) ([]byte, error) {
	if err := db.usable(ctx); err != nil {
		return nil, err
	}
	var v []byte
	err := db.view(func(tx *bolt.Tx) error {
		v = bytes.Clone(tx.Bucket(bucketMeta).Get(key))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return v, nil
}

// metaBind stores a meta value once, durably: storing the value already
// stored does nothing, another one fails with job.ErrConflict.
func (db *DB) metaBind(ctx context.Context, key, value []byte) error {
	if len(value) == 0 {
		return job.Invalid(string(key), "must not be empty")
	}
	err := db.write(ctx, len(value), func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		switch old := meta.Get(key); {
		case old == nil:
			if err := meta.Put(key, value); err != nil {
				return abort(fmt.Errorf("put %s: %w", key, err))
			}
		case !bytes.Equal(old, value):
			return fmt.Errorf("the database already holds the %s of another key: %w", key, job.ErrConflict)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store %s: %w", key, err)
	}
	return nil
}

// SealSecrets is the one-time migration of secret env values stored in
// plain text, before sealing existed. Unless the file is marked as done, it
// calls seal with every stored job that has secret env values: seal seals
// them in j.Spec.SecretEnv, in place (j is SealSecrets' own decoded copy),
// and returns how many it changed. A job with changes is written back with
// its version bumped. It works through the commit loop, sealChunk jobs per
// transaction, and marks the file done in the last one; it returns the
// number of values sealed.
//
// Call it after storing the key's check (SetKeyCheck) and before anything
// reads jobs into memory (scheduler.Recover), so that memory never holds a
// plain value. seal must be idempotent (leave values it sealed before as
// they are): a crash part way leaves some jobs sealed, and the next start
// walks them again.
func (db *DB) SealSecrets(ctx context.Context, seal func(j *job.Job) int) (int, error) {
	var (
		after []byte
		total int
	)
	for {
		var (
			n, read int
			last    []byte
		)
		err := db.write(ctx, 0, func(tx *bolt.Tx) error {
			n, read, last = 0, 0, nil
			meta := tx.Bucket(bucketMeta)
			if meta.Get(secretsSealedKey) != nil {
				return nil
			}
			b := tx.Bucket(bucketJobs)
			c := b.Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			var puts []*job.Job
			for ; k != nil && read < sealChunk; k, v = c.Next() {
				read++
				last = bytes.Clone(k)
				j, err := decodeJob(string(k), v)
				if err != nil {
					return err
				}
				if len(j.Spec.SecretEnv) == 0 {
					continue
				}
				if changed := seal(j); changed > 0 {
					n += changed
					puts = append(puts, j)
				}
			}
			// Writes after the walk: a Put under a cursor moves it.
			for _, j := range puts {
				enc, err := encodeJob(j, j.Version+1)
				if err != nil {
					return err
				}
				if err := b.Put([]byte(j.ID), enc); err != nil {
					return abort(fmt.Errorf("put job %s: %w", j.ID, err))
				}
			}
			if read < sealChunk {
				if err := meta.Put(secretsSealedKey, []byte{1}); err != nil {
					return abort(fmt.Errorf("mark secrets sealed: %w", err))
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("seal stored secrets: %w", err)
		}
		total += n
		if read < sealChunk {
			return total, nil
		}
		after = last
	}
}

// CompactFile rewrites the closed database file at path with only its live
// data (bbolt's Compact into a new file, synced and renamed over path).
// bbolt never clears the pages it frees, so a value that was overwritten,
// such as a secret SealSecrets sealed, stays readable in the file, and in
// its snapshots, until CompactFile. It fails with ErrLocked while a process
// holds the file. A crash leaves either the old or the new file at path.
// The old file's blocks are freed, not erased: on the disk itself they last
// until the filesystem reuses them.
func CompactFile(path string) error {
	src, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: DefaultLockTimeout, ReadOnly: true})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("compact %s: %w", path, ErrLocked)
	}
	if err != nil {
		return fmt.Errorf("compact %s: %w", path, err)
	}
	defer src.Close()
	tmp := path + ".compact"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("compact %s: %w", path, err)
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("compact %s: %w", path, err)
	}
	err = bolt.Compact(dst, src, 64<<20)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("compact %s: sync dir: %w", path, err)
		}
	}
	return nil
}
