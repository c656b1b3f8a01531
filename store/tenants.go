package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/hodei-jobs/hodei/job"
)

// Tenants and admission. Tenant records live in bucketTenants, keyed by
// name. bucketTenantJobs counts each tenant's non-terminal jobs (name →
// uint64 big-endian; absent is 0) so that Insert can enforce MaxQueued in
// its own transaction without scanning the jobs: Insert adds its jobs,
// Apply moves a job's count when it enters or leaves a terminal state, and
// DeleteFinished, which removes only terminal jobs, leaves the counts alone.
// Open rebuilds the counts from the jobs, so that they cannot drift from
// them across versions or bugs.

// PutTenant stores (creates or replaces) a tenant record, keyed by its name,
// as given: the caller sets its timestamps. A record that fails
// Tenant.Validate is refused with its *job.FieldError and nothing is written.
func (db *DB) PutTenant(ctx context.Context, t *job.Tenant) error {
	if t == nil {
		return job.Invalid("tenant", "must not be nil")
	}
	if err := t.Validate(); err != nil {
		return err
	}
	enc, err := encodeTenant(t)
	if err != nil {
		return err
	}
	return db.write(ctx, len(enc), func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketTenants).Put([]byte(t.Name), enc); err != nil {
			return abort(fmt.Errorf("put tenant %s: %w", t.Name, err))
		}
		return nil
	})
}

// DeleteTenant deletes a tenant record. It fails with an error wrapping
// job.ErrNotFound when there is none, and with one wrapping job.ErrConflict
// for job.DefaultTenant or while the tenant has non-terminal jobs, counted
// in the transaction that deletes.
func (db *DB) DeleteTenant(ctx context.Context, name string) error {
	if name == job.DefaultTenant {
		return job.ErrDefaultTenant
	}
	return db.write(ctx, 0, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTenants)
		if b.Get([]byte(name)) == nil {
			return fmt.Errorf("tenant %q: %w", name, job.ErrNotFound)
		}
		n, err := jobCount(tx, name)
		if err != nil {
			return err
		}
		if n > 0 {
			return job.TenantBusy(name, int(n))
		}
		if err := b.Delete([]byte(name)); err != nil {
			return abort(fmt.Errorf("delete tenant %s: %w", name, err))
		}
		return nil
	})
}

