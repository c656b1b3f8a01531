package store

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/storetest"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// TestPostingsModel applies random batches of adds and removals, of a few
// values with ids of several lengths, to a chunked index and to a plain set,
// and checks after each batch that the chunks are well formed and hold
// exactly the set, that every walk from any id yields the set's ids after
// it in order, and that membership agrees.
func TestPostingsModel(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			bdb, err := bolt.Open(filepath.Join(t.TempDir(), "p.db"), 0o600, &bolt.Options{NoSync: true})
			require.NoError(t, err)
			defer bdb.Close()
			require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
				_, err := tx.CreateBucket(indexBuckets[indexTenant])
				return err
			}))
			values := []string{"a", "ab", "b", ""}
			// Ids of varied lengths, so that one is a prefix of another.
			idOf := func(n int) string { return fmt.Sprintf("%0*d", 2+n%3, n) }
			model := map[string]map[string]bool{}
			for round := range 60 {
				var iw indexWriter
				ops := 1 + rng.IntN(300)
				for range ops {
					v := values[rng.IntN(len(values))]
					id := idOf(rng.IntN(500))
					e := prefixEntry(indexTenant, indexPrefix(v))
					e.key = append(slices.Clip(e.key), id...)
					add := rng.IntN(3) > 0
					if add {
						iw.put([]indexEntry{e})
					} else {
						iw.del([]indexEntry{e})
					}
					if model[v] == nil {
						model[v] = map[string]bool{}
					}
					if add {
						model[v][id] = true
					} else {
						delete(model[v], id)
					}
				}
				require.NoError(t, bdb.Update(iw.flush), "round %d", round)
				require.NoError(t, bdb.View(func(tx *bolt.Tx) error {
					checkPostings(t, tx.Bucket(indexBuckets[indexTenant]), model)
					return nil
				}), "round %d", round)
			}
		})
	}
}

// checkPostings compares the index bucket b with model, value by value.
func checkPostings(t *testing.T, b *bolt.Bucket, model map[string]map[string]bool) {
	t.Helper()
	got := map[string][]string{}
	require.NoError(t, eachPosting(indexTenant, b, func(prefix, id []byte) {
		got[string(prefix)] = append(got[string(prefix)], string(id))
	}))
	require.NoError(t, b.ForEach(func(_, v []byte) error {
		ids, err := decodeChunk(v)
		require.NoError(t, err)
		require.LessOrEqual(t, len(ids), chunkIDs)
		return nil
	}))
	for v, set := range model {
		prefix := indexPrefix(v)
		want := make([]string, 0, len(set))
		for id := range set {
			want = append(want, id)
		}
		slices.Sort(want)
		require.Equal(t, want, append([]string{}, got[string(prefix)]...), "value %q", v)
		delete(got, string(prefix))
		afters := []string{""}
		for n := 0; n < 500; n += 23 {
			afters = append(afters, fmt.Sprintf("%0*d", 2+n%3, n)) // in the set or not
		}
		for _, after := range afters {
			var walked []string
			var from []byte // nil: from the start
			if after != "" {
				from = []byte(after)
			}
			require.NoError(t, postings(b, prefix, from, func(id []byte) bool {
				walked = append(walked, string(id))
				return true
			}))
			i, found := slices.BinarySearch(want, after)
			if found {
				i++
			}
			require.Equal(t, want[i:], append([]string{}, walked...), "value %q after %q", v, after)
		}
		for n := range 500 {
			id := fmt.Sprintf("%0*d", 2+n%3, n)
			require.Equal(t, set[id], hasPosting(b, prefix, []byte(id)), "value %q id %q", v, id)
		}
	}
	for prefix, ids := range got {
		require.Empty(t, ids, "prefix %q is not in the model", prefix)
	}
}

// TestPostingsBatchChunks checks that a batch of a thousand new ids of one
// value is stored in nearly full chunks, and that removing them all leaves
// no chunk.
func TestPostingsBatchChunks(t *testing.T) {
	bdb, err := bolt.Open(filepath.Join(t.TempDir(), "p.db"), 0o600, &bolt.Options{NoSync: true})
	require.NoError(t, err)
	defer bdb.Close()
	require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket(indexBuckets[indexState])
		return err
	}))
	entries := func(lo, hi int) []indexEntry {
		var out []indexEntry
		for n := lo; n < hi; n++ {
			e := prefixEntry(indexState, indexPrefix("1"))
			e.key = append(slices.Clip(e.key), fmt.Sprintf("%08d", n)...)
			out = append(out, e)
		}
		return out
	}
	chunks := func() int {
		n := 0
		require.NoError(t, bdb.View(func(tx *bolt.Tx) error {
			n = tx.Bucket(indexBuckets[indexState]).Stats().KeyN
			return nil
		}))
		return n
	}
	for batch := range 3 {
		require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
			var iw indexWriter
			iw.put(entries(batch*1000, (batch+1)*1000))
			return iw.flush(tx)
		}))
	}
	require.LessOrEqual(t, chunks(), 3000/chunkIDs+3, "appended batches fill their chunks")
	require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
		var iw indexWriter
		iw.del(entries(0, 3000))
		return iw.flush(tx)
	}))
	require.Zero(t, chunks())
}

