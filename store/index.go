package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
)

// Secondary indexes of the jobs bucket, so that a filtered List costs what
// it returns rather than the whole bucket. Each filter of job.Filter has a
// bucket of its own. An entry of an index is
//
//	uvarint(len(value)) value id
//
// (a label's value is itself the two length-prefixed parts, key then
// value), and the bucket stores the entries of one value as chunks of ids
// keyed by the value's prefix and their first id (see postings.go). The
// length prefix, rather than a separator, keeps entries unambiguous: a job
// name may contain any byte (NUL included) and store ids are any bytes, so
// value+"\x00"+id could be the entry of two different (value, id) pairs.
//
// Empty values are not indexed (an empty filter field matches everything);
// every job has one state entry, and a finished one (terminal, with a
// FinishedAt) an entry under the minute it finished in (finishedValue), so
// that what finished in the last hour is a few values of that index. The indexes are written in the
// transaction that writes the job, through an indexWriter: insertion.put
// adds a new job's entries, applyOne replaces the entries that changed (a
// state change removes one and adds one), DeleteFinished removes them with
// the job. They are derived data: a file without them gets them at Open
// (ensureIndexes), and checkIndexes verifies them against the jobs.

// indexKind names one index; planList says which one a listing walks.
type indexKind int

const (
	indexArray indexKind = iota
	indexPipeline
	indexName
	indexLabel
	indexTenant
	indexState
	indexFinished
	numIndexes
)

// indexBuckets are the buckets of the indexes, by kind.
var indexBuckets = [numIndexes][]byte{
	indexArray:    []byte("index_array"),
	indexPipeline: []byte("index_pipeline"),
	indexName:     []byte("index_name"),
	indexLabel:    []byte("index_label"),
	indexTenant:   []byte("index_tenant"),
	indexState:    []byte("index_state"),
	indexFinished: []byte("index_finished"),
}

// oldIndexBuckets are the buckets of schema 2's indexes, a key per entry;
// the migration to schema 3 deletes them and Open builds indexBuckets.
var oldIndexBuckets = [][]byte{[]byte("jobs_by_array"), []byte("jobs_by_pipeline"), []byte("jobs_by_name"),
	[]byte("jobs_by_label"), []byte("jobs_by_tenant"), []byte("jobs_by_state")}

// indexParts is how many length-prefixed parts the value of a kind has.
func (k indexKind) parts() int {
	if k == indexLabel {
		return 2
	}
	return 1
}

func (k indexKind) String() string { return string(indexBuckets[k]) }

// indexPrefix returns the key prefix of a value: its parts, each after its
// length as a uvarint.
func indexPrefix(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += binary.MaxVarintLen64 + len(p)
	}
	b := make([]byte, 0, n+26) // room for a ULID
	for _, p := range parts {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}

// stateValue is the indexed value of a state: its number in decimal.
func stateValue(s job.State) string { return strconv.Itoa(int(s)) }

// finishedValue is the indexed value of a finish time: its Unix minute as
// 8 bytes, big-endian with the sign bit flipped, so that the values of the
// finished index sort by time and all have the same length (their keys
// then sort by minute too).
func finishedValue(t time.Time) string {
	m := t.Unix() / 60
	if t.Unix()%60 < 0 {
		m-- // floor, not truncation, before 1970
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(m)^1<<63)
	return string(b[:])
}

// finishedMinute is the start of the minute of a finishedValue.
func finishedMinute(v []byte) time.Time {
	return time.Unix(int64(binary.BigEndian.Uint64(v)^1<<63)*60, 0)
}

// indexEntry is one entry of one index: the value's prefix followed by the
// job's id.
type indexEntry struct {
	kind indexKind
	key  []byte
	plen int // the prefix's length
}

func (e indexEntry) prefix() []byte { return e.key[:e.plen] }
func (e indexEntry) id() []byte     { return e.key[e.plen:] }

