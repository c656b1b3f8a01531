package store

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// Schema versions:
//
//	1: values were the API's messages (hodeipb.Job, Pipeline, Worker,
//	   Tenant, TokenInfo, AgentRecord), keys included.
//	2: values are the store's own records (package record), keys left out.
//	3: the job indexes hold chunks of ids (postings.go) instead of a key
//	   per entry, in new buckets; the old ones are deleted and Open fills
//	   the new ones from the jobs.
//	4: adds the index of finish times (index_finished, by minute), which
//	   Open fills from the jobs; an older hodei, which would not keep it,
//	   refuses the file.
//
// A field added to a record with a zero value that means what its absence
// meant needs no new version: JobRecord.signal (20) reads as 0, "no
// signal", from records written before it, and a hodei that predates it
// skips it as an unknown field.
//
// Open migrates a file of an older schema in the transaction that opens it,
// so that a crash leaves it wholly old or wholly new. This is the only code
// that still reads the API's messages from disk.

// migrateChunk is how many values a migration decodes before it writes
// them back: bbolt forbids changing a bucket under a cursor that walks it.
const migrateChunk = 1024

// migrated counts the records a migration rewrote, by bucket.
type migrated struct {
	From                                              uint64 // the file's schema before
	Jobs, Pipelines, Workers, Tenants, Tokens, Agents int
}

// checkSchema checks the schema version of the file: it records this one in
// a new file, migrates a file of schema 1, and fails with ErrSchema on a
// file of a newer schema or one whose version cannot be read. It returns
// what it migrated, or nil.
func checkSchema(tx *bolt.Tx) (*migrated, error) {
	meta := tx.Bucket(bucketMeta)
	v := meta.Get(schemaKey)
	if v == nil {
		if name := firstRecord(tx); name != nil {
			return nil, fmt.Errorf("%w: the file holds %s but no schema version in its meta bucket: "+
				"it was not written by hodei, or is damaged; restore a snapshot", ErrSchema, name)
		}
		return nil, putSchema(meta)
	}
	if len(v) != 8 {
		return nil, fmt.Errorf("%w: the schema version in the meta bucket is %d bytes (%x), want 8: "+
			"the file is damaged or not a hodei database; restore a snapshot", ErrSchema, len(v), v)
	}
	switch got := binary.BigEndian.Uint64(v); {
	case got == SchemaVersion:
		return nil, nil
	case got > SchemaVersion:
		return nil, fmt.Errorf("%w: the file has schema version %d and this hodei knows up to %d: "+
			"run a hodei that knows schema %d, or restore a snapshot taken by this version", ErrSchema, got, SchemaVersion, got)
	case got >= 1 && got < SchemaVersion:
		m := &migrated{From: got}
		if got == 1 {
			var err error
			if m, err = migrateV1(tx); err != nil {
				return nil, fmt.Errorf("migrate schema 1 to %d (the file is left as it was): %w", SchemaVersion, err)
			}
		}
		if err := dropOldIndexes(tx); err != nil {
			return nil, fmt.Errorf("migrate schema %d to %d (the file is left as it was): %w", got, SchemaVersion, err)
		}
		return m, putSchema(meta)
	default:
		return nil, fmt.Errorf("%w: the file has schema version %d, which no hodei writes: "+
			"the file is damaged; restore a snapshot", ErrSchema, got)
	}
}

// dropOldIndexes deletes the index buckets of schema 2, if any; Open then
// builds the new ones (ensureIndexes).
func dropOldIndexes(tx *bolt.Tx) error {
	for _, name := range oldIndexBuckets {
		if tx.Bucket(name) == nil {
			continue
		}
		if err := tx.DeleteBucket(name); err != nil {
			return fmt.Errorf("delete bucket %s: %w", name, err)
		}
	}
	return nil
}

func putSchema(meta *bolt.Bucket) error {
	return meta.Put(schemaKey, binary.BigEndian.AppendUint64(nil, SchemaVersion))
}

