package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/record"
)

// Usage accounting. The update that ends an attempt (applyOne) also writes,
// in its transaction, the attempt's usage record and adds it to three daily
// roll-ups: its tenant's, its owner's and one per label of its job. Both
// buckets outlive the jobs (DeleteFinished leaves them) until
// DeleteUsageBefore, the usage retention, removes them.
//
// usage_attempts: key = end time (8 bytes, unix ns, big-endian) | job id |
// attempt (4 bytes); value = record.UsageRecord. Ordered by end time, so a
// listing of days and the retention walk a range.
//
// usage_rollups: key = kind (1 byte) | UTC day (4 bytes, days since
// 1970-01-01, big-endian) | tenant | 0 | rest; value = record.RollupRecord.
// rest is empty for kind 't' (per tenant), the owner for 'u' (per user),
// and key | 0 | value for 'l' (per label). A query reads one kind's range
// of days: O(days × groups), however many jobs there were.

var (
	bucketUsageAttempts = []byte("usage_attempts")
	bucketUsageRollups  = []byte("usage_rollups")
)

// Kinds of roll-up.
const (
	rollupTenant = 't'
	rollupUser   = 'u'
	rollupLabel  = 'l'
)

// endsAttempt reports whether an update from the stored state (state,
// attempt) to next ends that attempt and carries its usage: the job leaves
// Scheduled or Running and next.Usage is that attempt's (scheduler.Finished
// sets it; other writes keep the previous attempt's).
func endsAttempt(state job.State, attempt int, next *job.Job) bool {
	return state.Active() && !(next.State.Active() && next.Attempt == attempt) && next.Usage.Attempt == attempt
}

// attemptUsage is the usage record of the attempt next ends.
func attemptUsage(next *job.Job, attempt int) *job.AttemptUsage {
	return &job.AttemptUsage{
		JobID: next.ID, Attempt: attempt, Name: next.Spec.Name, Tenant: next.Spec.Tenant, Owner: next.Spec.Owner,
		Labels: next.Spec.Labels, Worker: next.Worker, Slots: max(next.Spec.Resources.Slots, 1),
		StartedAt: next.StartedAt, FinishedAt: next.FinishedAt, State: next.State, ExitCode: next.ExitCode,
		Usage: next.Usage,
	}
}

// putUsage writes a's record and adds it to its roll-ups, in tx. Errors
// are abort errors: the update that ended the attempt is half-written.
func putUsage(tx *bolt.Tx, a *job.AttemptUsage) error {
	if a.FinishedAt.IsZero() {
		return nil // scheduler.Finished always sets it; a record needs it for its key
	}
	enc, err := record.MarshalUsage(a)
	if err != nil {
		return abort(err)
	}
	if err := tx.Bucket(bucketUsageAttempts).Put(usageKey(a.FinishedAt, a.JobID, a.Attempt), enc); err != nil {
		return abort(fmt.Errorf("put usage of %s: %w", a.JobID, err))
	}
	day := job.UsageDay(a.FinishedAt)
	sums := a.Sums()
	b := tx.Bucket(bucketUsageRollups)
	if err := addRollup(b, rollupKey(rollupTenant, day, a.Tenant), sums); err != nil {
		return err
	}
	if err := addRollup(b, rollupKey(rollupUser, day, a.Tenant, a.Owner), sums); err != nil {
		return err
	}
	for k, v := range a.Labels {
		if err := addRollup(b, rollupKey(rollupLabel, day, a.Tenant, k, v), sums); err != nil {
			return err
		}
	}
	return nil
}

func addRollup(b *bolt.Bucket, key []byte, s job.UsageSums) error {
	if v := b.Get(key); v != nil {
		cur, err := record.UnmarshalRollup(hex.EncodeToString(key), v)
		if err != nil {
			return abort(err)
		}
		s.Add(cur)
	}
	enc, err := record.MarshalRollup(s)
	if err != nil {
		return abort(err)
	}
	if err := b.Put(key, enc); err != nil {
		return abort(fmt.Errorf("put roll-up: %w", err))
	}
	return nil
}