// indexEntries returns the index keys of j, ordered by kind then key. The
// keys share one allocation.
func indexEntries(j *job.Job) []indexEntry {
	values := [...]struct {
		kind  indexKind
		value string
	}{{indexArray, j.Spec.Array}, {indexPipeline, j.Spec.Pipeline}, {indexName, j.Spec.Name}, {indexTenant, j.Spec.Tenant}}
	state := stateValue(j.State)
	finished := ""
	if j.State.Terminal() && !j.FinishedAt.IsZero() {
		finished = finishedValue(j.FinishedAt)
	}
	// Each part costs at most 3 bytes of length: values longer than 2 MiB
	// are refused by checkIndexKeys (bolt.MaxKeySize) anyway, and a few
	// more bytes only cost an allocation.
	size := 6 + len(state) + len(finished) + 2*len(j.ID)
	for _, v := range values {
		size += 3 + len(v.value) + len(j.ID)
	}
	for k, v := range j.Spec.Labels {
		size += 6 + len(k) + len(v) + len(j.ID)
	}
	buf := make([]byte, 0, size)
	out := make([]indexEntry, 0, 3+len(values)+len(j.Spec.Labels))
	add := func(kind indexKind, parts ...string) {
		start := len(buf)
		for _, p := range parts {
			buf = binary.AppendUvarint(buf, uint64(len(p)))
			buf = append(buf, p...)
		}
		plen := len(buf) - start
		buf = append(buf, j.ID...)
		out = append(out, indexEntry{kind, buf[start:len(buf):len(buf)], plen})
	}
	for _, v := range values {
		if v.value != "" {
			add(v.kind, v.value)
		}
	}
	for k, v := range j.Spec.Labels {
		add(indexLabel, k, v)
	}
	add(indexState, state)
	if finished != "" {
		add(indexFinished, finished)
	}
	slices.SortFunc(out, compareEntries)
	return out
}

func compareEntries(a, b indexEntry) int {
	if a.kind != b.kind {
		return int(a.kind) - int(b.kind)
	}
	return bytes.Compare(a.key, b.key)
}

// checkIndexKeys refuses a job whose index keys bbolt could not store, so
// that the job fails alone instead of aborting its commit. Validated specs
// are far below the limit.
func checkIndexKeys(entries []indexEntry) error {
	for _, e := range entries {
		if len(e.key) > bolt.MaxKeySize {
			return job.Invalid(e.kind.field(), "is too long to index (%d bytes with the id; at most %d)", len(e.key), bolt.MaxKeySize)
		}
	}
	return nil
}

// field is the job field a kind indexes, for errors.
func (k indexKind) field() string {
	switch k {
	case indexArray:
		return "array"
	case indexPipeline:
		return "pipeline"
	case indexName:
		return "name"
	case indexLabel:
		return "labels"
	case indexTenant:
		return "tenant"
	case indexFinished:
		return "finished"
	}
	return "state"
}

// storedIndex is a stored job as an Apply read it before its commit: the
// stored value (a copy) and its index keys.
type storedIndex struct {
	raw     []byte // the stored value the entries were read from, or nil
	version uint64 // or the version they are of (from Update.Prev), or 0
	entries []indexEntry
}

// matches reports whether the entries are those of cur, the value stored
// now at version.
func (s storedIndex) matches(cur []byte, version uint64) bool {
	switch {
	case s.entries == nil:
		return false
	case s.version != 0:
		return s.version == version
	}
	return s.raw != nil && bytes.Equal(cur, s.raw)
}

