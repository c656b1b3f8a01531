package store

import (
	"errors"
	"testing"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// TestInsertLargeBatch covers what only large inserts do: encoding spread
// over the CPUs, and the existence check skipped for ids that all come
// after the last stored one (and kept for those that do not).
func TestInsertLargeBatch(t *testing.T) {
	db := MustOpen(t)
	ctx := t.Context()
	batch := func(from, n int) []*job.Job {
		jobs := make([]*job.Job, n)
		for i := range jobs {
			jobs[i] = storetest.NewJob(from + i)
		}
		return jobs
	}
	if err := db.Insert(ctx, batch(1000, 3*encodeChunk+7)); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1000, 1000 + encodeChunk, 1000 + 3*encodeChunk + 6} {
		got, err := db.Get(ctx, storetest.ID(n))
		if err != nil || got.Spec.Name != storetest.NewJob(n).Spec.Name || got.Version != 1 {
			t.Fatalf("job %d = %+v, %v", n, got, err)
		}
	}
	// Ids before the last stored one are looked up: one of them exists.
	old := batch(10, 2*encodeChunk)
	old = append(old, storetest.NewJob(1001))
	if err := db.Insert(ctx, old); !errors.Is(err, job.ErrConflict) {
		t.Fatalf("insert over a stored id: %v, want ErrConflict", err)
	}
	if _, err := db.Get(ctx, storetest.ID(10)); !errors.Is(err, job.ErrNotFound) {
		t.Fatalf("the refused batch stored job 10: %v", err)
	}
	// Not ascending: looked up too.
	if err := db.Insert(ctx, []*job.Job{storetest.NewJob(5000), storetest.NewJob(1002)}); !errors.Is(err, job.ErrConflict) {
		t.Fatalf("insert of a later id then a stored one: %v, want ErrConflict", err)
	}
}
