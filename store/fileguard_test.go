package store

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// damageFixture is a closed data dir whose database holds jobs 1–300 from
// one commit, then job 301 alone in the last commit.
type damageFixture struct {
	dir, path string
	metaOff   [2]int64 // offsets of the two meta pages
	newest    int      // the meta page of the last commit
	pages     int64    // the last commit's high-water mark
	pageSize  int64
}

func newDamageFixture(t *testing.T) *damageFixture {
	t.Helper()
	dir := t.TempDir()
	db, err := OpenDataDir(dir, Options{})
	require.NoError(t, err)
	var jobs []*job.Job
	for i := 1; i <= 300; i++ {
		jobs = append(jobs, storetest.NewJob(i))
	}
	require.NoError(t, db.Insert(t.Context(), jobs))
	require.NoError(t, db.Insert(t.Context(), []*job.Job{storetest.NewJob(301)}))
	db.skipFreelistAtClose = true // as a crash leaves it: job 301's is the last commit
	require.NoError(t, db.Close())
	f := &damageFixture{dir: dir, path: filepath.Join(dir, DBFile)}
	info, err := CheckFileLayout(f.path)
	require.NoError(t, err)
	require.Equal(t, -1, info.DamagedMeta)
	f.pageSize, f.pages = int64(info.PageSize), int64(info.Pages)
	f.metaOff = [2]int64{0, f.pageSize}
	fh, err := os.Open(f.path)
	require.NoError(t, err)
	defer fh.Close()
	m0, err := readMeta(fh, 0)
	require.NoError(t, err)
	m1, err := readMeta(fh, f.pageSize)
	require.NoError(t, err)
	if m1.txid > m0.txid {
		f.newest = 1
	}
	require.Greater(t, f.pages, int64(4), "the fixture must span several pages")
	return f
}

