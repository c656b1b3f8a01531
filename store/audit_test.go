package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// auditT0 is the time of the first test entry; entry i is i seconds later.
var auditT0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

// auditEntry returns test entry i: actor alice for even i, bob for odd;
// Submit for i%3 == 0, Cancel otherwise.
func auditEntry(i int) job.AuditEntry {
	e := job.AuditEntry{
		Time: auditT0.Add(time.Duration(i) * time.Second), TokenID: fmt.Sprintf("tok-%d", i%2),
		TokenName: "alice", Role: "operator", Tenant: "team-a",
		Action: "/hodei.v1.JobService/Cancel", Target: fmt.Sprintf("job-%d", i), Result: job.AuditOK,
		Peer: "127.0.0.1:5000",
	}
	if i%2 == 1 {
		e.TokenName, e.Role, e.Scope = "bob", "submitter", []string{"team-a", "team-b"}
		e.Result, e.Message = "PermissionDenied", "role submitter may not cancel"
	}
	if i%3 == 0 {
		e.Action = "/hodei.v1.JobService/Submit"
	}
	return e
}

func auditEntries(from, to int) []job.AuditEntry {
	var es []job.AuditEntry
	for i := from; i < to; i++ {
		es = append(es, auditEntry(i))
	}
	return es
}

// targets returns the Target of each entry, to compare order compactly.
func targets(es []job.AuditEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Target
	}
	return out
}

// wantTargets returns job-i for each i, in the order given.
func wantTargets(is ...int) []string {
	out := make([]string, len(is))
	for k, i := range is {
		out[k] = fmt.Sprintf("job-%d", i)
	}
	return out
}

func mustListAudit(t *testing.T, db *DB, f job.AuditFilter) []job.AuditEntry {
	t.Helper()
	es, err := db.ListAudit(t.Context(), f)
	require.NoError(t, err)
	return es
}

func TestAudit(t *testing.T) {
	t.Run("RoundTrip", func(t *testing.T) {
		// Every field comes back, in the order listed: newest first.
		db := MustOpen(t)
		in := auditEntries(0, 4)
		require.NoError(t, db.AppendAudit(t.Context(), in))
		got := mustListAudit(t, db, job.AuditFilter{})
		require.Equal(t, []job.AuditEntry{in[3], in[2], in[1], in[0]}, got)
	})
	t.Run("SameNanosecond", func(t *testing.T) {
		// Entries of one instant are all kept, in the order appended.
		db := MustOpen(t)
		es := auditEntries(0, 3)
		for i := range es {
			es[i].Time = auditT0
		}
		require.NoError(t, db.AppendAudit(t.Context(), es[:2]))
		require.NoError(t, db.AppendAudit(t.Context(), es[2:]))
		require.Equal(t, wantTargets(2, 1, 0), targets(mustListAudit(t, db, job.AuditFilter{})))
	})
	t.Run("OrderByTimeNotAppend", func(t *testing.T) {
		// A record appended late with an earlier time (a clock step back, a
		// slow caller) sorts by its time.
		db := MustOpen(t)
		require.NoError(t, db.AppendAudit(t.Context(), auditEntries(5, 7)))
		require.NoError(t, db.AppendAudit(t.Context(), auditEntries(1, 2)))
		require.Equal(t, wantTargets(6, 5, 1), targets(mustListAudit(t, db, job.AuditFilter{})))
	})
	t.Run("Reopen", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "hodei.db")
		db := MustOpenPath(t, path, Options{})
		require.NoError(t, db.AppendAudit(t.Context(), auditEntries(0, 3)))
		require.NoError(t, db.Close())

		db = MustOpenPath(t, path, Options{})
		require.NoError(t, db.AppendAudit(t.Context(), auditEntries(3, 4)))
		require.Equal(t, wantTargets(3, 2, 1, 0), targets(mustListAudit(t, db, job.AuditFilter{})))
	})
	t.Run("BucketAddedToOldFile", func(t *testing.T) {
		// A file written before the audit bucket existed gets it at Open
		// and keeps what it held.
		path := filepath.Join(t.TempDir(), "hodei.db")
		db := MustOpenPath(t, path, Options{})
		j := storetest.NewJob(1)
		storetest.MustInsert(t, db, j)
		require.NoError(t, db.Close())
		bdb, err := bolt.Open(path, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, bdb.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketAudit) }))
		require.NoError(t, bdb.Close())

		db = MustOpenPath(t, path, Options{})
		got, err := db.Get(t.Context(), j.ID)
		require.NoError(t, err)
		require.Equal(t, j.ID, got.ID)
		require.NoError(t, db.AppendAudit(t.Context(), auditEntries(0, 1)))
		require.Len(t, mustListAudit(t, db, job.AuditFilter{}), 1)
	})
	t.Run("RefusesTimeBefore1970", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			at   time.Time
		}{
			{"Zero", time.Time{}},
			{"1969", time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				db := MustOpen(t)
				es := auditEntries(0, 2)
				es[1].Time = tc.at
				err := db.AppendAudit(t.Context(), es)
				require.ErrorIs(t, err, job.ErrInvalid)
				require.Empty(t, mustListAudit(t, db, job.AuditFilter{}), "nothing of the batch is written")
			})
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		// Concurrent appends share transactions and lose nothing.
		db := MustOpen(t)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 10 {
					require.NoError(t, db.AppendAudit(context.Background(), auditEntries(g*10+i, g*10+i+1)))
				}
			})
		}
		wg.Wait()
		require.Len(t, mustListAudit(t, db, job.AuditFilter{}), 80)
	})
}

