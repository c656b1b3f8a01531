package store

// Guards around bbolt for a damaged file. bbolt maps the file and trusts
// what it finds: a file cut short faults (SIGBUS) when a page past its end
// is read, and a damaged page panics, sometimes in a goroutine of bbolt's
// own. Before mapping, checkFile reads the two meta pages with ordinary
// reads and checks the file's size against the last commit they describe;
// the open and the first transaction then run with panics and memory
// faults turned into errors (guard).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// bbolt's file format (version 2): every page starts with a 16-byte header
// (id u64, flags u16, count u16, overflow u32); pages 0 and 1 hold a meta
// record after it (magic u32, version u32, page size u32, flags u32, root
// bucket {page u64, sequence u64}, freelist page u64, high-water page id
// u64, txid u64, checksum u64), the checksum being FNV-64a of the fields
// before it. Integers are in the machine's byte order.
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	pageHeaderSize  = 16
	metaSize        = 64
	metaSummed      = 56 // bytes of the meta record the checksum covers
	noFreelist      = ^uint64(0)
	minPageSize     = 1024
	maxPageSizeLog2 = 14 // bbolt looks for the second meta up to 1024<<14
)

// boltMeta is one decoded meta page.
type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64 // high-water mark: pages [0, pgid) are in use
	txid     uint64
}

// FileInfo is what the meta pages of a database file say, read without
// mapping it.
type FileInfo struct {
	Size     int64  // bytes
	PageSize int    // bytes
	Txid     uint64 // the last commit bbolt will use
	Pages    uint64 // the high-water mark of that commit
	// DamagedMeta is the meta page (0 or 1) that failed its checks, or -1.
	// With one damaged, bbolt uses the other one (see DESIGN.md, storage).
	DamagedMeta int
	// FreelistSynced: the last commit wrote the free list into the file
	// (a clean Close does), so opening it reads that list rather than
	// walking every page to rebuild it.
	FreelistSynced bool
}

// ErrDamaged: the database file is damaged (cut short, damaged pages or
// meta pages, or empty). The message names the file and what is wrong.
var ErrDamaged = errors.New("database file is damaged")

// CheckFileLayout reads the meta pages of the database file at path with
// ordinary reads (no mmap) and checks that bbolt can map it safely: at
// least one meta page is valid, and the file holds every page the last
// commit uses. A missing file is an error wrapping fs.ErrNotExist; a
// damaged one wraps ErrDamaged and says the size expected.
func CheckFileLayout(path string) (FileInfo, error) {
	info := FileInfo{DamagedMeta: -1}
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		// Opening a named pipe would block; a device is no database.
		return info, fmt.Errorf("%s: %w: it is not a regular file (%s)", path, ErrDamaged, st.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return info, err // a new file: nothing is damaged
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return info, err
	}
	info.Size = st.Size()
	if info.Size == 0 {
		return info, fmt.Errorf("%s: %w: it is empty (0 bytes)", path, ErrDamaged)
	}
	m0, err0 := readMeta(f, 0)
	var (
		m1   boltMeta
		err1 error = errNoMeta
	)
	// The second meta page is one page in; the page size is in the first,
	// and when that is damaged bbolt tries every size, as here.
	if err0 == nil {
		m1, err1 = readMeta(f, int64(m0.pageSize))
	} else {
		for i := 0; i <= maxPageSizeLog2; i++ {
			pos := int64(minPageSize) << i
			if pos+pageHeaderSize+metaSize > info.Size {
				break
			}
			if m, err := readMeta(f, pos); err == nil && int64(m.pageSize) == pos {
				m1, err1 = m, nil
				break
			}
		}
	}
	var m boltMeta
	switch {
	case err0 != nil && err1 != nil:
		return info, fmt.Errorf("%s: %w: both meta pages are unreadable (page 0: %w; page 1: %w), so the last commit is unknown",
			path, ErrDamaged, err0, err1)
	case err0 != nil:
		m, info.DamagedMeta = m1, 0
	case err1 != nil:
		m, info.DamagedMeta = m0, 1
	case m1.txid > m0.txid:
		m = m1
	default:
		m = m0
	}
	info.PageSize, info.Txid, info.Pages = int(m.pageSize), m.txid, m.pgid
	info.FreelistSynced = m.freelist != noFreelist
	ps := int64(m.pageSize)
	if info.Size < 2*ps {
		return info, fmt.Errorf("%s: %w: it is %d bytes, shorter than its two meta pages (2 × %d bytes)",
			path, ErrDamaged, info.Size, ps)
	}
	if m.pgid < 2 || m.root < 2 || m.root >= m.pgid || (m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.pgid)) {
		return info, fmt.Errorf("%s: %w: its meta page (txid %d) is inconsistent: root page %d, freelist page %d, high-water mark %d",
			path, ErrDamaged, m.txid, m.root, m.freelist, m.pgid)
	}
	if need := int64(m.pgid) * ps; m.pgid > uint64(info.Size/ps) || need > info.Size {
		return info, fmt.Errorf("%s: %w: it is %d bytes but its last commit (txid %d) uses %d pages of %d bytes, %d bytes: the file was cut short",
			path, ErrDamaged, info.Size, m.txid, m.pgid, ps, int64(m.pgid)*ps)
	}
	return info, nil
}