func usageKey(end time.Time, id string, attempt int) []byte {
	k := make([]byte, 0, 8+len(id)+4)
	k = binary.BigEndian.AppendUint64(k, uint64(end.UnixNano()))
	k = append(k, id...)
	return binary.BigEndian.AppendUint32(k, uint32(attempt))
}

// rollupKey is kind | day | tenant | 0 | parts joined by 0.
func rollupKey(kind byte, day int64, tenant string, parts ...string) []byte {
	k := append(make([]byte, 0, 64), kind)
	k = binary.BigEndian.AppendUint32(k, uint32(day))
	k = append(k, tenant...)
	k = append(k, 0)
	for i, p := range parts {
		if i > 0 {
			k = append(k, 0)
		}
		k = append(k, p...)
	}
	return k
}

// parseRollupKey splits a key of rollupKey: its day, tenant and the rest
// (nil for a tenant's).
func parseRollupKey(k []byte) (day int64, tenant string, rest [][]byte, ok bool) {
	if len(k) < 6 {
		return 0, "", nil, false
	}
	day = int64(binary.BigEndian.Uint32(k[1:5]))
	t, r, found := bytes.Cut(k[5:], []byte{0})
	if !found {
		return 0, "", nil, false
	}
	if len(r) > 0 || k[0] == rollupUser {
		rest = bytes.Split(r, []byte{0})
	}
	return day, string(t), rest, true
}

// Usage sums the roll-ups q selects into one row per group, ordered by
// group. It fails with a *job.FieldError for a query Validate refuses. It
// reads one kind of roll-up over q's days in one read transaction.
func (db *DB) Usage(ctx context.Context, q job.UsageQuery) ([]job.UsageRow, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	if err := db.usable(ctx); err != nil {
		return nil, err
	}
	kind := rollupKindOf(q)
	from, to := job.UsageDay(q.From), job.UsageDay(q.To)
	groups := make(map[string]*job.UsageSums)
	err := db.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketUsageRollups).Cursor()
		start := binary.BigEndian.AppendUint32([]byte{kind}, uint32(max(from, 0)))
		n := 0
		for k, v := c.Seek(start); k != nil && k[0] == kind; k, v = c.Next() {
			if n++; n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			day, tenant, rest, ok := parseRollupKey(k)
			if !ok {
				return fmt.Errorf("roll-up key %x: malformed", k)
			}
			if day > to {
				break
			}
			if len(q.Tenants) > 0 && !slices.Contains(q.Tenants, tenant) {
				continue
			}
			var group string
			switch kind {
			case rollupLabel:
				if len(rest) != 2 {
					return fmt.Errorf("roll-up key %x: malformed", k)
				}
				key, value := string(rest[0]), string(rest[1])
				if q.LabelKey != "" && (key != q.LabelKey || value != q.LabelValue) {
					continue
				}
				if q.Group == job.ByLabel && key != q.GroupKey {
					continue
				}
				group = value
			case rollupUser:
				group = string(rest[0])
			}
			switch q.Group {
			case job.ByTenant:
				group = tenant
			case job.ByDay:
				group = job.DayTime(day).Format(time.DateOnly)
			}
			s, err := record.UnmarshalRollup(hex.EncodeToString(k), v)
			if err != nil {
				return err
			}
			g := groups[group]
			if g == nil {
				g = new(job.UsageSums)
				groups[group] = g
			}
			g.Add(s)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	rows := make([]job.UsageRow, 0, len(groups))
	for _, g := range slices.Sorted(maps.Keys(groups)) {
		rows = append(rows, job.UsageRow{Group: g, UsageSums: *groups[g]})
	}
	return rows, nil
}

// rollupKindOf is the kind of roll-up that answers q: the label ones for a
// grouping by label or a label filter (with which Validate refuses a
// grouping by user), the user ones for a grouping by user, else the
// tenant ones.
func rollupKindOf(q job.UsageQuery) byte {
	switch {
	case q.Group == job.ByUser:
		return rollupUser
	case q.Group == job.ByLabel || q.LabelKey != "":
		return rollupLabel
	}
	return rollupTenant
}

// maxUsageScan bounds the records one UsageAttempts call reads past those
// it returns, so that a page of a rare tenant or label costs a bounded
// read; the answer then has fewer records and a cursor to go on.
const maxUsageScan = 50_000