// overwrite writes b at off in the fixture's database.
func (f *damageFixture) overwrite(t *testing.T, off int64, b []byte) {
	t.Helper()
	fh, err := os.OpenFile(f.path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = fh.WriteAt(b, off)
	require.NoError(t, err)
	require.NoError(t, fh.Close())
}

// TestDamagedFiles opens damaged data dirs: each case is refused with an
// error that names the file and says what is wrong, or recovers as
// documented (DESIGN.md, storage); none panics, faults, or starts empty.
func TestDamagedFiles(t *testing.T) {
	type want struct {
		err  error    // nil: opens
		text []string // in the error
		jobs []int    // with err nil: jobs present (and 301 absent unless listed)
	}
	all := make([]int, 0, 301)
	for i := 1; i <= 301; i++ {
		all = append(all, i)
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, f *damageFixture)
		want   want
	}{
		{"EmptyWithIdentity", func(t *testing.T, f *damageFixture) {
			require.NoError(t, os.Truncate(f.path, 0))
		}, want{err: ErrMissing, text: []string{"is empty (0 bytes)", IdentityFile, "hodei snapshot restore FILE --data-dir"}}},
		{"MissingWithIdentity", func(t *testing.T, f *damageFixture) {
			require.NoError(t, os.Remove(f.path))
		}, want{err: ErrMissing, text: []string{"is missing", IdentityFile, "hodei snapshot restore"}}},
		{"EmptyWithoutIdentity", func(t *testing.T, f *damageFixture) {
			require.NoError(t, os.Truncate(f.path, 0))
			require.NoError(t, os.Remove(filepath.Join(f.dir, IdentityFile)))
		}, want{err: ErrDamaged, text: []string{"is empty (0 bytes)", "hodei snapshot restore"}}},
		{"CutTo8KiB", func(t *testing.T, f *damageFixture) {
			require.NoError(t, os.Truncate(f.path, 8<<10))
		}, want{err: ErrDamaged, text: []string{"is 8192 bytes", "cut short"}}},
		{"CutTo12KiB", func(t *testing.T, f *damageFixture) {
			require.NoError(t, os.Truncate(f.path, 12<<10))
		}, want{err: ErrDamaged, text: []string{"is 12288 bytes", "cut short"}}},
		{"CutInsideTheSecondMeta", func(t *testing.T, f *damageFixture) {
			require.NoError(t, os.Truncate(f.path, 5000))
		}, want{err: ErrDamaged, text: []string{"5000 bytes", "shorter than its two meta pages"}}},
		{"CutBeforeTheLastPage", func(t *testing.T, f *damageFixture) {
			require.NoError(t, os.Truncate(f.path, (f.pages-1)*f.pageSize))
		}, want{err: ErrDamaged, text: []string{"cut short"}}},
		{"ZeroedPages", func(t *testing.T, f *damageFixture) {
			f.overwrite(t, 2*f.pageSize, make([]byte, (f.pages-2)*f.pageSize))
		}, want{err: ErrDamaged, text: []string{DBFile}}},
		{"RandomPages", func(t *testing.T, f *damageFixture) {
			b := make([]byte, (f.pages-2)*f.pageSize)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			f.overwrite(t, 2*f.pageSize, b)
		}, want{err: ErrDamaged, text: []string{DBFile}}},
		{"NewestMetaDamaged", func(t *testing.T, f *damageFixture) {
			f.overwrite(t, f.metaOff[f.newest]+pageHeaderSize+20, []byte("damage"))
		}, want{jobs: all[:300]}}, // the last commit (job 301) is lost: bbolt uses the one before
		{"OlderMetaDamaged", func(t *testing.T, f *damageFixture) {
			f.overwrite(t, f.metaOff[1-f.newest]+pageHeaderSize+20, []byte("damage"))
		}, want{jobs: all}},
		{"FirstMetaDamaged", func(t *testing.T, f *damageFixture) {
			f.overwrite(t, pageHeaderSize, make([]byte, metaSize)) // page 0's meta zeroed: bbolt reads the page size from page 1
		}, want{jobs: all[:300]}}, // job 301 survives when page 1 was the newest; checked below
		{"BothMetasDamaged", func(t *testing.T, f *damageFixture) {
			f.overwrite(t, pageHeaderSize+20, []byte("damage"))
			f.overwrite(t, f.pageSize+pageHeaderSize+20, []byte("damage"))
		}, want{err: ErrDamaged, text: []string{"both meta pages are unreadable", "checksum mismatch"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newDamageFixture(t)
			tc.damage(t, f)
			db, err := OpenDataDir(f.dir, Options{})
			if tc.want.err != nil {
				require.ErrorIs(t, err, tc.want.err)
				require.Nil(t, db)
				require.Contains(t, err.Error(), f.path, "the error names the file")
				for _, s := range tc.want.text {
					require.Contains(t, err.Error(), s)
				}
				t.Log(err)
				if tc.want.err == ErrDamaged && !strings.Contains(tc.name, "Empty") {
					// The damaged file is never replaced or emptied.
					st, serr := os.Stat(f.path)
					require.NoError(t, serr)
					require.NotZero(t, st.Size())
				}
				return
			}
			require.NoError(t, err)
			defer db.Close()
			require.NoError(t, db.Check())
			for _, n := range tc.want.jobs {
				_, err := db.Get(t.Context(), storetest.NewJob(n).ID)
				require.NoError(t, err, "job %d", n)
			}
			_, err = db.Get(t.Context(), storetest.NewJob(301).ID)
			wantLast := len(tc.want.jobs) == 301 || (tc.name == "FirstMetaDamaged" && f.newest == 1)
			if wantLast {
				require.NoError(t, err, "the last commit survives")
			} else {
				require.ErrorIs(t, err, job.ErrNotFound, "bbolt fell back to the commit before the last")
			}
		})
	}
}

// stripSchema deletes the meta bucket of a closed database file.
func stripSchema(path string) error {
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	err = bdb.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketMeta) })
	return errors.Join(err, bdb.Close())
}

func TestCheckFileLayoutLocked(t *testing.T) {
	// A file another process (here another DB) holds is reported as
	// locked, never as damaged from a meta page read mid-write.
	dir := t.TempDir()
	db, err := OpenDataDir(dir, Options{})
	require.NoError(t, err)
	defer db.Close()
	_, err = Open(filepath.Join(dir, DBFile), Options{LockTimeout: 10 * time.Millisecond})
	require.ErrorIs(t, err, ErrLocked)
}