var errNoMeta = errors.New("no valid meta page at any page size")

// readMeta reads and validates the meta page at off.
func readMeta(r io.ReaderAt, off int64) (boltMeta, error) {
	var buf [pageHeaderSize + metaSize]byte
	if _, err := r.ReadAt(buf[:], off); err != nil {
		if errors.Is(err, io.EOF) {
			return boltMeta{}, fmt.Errorf("the file ends at or inside it (offset %d)", off)
		}
		return boltMeta{}, err
	}
	e := binary.NativeEndian
	b := buf[pageHeaderSize:]
	switch {
	case e.Uint32(b[0:]) != boltMagic:
		return boltMeta{}, fmt.Errorf("no bbolt magic number at offset %d", off)
	case e.Uint32(b[4:]) != boltVersion:
		return boltMeta{}, fmt.Errorf("bbolt format version %d at offset %d, want %d", e.Uint32(b[4:]), off, boltVersion)
	}
	h := fnv.New64a()
	h.Write(b[:metaSummed])
	if h.Sum64() != e.Uint64(b[metaSummed:]) {
		return boltMeta{}, fmt.Errorf("checksum mismatch at offset %d", off)
	}
	m := boltMeta{
		pageSize: e.Uint32(b[8:]),
		root:     e.Uint64(b[16:]),
		freelist: e.Uint64(b[32:]),
		pgid:     e.Uint64(b[40:]),
		txid:     e.Uint64(b[48:]),
	}
	if m.pageSize < minPageSize || m.pageSize&(m.pageSize-1) != 0 {
		return boltMeta{}, fmt.Errorf("page size %d at offset %d is not a power of two of at least %d", m.pageSize, off, minPageSize)
	}
	return m, nil
}

// guard runs fn with a panic or a memory fault (a page of the mapped file
// that cannot be read) turned into an error wrapping ErrDamaged that names
// path. It covers fn's goroutine only: bbolt's consistency check runs in
// a goroutine of its own, so it is run after walkTx has read every page
// under a guard.
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: %w: %v", path, ErrDamaged, p)
		}
	}()
	return fn()
}

// openBolt is bolt.Open behind checkFile and guard. A file that does not
// exist is created by bbolt as usual.
func openBolt(path string, o *bolt.Options) (*bolt.DB, FileInfo, error) {
	info, err := CheckFileLayout(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) && !lockedByOther(path) {
		// A file another process has open is reported by bbolt's lock
		// (ErrLocked), not by a meta page read while it was written.
		return nil, info, err
	}
	var bdb *bolt.DB
	err = guard(path, func() error {
		var err error
		bdb, err = bolt.Open(path, 0o600, o)
		return err
	})
	return bdb, info, err
}

// closeGuarded closes a bbolt DB whose file may be damaged.
func closeGuarded(path string, bdb *bolt.DB) error {
	return guard(path, bdb.Close)
}

// walkTx reads every key and value of every bucket in tx, in tx's
// goroutine, so that a damaged page panics (or faults) where guard catches
// it rather than in bbolt's checker goroutine, which would end the process.
func walkTx(tx *bolt.Tx) error {
	var sum byte
	var walk func(b *bolt.Bucket)
	walk = func(b *bolt.Bucket) {
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v == nil {
				if nb := b.Bucket(k); nb != nil {
					walk(nb)
				}
				continue
			}
			for _, x := range v {
				sum ^= x
			}
		}
	}
	err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		walk(b)
		return nil
	})
	walked.Store(uint32(sum)) // the reads must not be optimised away
	return err
}

var walked atomic.Uint32

// preflightLockTimeout is how long PreflightFile waits for a file a
// running server holds.
const preflightLockTimeout = 200 * time.Millisecond

// PreflightFile does what opening path for writing does before the first
// commit, read-only: the layout check (CheckFileLayout), then bbolt's
// rebuild of the free list, which walks every page reachable from the
// root (the store does not keep the free list in the file). That walk runs
// in a goroutine of bbolt's own and panics on damage it finds (keys out of
// order, a page referenced twice, a page past the end): no recover here
// can catch it, so run PreflightFile in a child process and take its crash
// as the answer (`hodei serve` does, at every start).
func PreflightFile(path string) error {
	if _, err := CheckFileLayout(path); err != nil {
		return err
	}
	return guard(path, func() error {
		bdb, err := bolt.Open(path, 0o600, &bolt.Options{
			ReadOnly: true, Timeout: preflightLockTimeout, PreLoadFreelist: true, FreelistType: bolt.FreelistMapType,
		})
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil // held by a server: the open that follows says so
		}
		if err != nil {
			return err
		}
		return bdb.Close()
	})
}