// readIndexed reads, in one read transaction on the caller's goroutine,
// the stored jobs that updates name (those without an error in errs) and
// their index keys, so that the commit loop, which runs one transaction at
// a time, does not decode them: it compares the value it finds with raw
// and decodes only a job written in between. A job it cannot read or
// decode is left to the commit loop, which reports it.
func (db *DB) readIndexed(updates []job.Update, errs []error) []storedIndex {
	out := make([]storedIndex, len(updates))
	read := false
	for i, u := range updates {
		switch {
		case errs[i] != nil:
		case u.Create:
			// A task made a job: nothing is stored under its id yet.
		case u.Prev != nil && u.Prev.Version != 0:
			// The writer has the version it read: its keys are the stored
			// ones as long as that version is (checked in the commit).
			out[i] = storedIndex{version: u.Prev.Version, entries: indexEntries(u.Prev)}
		default:
			read = true
		}
	}
	if !read {
		return out
	}
	_ = db.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		for i, u := range updates {
			if errs[i] != nil || u.Create || out[i].entries != nil {
				continue
			}
			v := b.Get([]byte(u.Next.ID))
			if v == nil {
				continue
			}
			entries, err := storedEntries(u.Next.ID, v)
			if err != nil {
				continue
			}
			out[i] = storedIndex{raw: bytes.Clone(v), entries: entries}
		}
		return nil
	})
	return out
}

// storedEntries returns the index keys of the job stored under id as v.
func storedEntries(id string, v []byte) ([]indexEntry, error) {
	j, err := decodeJob(id, v)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", id, err)
	}
	return indexEntries(j), nil
}

