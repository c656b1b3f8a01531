package store

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// MustOpenLogs opens a Logs in tb.TempDir() and closes its handles in
// tb.Cleanup.
func MustOpenLogs(tb testing.TB) *Logs {
	tb.Helper()
	l, err := OpenLogs(filepath.Join(tb.TempDir(), "logs"))
	require.NoError(tb, err)
	tb.Cleanup(func() { require.NoError(tb, l.CloseAll()) })
	return l
}

// readLog returns the whole log of (id, attempt).
func readLog(t *testing.T, l *Logs, id string, attempt int) string {
	t.Helper()
	f, err := l.Open(id, attempt)
	require.NoError(t, err)
	defer f.Close()
	b, err := io.ReadAll(f)
	require.NoError(t, err)
	return string(b)
}

func TestLogs(t *testing.T) {
	id := storetest.ID(1)
	t.Run("Append", func(t *testing.T) {
		l := MustOpenLogs(t)
		size, err := l.Append(id, 1, 0, []byte("hello "))
		require.NoError(t, err)
		require.Equal(t, int64(6), size)
		size, err = l.Append(id, 1, 6, []byte("world\n"))
		require.NoError(t, err)
		require.Equal(t, int64(12), size)
		require.Equal(t, "hello world\n", readLog(t, l, id, 1))
		got, err := l.Size(id, 1)
		require.NoError(t, err)
		require.Equal(t, int64(12), got)
		require.NoError(t, l.Sync(id, 1))
		require.FileExists(t, filepath.Join(l.dir, id, "1.log"))
	})
	t.Run("DuplicateResend", func(t *testing.T) {
		l := MustOpenLogs(t)
		_, err := l.Append(id, 1, 0, []byte("abcdef"))
		require.NoError(t, err)
		for _, off := range []int64{0, 2} {
			size, err := l.Append(id, 1, off, []byte("abcdef")[off:])
			require.NoError(t, err)
			require.Equal(t, int64(6), size)
		}
		size, err := l.Append(id, 1, 6, nil)
		require.NoError(t, err)
		require.Equal(t, int64(6), size)
		require.Equal(t, "abcdef", readLog(t, l, id, 1))
	})
	t.Run("Overlap", func(t *testing.T) {
		l := MustOpenLogs(t)
		_, err := l.Append(id, 1, 0, []byte("abcdef"))
		require.NoError(t, err)
		size, err := l.Append(id, 1, 4, []byte("efghij"))
		require.NoError(t, err)
		require.Equal(t, int64(10), size)
		require.Equal(t, "abcdefghij", readLog(t, l, id, 1))
	})
	t.Run("ErrConflict/Gap", func(t *testing.T) {
		l := MustOpenLogs(t)
		_, err := l.Append(id, 1, 0, []byte("abc"))
		require.NoError(t, err)
		size, err := l.Append(id, 1, 5, []byte("fgh"))
		require.ErrorIs(t, err, job.ErrConflict)
		require.Equal(t, int64(3), size, "the size tells the sender where to resume")
		require.Equal(t, "abc", readLog(t, l, id, 1))
		size, err = l.Append(storetest.ID(2), 1, 1, []byte("x"))
		require.ErrorIs(t, err, job.ErrConflict)
		require.Zero(t, size)
	})
	t.Run("SizeAfterReopen", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "logs")
		l, err := OpenLogs(dir)
		require.NoError(t, err)
		_, err = l.Append(id, 2, 0, []byte("0123456789"))
		require.NoError(t, err)
		require.NoError(t, l.Sync(id, 2))
		require.NoError(t, l.CloseAll())

		l, err = OpenLogs(dir)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, l.CloseAll()) })
		size, err := l.Size(id, 2)
		require.NoError(t, err)
		require.Equal(t, int64(10), size)
		size, err = l.Append(id, 2, 8, []byte("89ab"))
		require.NoError(t, err)
		require.Equal(t, int64(12), size)
		require.Equal(t, "0123456789ab", readLog(t, l, id, 2))
	})
	t.Run("Missing", func(t *testing.T) {
		l := MustOpenLogs(t)
		size, err := l.Size(id, 1)
		require.NoError(t, err)
		require.Zero(t, size)
		require.NoError(t, l.Sync(id, 1))
		_, err = l.Open(id, 1)
		require.ErrorIs(t, err, job.ErrNotFound)
		attempts, err := l.Attempts(id)
		require.NoError(t, err)
		require.Empty(t, attempts)
		require.NoError(t, l.Remove(id))
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		l := MustOpenLogs(t)
		for _, bad := range []string{"", "../../etc", "..", "01HZ/../../../x", "01hz0000000000000000000001", id + "/"} {
			_, err := l.Append(bad, 1, 0, []byte("x"))
			require.ErrorIs(t, err, job.ErrInvalid, "id %q", bad)
			_, err = l.Size(bad, 1)
			require.ErrorIs(t, err, job.ErrInvalid)
			_, err = l.Open(bad, 1)
			require.ErrorIs(t, err, job.ErrInvalid)
			require.ErrorIs(t, l.Remove(bad), job.ErrInvalid)
			_, err = l.Attempts(bad)
			require.ErrorIs(t, err, job.ErrInvalid)
		}
		for _, attempt := range []int{0, -1} {
			_, err := l.Append(id, attempt, 0, []byte("x"))
			require.ErrorIs(t, err, job.ErrInvalid)
			require.ErrorIs(t, l.Sync(id, attempt), job.ErrInvalid)
		}
		_, err := l.Append(id, 1, -1, []byte("x"))
		require.ErrorIs(t, err, job.ErrInvalid)
		entries, err := os.ReadDir(l.dir)
		require.NoError(t, err)
		require.Empty(t, entries, "nothing was written")
	})
	t.Run("AttemptsAndRemove", func(t *testing.T) {
		l := MustOpenLogs(t)
		for _, a := range []int{3, 1, 10} {
			_, err := l.Append(id, a, 0, []byte("x"))
			require.NoError(t, err)
		}
		_, err := l.Append(storetest.ID(2), 1, 0, []byte("y"))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(l.dir, id, "notes.txt"), nil, 0o600))
		attempts, err := l.Attempts(id)
		require.NoError(t, err)
		require.Equal(t, []int{1, 3, 10}, attempts)

		require.NoError(t, l.Remove(id))
		require.NoDirExists(t, filepath.Join(l.dir, id))
		attempts, err = l.Attempts(id)
		require.NoError(t, err)
		require.Empty(t, attempts)
		require.Equal(t, "y", readLog(t, l, storetest.ID(2), 1))
		// Appending after removal starts a new log.
		size, err := l.Append(id, 1, 0, []byte("z"))
		require.NoError(t, err)
		require.Equal(t, int64(1), size)
	})
	t.Run("HandleCache", func(t *testing.T) {
		l := MustOpenLogs(t)
		l.maxOpen = 4
		for n := 1; n <= 10; n++ {
			for round := range 3 {
				_, err := l.Append(storetest.ID(n), 1, int64(round), []byte{byte('a' + round)})
				require.NoError(t, err)
			}
		}
		l.mu.Lock()
		open := len(l.files)
		l.mu.Unlock()
		require.LessOrEqual(t, open, 4)
		for n := 1; n <= 10; n++ {
			require.Equal(t, "abc", readLog(t, l, storetest.ID(n), 1))
		}
		require.NoError(t, l.Close(storetest.ID(10), 1))
		require.NoError(t, l.Close(storetest.ID(10), 1))
		size, err := l.Append(storetest.ID(10), 1, 3, []byte("d"))
		require.NoError(t, err)
		require.Equal(t, int64(4), size)
	})
	t.Run("Concurrent", func(t *testing.T) {
		// Agents re-send overlapping chunks from several goroutines; every
		// byte lands once, in order.
		l := MustOpenLogs(t)
		l.maxOpen = 2
		const (
			jobs    = 4
			writers = 4
			chunks  = 50
		)
		data := make([]byte, chunks*10)
		for i := range data {
			data[i] = byte('a' + i%26)
		}
		var wg sync.WaitGroup
		for n := 1; n <= jobs; n++ {
			for range writers {
				wg.Go(func() {
					for c := range chunks {
						// Each chunk reaches past the next one's start, up to 5 bytes.
						off := c * 10
						end := min(off+10+c%6, len(data))
						if _, err := l.Append(storetest.ID(n), 1, int64(off), data[off:end]); err != nil {
							t.Errorf("append: %v", err)
							return
						}
					}
				})
			}
		}
		wg.Wait()
		for n := 1; n <= jobs; n++ {
			require.Equal(t, string(data), readLog(t, l, storetest.ID(n), 1), fmt.Sprint("job ", n))
		}
	})
}