func TestOpenDataDir(t *testing.T) {
	t.Run("NewThenReopen", func(t *testing.T) {
		dir := t.TempDir()
		var logged bytes.Buffer
		db, err := OpenDataDir(dir, Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
		require.NoError(t, err)
		// A new file is no damaged one.
		require.NotContains(t, logged.String(), "level=WARN")
		id := db.Identity()
		require.NoError(t, db.Close())
		// A clean close leaves the free list in the file: the next open
		// reads it rather than walking every page.
		layout, err := CheckFileLayout(filepath.Join(dir, DBFile))
		require.NoError(t, err)
		require.True(t, layout.FreelistSynced)
		got, err := ReadIdentityFile(dir)
		require.NoError(t, err)
		require.Equal(t, id.ClusterID, got.ClusterID)
		require.True(t, id.Created.Equal(got.Created))
		require.Equal(t, uint64(SchemaVersion), got.Schema)
		require.Equal(t, DBFile, got.Database)
		db, err = OpenDataDir(dir, Options{})
		require.NoError(t, err)
		require.Equal(t, id.ClusterID, db.Identity().ClusterID)
		require.NoError(t, db.Close())
	})
	t.Run("AdoptsAnOlderDataDir", func(t *testing.T) {
		dir := t.TempDir()
		db := MustOpenPath(t, filepath.Join(dir, DBFile), Options{}) // no identity file, as before them
		id := db.Identity()
		require.NoError(t, db.Close())
		_, err := ReadIdentityFile(dir)
		require.ErrorIs(t, err, os.ErrNotExist)
		db, err = OpenDataDir(dir, Options{})
		require.NoError(t, err)
		require.NoError(t, db.Close())
		got, err := ReadIdentityFile(dir)
		require.NoError(t, err)
		require.Equal(t, id.ClusterID, got.ClusterID)
	})
	t.Run("OtherClustersDatabase", func(t *testing.T) {
		a, b := t.TempDir(), t.TempDir()
		for _, dir := range []string{a, b} {
			db, err := OpenDataDir(dir, Options{})
			require.NoError(t, err)
			require.NoError(t, db.Close())
		}
		require.NoError(t, os.Rename(filepath.Join(b, DBFile), filepath.Join(a, DBFile)))
		_, err := OpenDataDir(a, Options{})
		require.ErrorIs(t, err, job.ErrConflict)
		require.ErrorContains(t, err, "hodei snapshot restore")
		require.NotContains(t, err.Error(), job.ErrConflict.Error(), "the sentinel's word is not printed")
	})
	t.Run("BadIdentityFile", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, IdentityFile), []byte("{"), 0o600))
		_, err := OpenDataDir(dir, Options{})
		require.ErrorContains(t, err, IdentityFile)
	})
}