// ensureIndexes creates the index buckets that are missing and fills them
// from the stored jobs, decoding each once, in tx. It returns the names of
// the buckets it created and the number of jobs it read (0 when none was
// missing).
//
// The entries are gathered first and written in key order, as full
// chunks: a bucket created in the transaction is one node in memory until
// the commit splits it, and puts in job order would insert into the middle
// of it (one value's range before another's), moving the rest of the node
// each time — quadratic. Puts in key order append. The memory is that of
// the entries, about twice (here and in bbolt's nodes), until the commit.
func ensureIndexes(tx *bolt.Tx) (created []string, jobs int, err error) {
	var keys [numIndexes]*keyArena // nil: not missing
	for k := range numIndexes {
		if tx.Bucket(indexBuckets[k]) == nil {
			keys[k] = &keyArena{}
		}
	}
	for k, a := range keys {
		if a == nil {
			continue
		}
		if _, err := tx.CreateBucket(indexBuckets[k]); err != nil {
			return nil, 0, fmt.Errorf("create bucket %s: %w", indexKind(k), err)
		}
		created = append(created, indexKind(k).String())
	}
	if len(created) == 0 {
		return nil, 0, nil
	}
	err = tx.Bucket(bucketJobs).ForEach(func(id, v []byte) error {
		entries, err := storedEntries(string(id), v)
		if err != nil {
			return err
		}
		jobs++
		for _, e := range entries {
			if a := keys[e.kind]; a != nil {
				a.add(e.key)
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("backfill job indexes: %w", err)
	}
	for k, a := range keys {
		if a == nil {
			continue
		}
		if err := fillIndex(tx.Bucket(indexBuckets[k]), indexKind(k), a.sorted()); err != nil {
			return nil, 0, fmt.Errorf("backfill job indexes: index %s: %w", indexKind(k), err)
		}
		keys[k] = nil // its entries are in bbolt's nodes now
	}
	return created, jobs, nil
}

// fillIndex writes entries (keys of index kind, in order) into the empty
// bucket b as chunks of chunkIDs ids.
func fillIndex(b *bolt.Bucket, kind indexKind, keys [][]byte) error {
	var (
		prefix []byte
		ids    [][]byte
	)
	flush := func() error {
		for len(ids) > 0 {
			n := min(len(ids), chunkIDs)
			if err := b.Put(append(slices.Clip(prefix), ids[0]...), encodeIDs(ids[:n])); err != nil {
				return err
			}
			ids = ids[n:]
		}
		return nil
	}
	for _, key := range keys {
		p, id, err := parseIndexKey(kind, key)
		if err != nil {
			return err
		}
		if !bytes.Equal(p, prefix) {
			if err := flush(); err != nil {
				return err
			}
			prefix = p
		}
		ids = append(ids, id)
	}
	return flush()
}

// keyArena holds many keys in one buffer: key i is buf[ends[i-1]:ends[i]].
type keyArena struct {
	buf  []byte
	ends []int
}

func (a *keyArena) add(key []byte) {
	a.buf = append(a.buf, key...)
	a.ends = append(a.ends, len(a.buf))
}

// sorted returns the keys in order, as slices of the buffer.
func (a *keyArena) sorted() [][]byte {
	out := make([][]byte, len(a.ends))
	start := 0
	for i, end := range a.ends {
		out[i] = a.buf[start:end:end]
		start = end
	}
	a.ends = nil
	slices.SortFunc(out, bytes.Compare)
	return out
}

// parseIndexKey splits a key of index kind into its prefix (the value) and
// the job id.
func parseIndexKey(kind indexKind, key []byte) (prefix, id []byte, err error) {
	rest := key
	for range kind.parts() {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return nil, nil, fmt.Errorf("index %s: malformed key %q", kind, key)
		}
		rest = rest[w+int(n):]
	}
	if len(rest) == 0 {
		return nil, nil, fmt.Errorf("index %s: key %q has no job id", kind, key)
	}
	return key[:len(key)-len(rest)], rest, nil
}

// checkIndexes verifies, in tx, that every stored job has each of its
// index entries and that the indexes hold nothing else, in well-formed
// chunks. Indexes missing from the file (written before they existed; Open
// adds them) are not checked. Each job is decoded once; entries are
// compared by count, and only when the counts differ is every entry looked
// up, to name the stray ones.
func checkIndexes(tx *bolt.Tx) error {
	jobs := tx.Bucket(bucketJobs)
	if jobs == nil {
		return nil
	}
	var present [numIndexes]*bolt.Bucket
	some := false
	for k := range numIndexes {
		present[k] = tx.Bucket(indexBuckets[k])
		some = some || present[k] != nil
	}
	if !some {
		return nil
	}
	var (
		errs   []error
		want   [numIndexes]int
		probes [numIndexes]postingProbe
	)
	err := jobs.ForEach(func(id, v []byte) error {
		j, err := decodeJob(string(id), v)
		if err != nil {
			return fmt.Errorf("job %s: %w", id, err)
		}
		for _, e := range indexEntries(j) {
			b := present[e.kind]
			if b == nil {
				continue
			}
			want[e.kind]++
			if !probes[e.kind].has(b, e.prefix(), e.id()) {
				errs = append(errs, fmt.Errorf("index %s: job %s (%s) has no entry %q", e.kind, id, j.State, e.key))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for k, b := range present {
		if b == nil {
			continue
		}
		kind := indexKind(k)
		n := 0
		if err := eachPosting(kind, b, func(_, _ []byte) { n++ }); err != nil {
			errs = append(errs, err)
			continue
		}
		if n != want[kind] {
			errs = append(errs, fmt.Errorf("index %s: %d entries, want %d", kind, n, want[kind]))
			errs = append(errs, strayEntries(jobs, b, kind)...)
		}
	}
	return errors.Join(errs...)
}

// strayEntries returns an error for each entry of index kind (bucket b) that
// names no stored job or a job that does not have it.
func strayEntries(jobs, b *bolt.Bucket, kind indexKind) []error {
	var errs []error
	err := eachPosting(kind, b, func(prefix, id []byte) {
		key := append(slices.Clip(prefix), id...)
		v := jobs.Get(id)
		if v == nil {
			errs = append(errs, fmt.Errorf("index %s: entry %q names no stored job", kind, key))
			return
		}
		j, err := decodeJob(string(id), v)
		if err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", id, err))
			return
		}
		if !slices.ContainsFunc(indexEntries(j), func(e indexEntry) bool { return e.kind == kind && bytes.Equal(e.key, key) }) {
			errs = append(errs, fmt.Errorf("index %s: entry %q does not match job %s (%s)", kind, key, id, j.State))
		}
	})
	if err != nil {
		errs = append(errs, err)
	}
	return errs
}