func TestListAudit(t *testing.T) {
	db := MustOpen(t)
	require.NoError(t, db.AppendAudit(t.Context(), auditEntries(0, 12)))
	for _, tc := range []struct {
		name   string
		filter job.AuditFilter
		want   []string
	}{
		{"All", job.AuditFilter{}, wantTargets(11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)},
		{"Limit", job.AuditFilter{Limit: 3}, wantTargets(11, 10, 9)},
		{"SinceInclusive", job.AuditFilter{Since: auditT0.Add(9 * time.Second)}, wantTargets(11, 10, 9)},
		{"SinceBefore1970", job.AuditFilter{Since: time.Unix(-5, 0), Limit: 2}, wantTargets(11, 10)},
		{"SinceAfterAll", job.AuditFilter{Since: auditT0.Add(time.Hour)}, wantTargets()},
		{"Actor", job.AuditFilter{Actor: "bob"}, wantTargets(11, 9, 7, 5, 3, 1)},
		{"ActorIsExact", job.AuditFilter{Actor: "bo"}, wantTargets()},
		{"ActionSubstring", job.AuditFilter{Action: "Submit"}, wantTargets(9, 6, 3, 0)},
		{"ActionIgnoresCase", job.AuditFilter{Action: "submit"}, wantTargets(9, 6, 3, 0)},
		{"AllFiltersAndLimit", job.AuditFilter{Since: auditT0.Add(2 * time.Second), Actor: "bob", Action: "jobservice/submit", Limit: 1}, wantTargets(9)},
		{"LimitCountsMatchesNotScanned", job.AuditFilter{Actor: "alice", Action: "Cancel", Limit: 2}, wantTargets(10, 8)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, targets(mustListAudit(t, db, tc.filter)))
		})
	}
	t.Run("DefaultLimit", func(t *testing.T) {
		db := MustOpen(t)
		require.NoError(t, db.AppendAudit(t.Context(), auditEntries(0, job.DefaultAuditLimit+5)))
		require.Len(t, mustListAudit(t, db, job.AuditFilter{}), job.DefaultAuditLimit)
	})
	t.Run("ErrInvalidLimit", func(t *testing.T) {
		for _, limit := range []int{-1, job.MaxAuditLimit + 1} {
			_, err := db.ListAudit(t.Context(), job.AuditFilter{Limit: limit})
			var fe *job.FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, "limit", fe.Field)
		}
	})
	t.Run("ErrCanceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := db.ListAudit(ctx, job.AuditFilter{})
		require.ErrorIs(t, err, context.Canceled)
	})
}

