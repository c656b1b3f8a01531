package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/hodei-jobs/hodei/job"
)

// The audit trail. Entries live in bucketAudit under a 16-byte key: the
// entry's time in Unix nanoseconds, big-endian, then the bucket's next
// sequence number, big-endian; so keys sort by time and two entries of the
// same nanosecond never collide. Times before 1970 are refused, since a
// negative time would sort after every other. A value is the store's own
// protobuf record of the entry (the audit* field numbers below), written
// with protowire: the API's AuditRecord may change without changing what is
// on disk.

// auditKeyLen is the length of an audit key: time and sequence.
const auditKeyLen = 16

// Field numbers of the stored audit record. Never renumber: only add.
const (
	auditTime      protowire.Number = 1
	auditTokenID   protowire.Number = 2
	auditTokenName protowire.Number = 3
	auditRole      protowire.Number = 4
	auditScope     protowire.Number = 5
	auditTenant    protowire.Number = 6
	auditAction    protowire.Number = 7
	auditTarget    protowire.Number = 8
	auditResult    protowire.Number = 9
	auditMessage   protowire.Number = 10
	auditPeer      protowire.Number = 11
)

// AppendAudit stores entries in one transaction (which the commit loop may
// share with other writes) and returns once it is on disk. It refuses the
// whole batch, writing nothing, with a *job.FieldError when an entry's Time
// is zero or before 1970.
func (db *DB) AppendAudit(ctx context.Context, entries []job.AuditEntry) error {
	if len(entries) == 0 {
		return db.usable(ctx)
	}
	encs := make([][]byte, len(entries))
	size := 0
	for i := range entries {
		e := &entries[i]
		if e.Time.IsZero() || e.Time.UnixNano() < 0 {
			return job.Invalid("time", "audit entry %d: %s is not after 1970", i, e.Time.Format(time.RFC3339Nano))
		}
		encs[i] = encodeAudit(nil, e)
		size += len(encs[i]) + auditKeyLen
	}
	return db.write(ctx, size, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		for i, enc := range encs {
			seq, err := b.NextSequence()
			if err != nil {
				return abort(fmt.Errorf("append audit: %w", err))
			}
			if err := b.Put(auditKey(entries[i].Time, seq), enc); err != nil {
				return abort(fmt.Errorf("append audit: %w", err))
			}
		}
		return nil
	})
}

// ListAudit returns the entries that match f, newest first, at most
// f.Limit of them (0: job.DefaultAuditLimit). It fails with a
// *job.FieldError for a limit past job.MaxAuditLimit. It reads in one read
// transaction, which writers do not wait for, and stops with ctx.Err() when
// ctx ends.
func (db *DB) ListAudit(ctx context.Context, f job.AuditFilter) ([]job.AuditEntry, error) {
	f.Normalize()
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if err := db.usable(ctx); err != nil {
		return nil, err
	}
	var since []byte
	if !f.Since.IsZero() && f.Since.UnixNano() > 0 {
		since = binary.BigEndian.AppendUint64(nil, uint64(f.Since.UnixNano()))
	}
	var out []job.AuditEntry
	err := db.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		n := 0
		for k, v := c.Last(); k != nil && len(out) < f.Limit; k, v = c.Prev() {
			if since != nil && bytes.Compare(k[:min(len(k), 8)], since) < 0 {
				break
			}
			if n++; n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			e, err := decodeAudit(v)
			if err != nil {
				return fmt.Errorf("audit entry %x: %w", k, err)
			}
			if f.Match(&e) {
				out = append(out, e)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return out, nil
}

// DeleteAuditBefore deletes up to limit of the oldest entries whose time is
// before the given one, in one transaction, and returns how many it deleted.
// A limit <= 0 deletes nothing. Call it again while it returns limit.
func (db *DB) DeleteAuditBefore(ctx context.Context, before time.Time, limit int) (int, error) {
	if err := db.usable(ctx); err != nil {
		return 0, err
	}
	if limit <= 0 || before.UnixNano() <= 0 {
		return 0, nil
	}
	cutoff := binary.BigEndian.AppendUint64(nil, uint64(before.UnixNano()))
	deleted := 0
	err := db.write(ctx, 0, func(tx *bolt.Tx) error {
		// Collect first: deleting under a cursor that then moves on may
		// skip keys.
		var old [][]byte
		c := tx.Bucket(bucketAudit).Cursor()
		for k, _ := c.First(); k != nil && len(old) < limit; k, _ = c.Next() {
			if bytes.Compare(k[:min(len(k), 8)], cutoff) >= 0 {
				break
			}
			old = append(old, bytes.Clone(k))
		}
		b := tx.Bucket(bucketAudit)
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return abort(fmt.Errorf("delete audit entry %x: %w", k, err))
			}
		}
		deleted = len(old)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete audit: %w", err)
	}
	return deleted, nil
}

// auditKey is the key of an entry at t with sequence seq.
func auditKey(t time.Time, seq uint64) []byte {
	k := make([]byte, 0, auditKeyLen)
	k = binary.BigEndian.AppendUint64(k, uint64(t.UnixNano()))
	return binary.BigEndian.AppendUint64(k, seq)
}

// encodeAudit appends the stored record of e to b. Empty strings are left
// out, as proto3 does.
func encodeAudit(b []byte, e *job.AuditEntry) []byte {
	b = protowire.AppendTag(b, auditTime, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(e.Time.UnixNano()))
	str := func(num protowire.Number, s string) {
		if s != "" {
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendString(b, s)
		}
	}
	str(auditTokenID, e.TokenID)
	str(auditTokenName, e.TokenName)
	str(auditRole, e.Role)
	for _, s := range e.Scope { // repeated: an empty element is kept
		b = protowire.AppendTag(b, auditScope, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	str(auditTenant, e.Tenant)
	str(auditAction, e.Action)
	str(auditTarget, e.Target)
	str(auditResult, e.Result)
	str(auditMessage, e.Message)
	str(auditPeer, e.Peer)
	return b
}

// decodeAudit decodes a stored record; the strings are copies, valid after
// the transaction. Unknown fields, from a newer version, are skipped.
func decodeAudit(b []byte) (job.AuditEntry, error) {
	var e job.AuditEntry
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return e, fmt.Errorf("decode audit entry: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == auditTime && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return e, fmt.Errorf("decode audit entry: %w", protowire.ParseError(n))
			}
			e.Time, b = time.Unix(0, int64(v)).UTC(), b[n:]
		case num >= auditTokenID && num <= auditPeer && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(b)
			if n < 0 {
				return e, fmt.Errorf("decode audit entry: %w", protowire.ParseError(n))
			}
			b = b[n:]
			if p := auditString(&e, num); p != nil {
				*p = v
			} else {
				e.Scope = append(e.Scope, v)
			}
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return e, fmt.Errorf("decode audit entry: %w", protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return e, nil
}

// auditString returns the string field of e numbered num, or nil for
// auditScope.
func auditString(e *job.AuditEntry, num protowire.Number) *string {
	switch num {
	case auditTokenID:
		return &e.TokenID
	case auditTokenName:
		return &e.TokenName
	case auditRole:
		return &e.Role
	case auditTenant:
		return &e.Tenant
	case auditAction:
		return &e.Action
	case auditTarget:
		return &e.Target
	case auditResult:
		return &e.Result
	case auditMessage:
		return &e.Message
	case auditPeer:
		return &e.Peer
	}
	return nil
}
