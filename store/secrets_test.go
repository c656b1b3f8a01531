package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/storetest"
)

func TestKeyCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hodei.db")
	db := MustOpenPath(t, path, Options{})
	check, err := db.KeyCheck(t.Context())
	require.NoError(t, err)
	require.Nil(t, check, "a new file holds no key check")

	require.NoError(t, db.SetKeyCheck(t.Context(), []byte("check-1")))
	require.NoError(t, db.SetKeyCheck(t.Context(), []byte("check-1")), "the same check again")
	require.ErrorIs(t, db.SetKeyCheck(t.Context(), []byte("check-2")), job.ErrConflict)
	require.ErrorIs(t, db.SetKeyCheck(t.Context(), nil), job.ErrInvalid)
	require.NoError(t, db.Close())

	db = MustOpenPath(t, path, Options{})
	check, err = db.KeyCheck(t.Context())
	require.NoError(t, err)
	require.Equal(t, []byte("check-1"), check, "the check survives a restart")
}

// fakeSeal marks values as sealed by a prefix that names the job and key,
// leaving values it sealed before alone, and counts its calls.
type fakeSeal struct{ calls int }

func (f *fakeSeal) seal(j *job.Job) int {
	f.calls++
	n := 0
	for k, v := range j.Spec.SecretEnv {
		if !strings.HasPrefix(v, "sealed("+j.ID) {
			j.Spec.SecretEnv[k] = fmt.Sprintf("sealed(%s,%s):%x", j.ID, k, v)
			n++
		}
	}
	return n
}

func TestSealSecrets(t *testing.T) {
	const total = 2*sealChunk + 10 // three transactions
	plain := func(n int) string { return fmt.Sprintf("plain-secret-%05d", n) }
	setup := func(t *testing.T) (string, *DB, []*job.Job) {
		path := filepath.Join(t.TempDir(), "hodei.db")
		db := MustOpenPath(t, path, Options{NoSync: true})
		var jobs []*job.Job
		for n := 1; n <= total; n++ {
			j := storetest.NewJob(n)
			if n%3 != 0 { // every third job has no secrets
				j.Spec.SecretEnv = map[string]string{"TOKEN": plain(n), "OTHER": plain(n) + "-b"}
			}
			jobs = append(jobs, j)
		}
		require.NoError(t, db.Insert(t.Context(), jobs))
		return path, db, jobs
	}
	t.Run("OK", func(t *testing.T) {
		path, db, jobs := setup(t)
		var f fakeSeal
		n, err := db.SealSecrets(t.Context(), f.seal)
		require.NoError(t, err)
		withSecrets := total - total/3
		require.Equal(t, 2*withSecrets, n)
		require.Equal(t, withSecrets, f.calls, "seal sees only jobs with secrets")
		for _, want := range jobs {
			got, err := db.Get(t.Context(), want.ID)
			require.NoError(t, err)
			if len(want.Spec.SecretEnv) == 0 {
				require.Equal(t, uint64(1), got.Version, "a job without secrets is not rewritten")
				continue
			}
			require.Equal(t, uint64(2), got.Version, "a rewrite bumps the version")
			f.seal(want)
			require.Equal(t, want.Spec.SecretEnv, got.Spec.SecretEnv)
		}
		require.NoError(t, db.Close())
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		require.True(t, bytes.Contains(raw, []byte("plain-secret-")), "bbolt leaves freed pages as they were (else CompactFile is not needed)")
		require.NoError(t, CompactFile(path))
		raw, err = os.ReadFile(path)
		require.NoError(t, err)
		require.False(t, bytes.Contains(raw, []byte("plain-secret-")), "a plain value is left in the compacted file")
		db = MustOpenPath(t, path, Options{}) // checks the compacted file in Cleanup
		got, err := db.Get(t.Context(), jobs[0].ID)
		require.NoError(t, err)
		require.Equal(t, jobs[0].Spec.SecretEnv, got.Spec.SecretEnv, "the compacted file holds the sealed jobs")
	})
	t.Run("Once", func(t *testing.T) {
		_, db, _ := setup(t)
		var f fakeSeal
		_, err := db.SealSecrets(t.Context(), f.seal)
		require.NoError(t, err)
		f.calls = 0
		n, err := db.SealSecrets(t.Context(), f.seal)
		require.NoError(t, err)
		require.Zero(t, n)
		require.Zero(t, f.calls, "a file marked done is not walked again")
	})
	t.Run("ResumesAfterCrash", func(t *testing.T) {
		// A crash after the first chunk leaves the rest plain and no mark:
		// the next run seals the rest and leaves the first chunk alone.
		_, db, jobs := setup(t)
		first := jobs[sealChunk-1]
		sealedFirst := make(map[string]map[string]string)
		var f fakeSeal
		require.NoError(t, db.bolt.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketJobs)
			for _, j := range jobs[:sealChunk] {
				if len(j.Spec.SecretEnv) == 0 {
					continue
				}
				c := j.Clone()
				f.seal(c)
				sealedFirst[c.ID] = c.Spec.SecretEnv
				enc, err := encodeJob(c, 2)
				if err != nil {
					return err
				}
				if err := b.Put([]byte(c.ID), enc); err != nil {
					return err
				}
			}
			return nil
		}))
		n, err := db.SealSecrets(t.Context(), f.seal)
		require.NoError(t, err)
		rest := 0
		for _, j := range jobs[sealChunk:] {
			rest += len(j.Spec.SecretEnv)
		}
		require.Equal(t, rest, n, "only the values left plain are sealed")
		got, err := db.Get(t.Context(), first.ID)
		require.NoError(t, err)
		require.Equal(t, sealedFirst[first.ID], got.Spec.SecretEnv)
		require.Equal(t, uint64(2), got.Version, "a job sealed before is not rewritten")
	})
	t.Run("Empty", func(t *testing.T) {
		db := MustOpen(t)
		n, err := db.SealSecrets(t.Context(), func(*job.Job) int { t.Fatal("called on an empty store"); return 0 })
		require.NoError(t, err)
		require.Zero(t, n)
	})
}