// firstRecord returns the name of the first bucket holding a record, or nil
// when the file holds none.
func firstRecord(tx *bolt.Tx) []byte {
	for _, name := range allBuckets {
		if b := tx.Bucket(name); b != nil && !bytes.Equal(name, bucketMeta) {
			if k, _ := b.Cursor().First(); k != nil {
				return name
			}
		}
	}
	return nil
}

// migrateV1 rewrites every value of a schema-1 file as its record.
func migrateV1(tx *bolt.Tx) (*migrated, error) {
	m := &migrated{From: 1}
	steps := []struct {
		bucket []byte
		n      *int
		conv   func(v []byte) ([]byte, error)
	}{
		{bucketJobs, &m.Jobs, func(v []byte) ([]byte, error) {
			j, err := hodeipb.UnmarshalJob(v)
			if err != nil {
				return nil, err
			}
			return encodeJob(j, j.Version)
		}},
		{bucketPipelines, &m.Pipelines, func(v []byte) ([]byte, error) {
			p, err := hodeipb.UnmarshalPipeline(v)
			if err != nil {
				return nil, err
			}
			return encodePipeline(p)
		}},
		{bucketWorkers, &m.Workers, func(v []byte) ([]byte, error) {
			var pb hodeipb.Worker
			if err := proto.Unmarshal(v, &pb); err != nil {
				return nil, fmt.Errorf("decode worker: %w", err)
			}
			return encodeWorker(pb.ToWorker())
		}},
		{bucketTenants, &m.Tenants, func(v []byte) ([]byte, error) {
			var pb hodeipb.Tenant
			if err := proto.Unmarshal(v, &pb); err != nil {
				return nil, fmt.Errorf("decode tenant: %w", err)
			}
			return encodeTenant(pb.ToTenant())
		}},
		{bucketTokens, &m.Tokens, func(v []byte) ([]byte, error) {
			var pb hodeipb.TokenInfo
			if err := proto.Unmarshal(v, &pb); err != nil {
				return nil, fmt.Errorf("decode token: %w", err)
			}
			return encodeToken(pb.ToToken())
		}},
		{bucketAgents, &m.Agents, func(v []byte) ([]byte, error) {
			var pb hodeipb.AgentRecord
			if err := proto.Unmarshal(v, &pb); err != nil {
				return nil, fmt.Errorf("decode agent: %w", err)
			}
			return encodeAgent(pb.ToAgentBinding())
		}},
	}
	for _, s := range steps {
		n, err := rewrite(tx.Bucket(s.bucket), s.conv)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.bucket, err)
		}
		*s.n = n
	}
	return m, nil
}

// rewrite replaces every value of b with conv(value) and returns how
// many it replaced. It works migrateChunk values at a time: it decodes a
// chunk under a cursor, then writes it, then seeks past it.
func rewrite(b *bolt.Bucket, conv func(v []byte) ([]byte, error)) (int, error) {
	type kv struct{ k, v []byte }
	var (
		n     int
		after []byte
		chunk = make([]kv, 0, migrateChunk)
	)
	for {
		chunk = chunk[:0]
		c := b.Cursor()
		k, v := c.First()
		if after != nil {
			k, v = c.Seek(after)
			if k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		for ; k != nil && len(chunk) < migrateChunk; k, v = c.Next() {
			if v == nil {
				return n, fmt.Errorf("%q is a bucket, not a record", k)
			}
			enc, err := conv(v)
			if err != nil {
				return n, fmt.Errorf("%q: %w", k, err)
			}
			chunk = append(chunk, kv{bytes.Clone(k), enc})
		}
		for _, e := range chunk {
			if err := b.Put(e.k, e.v); err != nil {
				return n, fmt.Errorf("put %q: %w", e.k, err)
			}
		}
		n += len(chunk)
		if len(chunk) < migrateChunk {
			return n, nil
		}
		after = chunk[len(chunk)-1].k
	}
}