// Tenants returns every stored tenant in name order.
func (db *DB) Tenants(ctx context.Context) ([]*job.Tenant, error) {
	if err := db.usable(ctx); err != nil {
		return nil, err
	}
	var out []*job.Tenant
	err := db.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTenants).ForEach(func(k, v []byte) error {
			t, err := decodeTenant(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	return out, nil
}

// admit checks, in the transaction of an Insert, the new jobs against
// their tenants (job.Admit) and returns the number of new jobs by tenant.
// It writes nothing.
func admit(tx *bolt.Tx, jobs []*job.Job) (map[string]int, error) {
	return job.Admit(jobs, tenantLookup(tx))
}

// tenantLookup returns the lookup of job.Admit over tx: a tenant's record
// (nil when it does not exist) and its count of non-terminal jobs.
func tenantLookup(tx *bolt.Tx) func(name string) (*job.Tenant, int, error) {
	b := tx.Bucket(bucketTenants)
	return func(name string) (*job.Tenant, int, error) {
		v := b.Get([]byte(name))
		if v == nil {
			return nil, 0, nil
		}
		t, err := decodeTenant(name, v)
		if err != nil {
			return nil, 0, err
		}
		n, err := jobCount(tx, name)
		return t, int(n), err
	}
}

// jobCount returns the stored count of the tenant's non-terminal jobs.
func jobCount(tx *bolt.Tx, name string) (uint64, error) {
	v := tx.Bucket(bucketTenantJobs).Get([]byte(name))
	switch len(v) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(v), nil
	}
	return 0, fmt.Errorf("tenant %s: job count is %d bytes, want 8", name, len(v))
}

// addJobCount adds delta to the tenant's count of non-terminal jobs, deleting
// the key at zero. Jobs without a tenant are not counted: no tenant record
// can have the empty name, so nothing is admitted against them. An error
// means the transaction must abort; going below zero is one, since the
// counts are rebuilt at Open and must match the jobs.
func addJobCount(tx *bolt.Tx, name string, delta int64) error {
	if name == "" || delta == 0 {
		return nil
	}
	n, err := jobCount(tx, name)
	if err != nil {
		return err
	}
	if delta < 0 && uint64(-delta) > n {
		return fmt.Errorf("tenant %s: job count %d would go below zero by %d", name, n, -delta)
	}
	n = uint64(int64(n) + delta)
	b := tx.Bucket(bucketTenantJobs)
	if n == 0 {
		return b.Delete([]byte(name))
	}
	return b.Put([]byte(name), binary.BigEndian.AppendUint64(nil, n))
}

// moveJobCount updates the counts for a job stored as old that is replaced
// by next: a job that enters a terminal state leaves its tenant's count. It
// also handles the moves that the transition table forbids (out of a
// terminal state, a changed tenant), so that the counts always match what is
// stored.
func moveJobCount(tx *bolt.Tx, old header, next *job.Job) error {
	was, is := !old.State.Terminal(), !next.State.Terminal()
	if was == is && string(old.Tenant) == next.Spec.Tenant {
		return nil
	}
	if was {
		if err := addJobCount(tx, string(old.Tenant), -1); err != nil {
			return err
		}
	}
	if is {
		return addJobCount(tx, next.Spec.Tenant, 1)
	}
	return nil
}

// countJobs counts the non-terminal jobs of each tenant by reading every
// stored job's header.
func countJobs(tx *bolt.Tx) (map[string]uint64, error) {
	counts := make(map[string]uint64)
	err := tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
		h, err := readHeader(v)
		if err != nil {
			return fmt.Errorf("job %s: %w", k, err)
		}
		if !h.State.Terminal() && len(h.Tenant) > 0 {
			counts[string(h.Tenant)]++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The tasks of an array not materialized yet count with their array.
	err = tx.Bucket(bucketArrays).ForEach(func(k, v []byte) error {
		a, err := decodeArray(k, v)
		if err != nil {
			return fmt.Errorf("array %s: %w", k, err)
		}
		if !a.Cancelled {
			if n := a.Len() - materializedTasks(tx, a); n > 0 {
				counts[a.Spec.Tenant] += uint64(n)
			}
		}
		return nil
	})
	return counts, err
}

// checkJobCounts verifies the kept counts of non-terminal jobs by tenant
// against a recount.
func checkJobCounts(tx *bolt.Tx) error {
	want, err := countJobs(tx)
	if err != nil {
		return err
	}
	got := make(map[string]uint64)
	err = tx.Bucket(bucketTenantJobs).ForEach(func(k, v []byte) error {
		if len(v) == 8 {
			if n := binary.BigEndian.Uint64(v); n > 0 {
				got[string(k)] = n
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !maps.Equal(got, want) {
		return fmt.Errorf("job counts by tenant %v, recounted %v", got, want)
	}
	return nil
}

// rebuildJobCounts replaces bucketTenantJobs with counts taken from the jobs.
func rebuildJobCounts(tx *bolt.Tx) error {
	counts, err := countJobs(tx)
	if err != nil {
		return fmt.Errorf("count jobs by tenant: %w", err)
	}
	if err := tx.DeleteBucket(bucketTenantJobs); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
		return fmt.Errorf("reset job counts: %w", err)
	}
	b, err := tx.CreateBucket(bucketTenantJobs)
	if err != nil {
		return fmt.Errorf("reset job counts: %w", err)
	}
	for name, n := range counts {
		if err := b.Put([]byte(name), binary.BigEndian.AppendUint64(nil, n)); err != nil {
			return fmt.Errorf("put job count of %s: %w", name, err)
		}
	}
	return nil
}

// ensureDefaultTenant stores job.DefaultTenant (weight 1, no limits, created
// at now) when it is missing.
func ensureDefaultTenant(tx *bolt.Tx, now time.Time) error {
	b := tx.Bucket(bucketTenants)
	if b.Get([]byte(job.DefaultTenant)) != nil {
		return nil
	}
	t := &job.Tenant{Name: job.DefaultTenant, CreatedAt: now, UpdatedAt: now}
	t.Normalize()
	enc, err := encodeTenant(t)
	if err != nil {
		return err
	}
	if err := b.Put([]byte(t.Name), enc); err != nil {
		return fmt.Errorf("put default tenant: %w", err)
	}
	return nil
}

// SyncJobCounts replaces the kept counts of non-terminal jobs by tenant
// with counts, which the caller took from the same jobs (the cluster's
// recovery reads every job once, so the counts come with that read instead
// of a second one). It reports whether the kept counts differed. Call it
// only while nothing else writes jobs.
func (db *DB) SyncJobCounts(ctx context.Context, counts map[string]int) (bool, error) {
	changed := false
	err := db.write(ctx, 0, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTenantJobs)
		kept := make(map[string]int)
		err := b.ForEach(func(k, v []byte) error {
			if len(v) == 8 {
				if n := int(binary.BigEndian.Uint64(v)); n > 0 {
					kept[string(k)] = n
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		want := make(map[string]int, len(counts))
		for name, n := range counts {
			if n > 0 {
				want[name] = n
			}
		}
		if maps.Equal(kept, want) {
			return nil
		}
		changed = true
		for name := range kept {
			if _, ok := want[name]; !ok {
				if err := b.Delete([]byte(name)); err != nil {
					return abort(err)
				}
			}
		}
		for name, n := range want {
			if err := b.Put([]byte(name), binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
				return abort(err)
			}
		}
		return nil
	})
	return changed, err
}