func TestRestore(t *testing.T) {
	src := t.TempDir()
	db, err := OpenDataDir(src, Options{})
	require.NoError(t, err)
	require.NoError(t, db.Insert(t.Context(), []*job.Job{storetest.NewJob(1), storetest.NewJob(2)}))
	snap := filepath.Join(t.TempDir(), "snap.db")
	fh, err := os.Create(snap)
	require.NoError(t, err)
	_, err = db.Snapshot(context.Background(), fh)
	require.NoError(t, err)
	require.NoError(t, fh.Close())
	id := db.Identity()

	t.Run("RefusedWhileOpen", func(t *testing.T) {
		_, err := Restore(snap, src, time.Now())
		require.ErrorIs(t, err, ErrLocked)
	})
	require.NoError(t, db.Close())

	t.Run("IntoTheDataDir", func(t *testing.T) {
		// Job 3 is written after the snapshot: the restore goes back.
		db, err := OpenDataDir(src, Options{})
		require.NoError(t, err)
		require.NoError(t, db.Insert(t.Context(), []*job.Job{storetest.NewJob(3)}))
		require.NoError(t, db.Close())
		now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
		r, err := Restore(snap, src, now)
		require.NoError(t, err)
		require.Equal(t, id.ClusterID, r.Snapshot.Identity.ClusterID)
		require.Equal(t, 2, r.Snapshot.Jobs)
		require.Equal(t, filepath.Join(src, DBFile+".before-restore-20260301T100000Z"), r.KeptAside)
		require.NoError(t, CheckFile(r.KeptAside))
		db, err = OpenDataDir(src, Options{})
		require.NoError(t, err)
		defer db.Close()
		storetest.MustGet(t, db, storetest.NewJob(2).ID)
		_, err = db.Get(t.Context(), storetest.NewJob(3).ID)
		require.ErrorIs(t, err, job.ErrNotFound)
	})
	t.Run("IntoANewDir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "new")
		r, err := Restore(snap, dir, time.Now())
		require.NoError(t, err)
		require.Empty(t, r.KeptAside)
		got, err := ReadIdentityFile(dir)
		require.NoError(t, err)
		require.Equal(t, id.ClusterID, got.ClusterID)
		db, err := OpenDataDir(dir, Options{})
		require.NoError(t, err)
		storetest.MustGet(t, db, storetest.NewJob(1).ID)
		require.NoError(t, db.Close())
	})
	t.Run("DamagedSnapshotChangesNothing", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.db")
		b, err := os.ReadFile(snap)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(bad, b[:12<<10], 0o600))
		dir := t.TempDir()
		_, err = Restore(bad, dir, time.Now())
		require.ErrorIs(t, err, ErrDamaged)
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Empty(t, entries)
	})
	t.Run("NotAHodeiDatabase", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other.db")
		o, err := Open(other, Options{})
		require.NoError(t, err)
		require.NoError(t, o.Close())
		// Strip the meta bucket's schema: a bbolt file, not hodei's.
		require.NoError(t, stripSchema(other))
		_, err = InspectSnapshot(other)
		require.ErrorIs(t, err, ErrSchema)
	})
}

// TestInspectSnapshotNamesTheFileOnce: snapshot verify and restore print
// InspectSnapshot's error; it names the damaged file once, not
// "FILE: FILE: database file is damaged".
func TestInspectSnapshotNamesTheFileOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, f *damageFixture)
	}{
		{"CutTo12KiB", func(t *testing.T, f *damageFixture) { require.NoError(t, os.Truncate(f.path, 12<<10)) }},
		{"ZeroedPages", func(t *testing.T, f *damageFixture) {
			f.overwrite(t, 2*f.pageSize, make([]byte, (f.pages-2)*f.pageSize))
		}},
		{"RandomPage", func(t *testing.T, f *damageFixture) {
			b := make([]byte, f.pageSize)
			r := rand.New(rand.NewPCG(3, 4))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			f.overwrite(t, (f.pages-1)*f.pageSize, b)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newDamageFixture(t)
			tc.damage(t, f)
			_, err := InspectSnapshot(f.path)
			require.ErrorIs(t, err, ErrDamaged)
			require.Equal(t, 1, strings.Count(err.Error(), f.path), "the file is named once: %v", err)
		})
	}
}

// TestNotRegularFiles: a database or identity file that is a named pipe or
// a device is refused, naming it, rather than read: reading a pipe blocks
// for ever, and /dev/zero fills memory.
func TestNotRegularFiles(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		make       func(path string) error
	}{
		{"DatabasePipe", DBFile, func(p string) error { return syscall.Mkfifo(p, 0o600) }},
		{"IdentityPipe", IdentityFile, func(p string) error { return syscall.Mkfifo(p, 0o600) }},
		{"IdentityDevZero", IdentityFile, func(p string) error { return os.Symlink("/dev/zero", p) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newDamageFixture(t)
			path := filepath.Join(f.dir, tc.file)
			require.NoError(t, os.Remove(path))
			require.NoError(t, tc.make(path))
			done := make(chan error, 1)
			go func() {
				db, err := OpenDataDir(f.dir, Options{})
				if err == nil {
					db.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				require.Error(t, err)
				require.Contains(t, err.Error(), path)
				require.Contains(t, err.Error(), "not a regular file")
			case <-time.After(30 * time.Second):
				t.Fatal("the open blocked on it")
			}
		})
	}
}
