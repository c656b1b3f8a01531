package seal

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/hodei-jobs/hodei/atomicfile"
)

// LoadOrCreate returns the key in the file at path, creating the file (mode
// 0600, KeySize random bytes, synced before it is returned) when it does not
// exist and check is nil. check is the value the database holds from an
// earlier start (Key.Check), or nil when it holds none.
//
// created reports that the file was made now: the caller must then store the
// new key's Check in the database, after this returns (the file is durable
// first, so a crash in between never leaves a check without its key).
//
// Errors, each naming the file: ErrKeyMissing when check is set and the file
// does not exist (a new key could not open what the database holds);
// ErrKeyMismatch when the file is another key than check's; a file that is
// not KeySize bytes, or that group or others may read or write.
func LoadOrCreate(path string, check []byte) (k *Key, created bool, err error) {
	k, err = load(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && check != nil:
		return nil, false, fmt.Errorf("secrets key %s: %w, but the database was sealed with key %s, which the secret env values it holds, if any, need: "+
			"restore that file from the backup taken with the database (a new key could not open them)", path, ErrKeyMissing, idOf(check))
	case errors.Is(err, fs.ErrNotExist):
		k, err = create(path)
		return k, err == nil, err
	case err != nil:
		return nil, false, err
	case check != nil && !k.Verify(check):
		return nil, false, fmt.Errorf("secrets key %s: %w: the file is key %s, the database was sealed with key %s: "+
			"use the secrets.key that belongs to this database", path, ErrKeyMismatch, k.ID(), idOf(check))
	}
	return k, false, nil
}

// load reads the key file at path. A missing file is an error wrapping
// fs.ErrNotExist.
func load(path string) (*Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secrets key %s: mode %04o lets others read or change it; run chmod 600 %s", path, perm, path)
	}
	raw := make([]byte, KeySize+1)
	n, err := io.ReadFull(f, raw)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("secrets key %s: %w", path, err)
	}
	if n != KeySize {
		return nil, fmt.Errorf("secrets key %s: must be exactly %d bytes (it is not a hodei key file, or it was truncated)", path, KeySize)
	}
	k, err := NewKey(raw[:KeySize])
	clear(raw)
	if err != nil {
		return nil, fmt.Errorf("secrets key %s: %w", path, err)
	}
	return k, nil
}

// create writes a new key file at path without ever replacing one
// (atomicfile.Create: another process's key made meanwhile wins).
func create(path string) (*Key, error) {
	raw := GenerateKey()
	defer clear(raw)
	if err := atomicfile.Create(path, raw, 0o600); err != nil {
		return nil, fmt.Errorf("create secrets key %s: %w", path, err)
	}
	return NewKey(raw)
}