func TestDeleteAuditBefore(t *testing.T) {
	for _, tc := range []struct {
		name        string
		before      time.Time
		limit       int
		wantDeleted int
		wantLeft    []string
	}{
		{"OldestFirstUpToLimit", auditT0.Add(4 * time.Second), 2, 2, wantTargets(5, 4, 3, 2)},
		{"StopsAtBefore", auditT0.Add(4 * time.Second), 10, 4, wantTargets(5, 4)},
		{"BeforeIsExclusive", auditT0, 10, 0, wantTargets(5, 4, 3, 2, 1, 0)},
		{"Everything", auditT0.Add(time.Hour), 10, 6, wantTargets()},
		{"ZeroLimit", auditT0.Add(time.Hour), 0, 0, wantTargets(5, 4, 3, 2, 1, 0)},
		{"ZeroBefore", time.Time{}, 10, 0, wantTargets(5, 4, 3, 2, 1, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := MustOpen(t)
			require.NoError(t, db.AppendAudit(t.Context(), auditEntries(0, 6)))
			n, err := db.DeleteAuditBefore(t.Context(), tc.before, tc.limit)
			require.NoError(t, err)
			require.Equal(t, tc.wantDeleted, n)
			require.Equal(t, tc.wantLeft, targets(mustListAudit(t, db, job.AuditFilter{})))
		})
	}
	t.Run("ErrClosed", func(t *testing.T) {
		db := MustOpen(t)
		require.NoError(t, db.Close())
		_, err := db.DeleteAuditBefore(t.Context(), auditT0, 1)
		require.ErrorIs(t, err, job.ErrClosed)
		require.ErrorIs(t, db.AppendAudit(t.Context(), auditEntries(0, 1)), job.ErrClosed)
		_, err = db.ListAudit(t.Context(), job.AuditFilter{})
		require.ErrorIs(t, err, job.ErrClosed)
	})
}

func TestAuditCodec(t *testing.T) {
	t.Run("UnknownFieldsSkipped", func(t *testing.T) {
		// A record written by a newer version, with a field this one does
		// not know, still decodes.
		e := auditEntry(1)
		b := encodeAudit(nil, &e)
		b = append(b, 0xa0, 0x06, 0x2a) // field 100, varint 42
		got, err := decodeAudit(b)
		require.NoError(t, err)
		require.Equal(t, e, got)
	})
	t.Run("ErrTruncated", func(t *testing.T) {
		e := auditEntry(1)
		b := encodeAudit(nil, &e)
		_, err := decodeAudit(b[:len(b)-1])
		require.Error(t, err)
	})
}

// BenchmarkListAudit measures ListAudit. page: the newest 100 records of
// a trail of 100,000. scan: a filter that matches none of a trail of 1,000
// records, so every one is read and decoded; records/s is the scan rate.
func BenchmarkListAudit(b *testing.B) {
	for _, tc := range []struct {
		name  string
		trail int
		f     job.AuditFilter
		want  int
	}{
		{"page", 100_000, job.AuditFilter{Limit: 100}, 100},
		{"scan", 1000, job.AuditFilter{Actor: "nobody"}, 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			db := MustOpenPath(b, filepath.Join(b.TempDir(), "hodei.db"), Options{NoSync: true})
			for from := 0; from < tc.trail; from += 10_000 {
				if err := db.AppendAudit(context.Background(), auditEntries(from, min(from+10_000, tc.trail))); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				es, err := db.ListAudit(context.Background(), tc.f)
				if err != nil || len(es) != tc.want {
					b.Fatalf("%d records, %v; want %d", len(es), err, tc.want)
				}
			}
			read := tc.want // a page reads what it returns, a scan everything
			if read == 0 {
				read = tc.trail
			}
			b.ReportMetric(float64(b.N*read)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