// TestBatchChunks inserts batches whose ids come after the stored ones
// (their chunks are made before the commit and put as they are), before
// them (merged in the commit), and small ones (merged into the last
// chunk): the indexes check out after each, list every job, and a large
// batch fills its chunks.
func TestBatchChunks(t *testing.T) {
	db := MustOpen(t)
	chunks := func() int {
		n := 0
		require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error {
			n = tx.Bucket(indexBuckets[indexTenant]).Stats().KeyN
			return nil
		}))
		return n
	}
	total := 0
	for _, r := range []struct{ from, to int }{{5000, 5999}, {1000, 1999}, {7000, 7099}, {8000, 8009}, {3000, 3004}, {9000, 9999}} {
		insertN(t, db, r.from, r.to, nil)
		total += r.to - r.from + 1
		require.NoError(t, db.Check(), "after %d–%d", r.from, r.to)
		jobs, _, err := db.List(t.Context(), job.Filter{Tenant: job.DefaultTenant, Limit: job.MaxPageSize})
		require.NoError(t, err)
		require.Len(t, jobs, min(total, job.MaxPageSize))
	}
	// 4,115 ids: the batches of 1,000 and 100 made full chunks; the few
	// merges added at most a couple each.
	require.LessOrEqual(t, chunks(), 4115/chunkIDs+8)
	var all []string
	after := ""
	for {
		jobs, next, err := db.List(t.Context(), job.Filter{Tenant: job.DefaultTenant, Limit: job.MaxPageSize, After: after})
		require.NoError(t, err)
		for _, j := range jobs {
			all = append(all, j.ID)
		}
		if next == "" {
			break
		}
		after = next
	}
	require.Len(t, all, total)
	require.True(t, slices.IsSorted(all))
}

// TestInGap checks where a range of new ids may be put as chunks of its
// own.
func TestInGap(t *testing.T) {
	db := MustOpen(t)
	insertN(t, db, 2000, 2999, nil) // chunks of ids 2000–2999
	insertN(t, db, 5000, 5999, nil)
	prefix := indexPrefix(job.DefaultTenant)
	id := func(n int) []byte { return []byte(storetest.ID(n)) }
	require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(indexBuckets[indexTenant])
		for _, c := range []struct {
			first, last int
			want        bool
		}{
			{1000, 1999, true},  // before the first chunk
			{1000, 2000, false}, // reaches into it
			{3000, 4999, true},  // between two batches' chunks
			{2500, 2501, false}, // inside a chunk
			{2999, 3000, false},
			{6000, 6999, true}, // after the last
		} {
			require.Equal(t, c.want, inGap(b, prefix, id(c.first), id(c.last)), "%d–%d", c.first, c.last)
		}
		require.True(t, inGap(b, indexPrefix("other"), id(1), id(2)), "a value with no chunk")
		return nil
	}))
}

// TestPrepareInsertChunks checks that a large batch's index entries are
// gathered by value and made into chunks before its transaction, on every
// CPU or not, and that a small batch's are left to be merged in it.
func TestPrepareInsertChunks(t *testing.T) {
	batch := func(n int) []*job.Job {
		var jobs []*job.Job
		for i := 1; i <= n; i++ {
			j := storetest.NewJob(i)
			j.Spec.Name = "bench"
			j.Spec.Labels = map[string]string{"team": "bench", "kind": "submit"}
			jobs = append(jobs, j)
		}
		return jobs
	}
	for _, c := range []struct{ jobs, chunks int }{{1000, 8}, {encodeChunk, 2}, {10, 0}} {
		in, err := prepareInsert(batch(c.jobs))
		require.NoError(t, err)
		require.Len(t, in.adds.groups, 5, "name, two labels, tenant, state")
		for _, g := range in.adds.groups {
			require.Len(t, g.ops, c.jobs, "%s %s", g.kind, g.v1)
			require.Len(t, g.chunks, c.chunks, "%s %s", g.kind, g.v1)
		}
	}
}

// hasPosting reports whether the index bucket b holds id under prefix.
func hasPosting(b *bolt.Bucket, prefix, id []byte) bool {
	var p postingProbe
	return p.has(b, prefix, id)
}

// postings walks the ids of prefix in b after after (all when nil), in
// order, with the cursor List walks them with, calling yield until it
// returns false. A malformed chunk stops the walk with an error.
func postings(b *bolt.Bucket, prefix, after []byte, yield func(id []byte) bool) error {
	c := newPostingCursor(b, prefix, after, false)
	for ; c.head() != nil; c.advance() {
		if !yield(c.head()) {
			return nil
		}
	}
	return c.err
}
