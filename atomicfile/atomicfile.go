// Package atomicfile writes small files (keys, certificates, tokens,
// logins) so that a crash leaves either the old file or the new one, never
// part of one, with the mode set before any byte is written.
package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
)

// Write writes data to path through a temporary file in the same
// directory (created 0700 when missing), with mode, synced and renamed into
// place; the directory is synced after, so the new name is durable too.
func Write(path string, data []byte, mode os.FileMode) error {
	return place(path, data, mode, os.Rename)
}

// Create is Write for a file that must never be replaced (a key made on
// first start): it fails with an error wrapping fs.ErrExist when path
// exists, even when another process made it meanwhile.
func Create(path string, data []byte, mode os.FileMode) error {
	return place(path, data, mode, os.Link)
}

// place writes data to a synced temporary file beside path and puts it in
// place with put (rename or link).
func place(path string, data []byte, mode os.FileMode, put func(oldpath, newpath string) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a link, the temporary name only
	_, err = f.Write(data)
	if err := errors.Join(f.Chmod(mode), err, f.Sync(), f.Close()); err != nil {
		return err
	}
	if err := put(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