// MaxUsageAttempts bounds a page of UsageAttempts.
const MaxUsageAttempts = 1000

// UsageAttempts lists the usage records q selects (its Group is ignored),
// by end time, oldest first, at most limit (1..MaxUsageAttempts) of them,
// from after the cursor a previous page returned (""); next is "" when
// there are no more. It reads at most about maxUsageScan records.
func (db *DB) UsageAttempts(ctx context.Context, q job.UsageQuery, cursor string, limit int) (out []*job.AttemptUsage, next string, err error) {
	q.Group, q.GroupKey = job.ByTenant, ""
	if err := q.Validate(); err != nil {
		return nil, "", err
	}
	if limit < 1 || limit > MaxUsageAttempts {
		return nil, "", job.Invalid("limit", "must be 1 to %d, not %d", MaxUsageAttempts, limit)
	}
	var after []byte
	if cursor != "" {
		if after, err = hex.DecodeString(cursor); err != nil || len(after) < 12 {
			return nil, "", job.Invalid("cursor", "is not a cursor a previous page returned")
		}
	}
	if err := db.usable(ctx); err != nil {
		return nil, "", err
	}
	from := job.DayTime(job.UsageDay(q.From))
	end := job.DayTime(job.UsageDay(q.To) + 1)
	err = db.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketUsageAttempts).Cursor()
		var k, v []byte
		if after != nil {
			if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
		} else {
			k, v = c.Seek(binary.BigEndian.AppendUint64(nil, uint64(max(from.UnixNano(), 0))))
		}
		for n := 0; k != nil; k, v = c.Next() {
			if int64(binary.BigEndian.Uint64(k[:8])) >= end.UnixNano() {
				return nil
			}
			if len(out) == limit || n >= maxUsageScan {
				next = hex.EncodeToString(after)
				return nil
			}
			if n++; n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			after = bytes.Clone(k)
			a, err := record.UnmarshalUsage(hex.EncodeToString(k), v)
			if err != nil {
				return err
			}
			if q.Matches(a) {
				out = append(out, a)
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("usage attempts: %w", err)
	}
	return out, next, nil
}

// DeleteUsageBefore deletes, in one transaction, at most limit usage
// records that ended before the day of before (UTC) and roll-ups of days
// before it, oldest first, and returns how many it deleted: call it again
// until it returns less than limit.
func (db *DB) DeleteUsageBefore(ctx context.Context, before time.Time, limit int) (int, error) {
	if err := db.usable(ctx); err != nil {
		return 0, err
	}
	if limit <= 0 || before.Unix() <= 0 {
		return 0, nil
	}
	day := job.UsageDay(before)
	cutoff := binary.BigEndian.AppendUint64(nil, uint64(job.DayTime(day).UnixNano()))
	deleted := 0
	err := db.write(ctx, 0, func(tx *bolt.Tx) error {
		// Collect first: deleting under a cursor that then moves on may
		// skip keys.
		var old [][]byte
		c := tx.Bucket(bucketUsageAttempts).Cursor()
		for k, _ := c.First(); k != nil && len(old) < limit && bytes.Compare(k[:min(len(k), 8)], cutoff) < 0; k, _ = c.Next() {
			old = append(old, bytes.Clone(k))
		}
		nAttempts := len(old)
		c = tx.Bucket(bucketUsageRollups).Cursor()
		for _, kind := range []byte{rollupLabel, rollupTenant, rollupUser} {
			for k, _ := c.Seek([]byte{kind}); k != nil && len(old) < limit && k[0] == kind; k, _ = c.Next() {
				if d, _, _, ok := parseRollupKey(k); ok && d >= day {
					break
				}
				old = append(old, bytes.Clone(k))
			}
		}
		for i, k := range old {
			b := tx.Bucket(bucketUsageRollups)
			if i < nAttempts {
				b = tx.Bucket(bucketUsageAttempts)
			}
			if err := b.Delete(k); err != nil {
				return abort(fmt.Errorf("delete usage %x: %w", k, err))
			}
		}
		deleted = len(old)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete usage: %w", err)
	}
	return deleted, nil
}
