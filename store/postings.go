package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
)

// An index bucket holds, for each indexed value, the ids of its jobs in
// chunks (posting lists): the key of a chunk is the value's prefix (see
// indexPrefix) followed by the chunk's first id, and its value is the
// chunk's ids in ascending order, each after its length as a uvarint. The
// chunks of one value are contiguous, in id order, and disjoint: every id
// of a chunk sorts before the first id of the next.
//
// A job in a key of its own per index made each new job six puts; with
// chunks, a batch of a thousand jobs of one tenant, name and labels adds
// to a few chunks of each value, and a pass that dispatches 64 jobs
// rewrites one or two chunks of a state instead of deleting and putting
// 128 keys. A change of one job rewrites the chunks it touches, at most
// chunkIDs ids each.

// chunkIDs is the most ids a chunk holds: with ids stored after the prefix
// they share with the one before (encodeIDs), a chunk of ULIDs made close
// together is well under a KiB, so that a rewrite copies little.
const chunkIDs = 128

// indexOp is one change to an index: add or remove one entry.
type indexOp struct {
	indexEntry
	add bool
}

// postingOp is one change to one value's ids: add or remove id.
type postingOp struct {
	id  []byte
	add bool
}

// indexWriter gathers the index changes of one request and writes them
// together (flush), so that the entries of many jobs that fall in one
// chunk rewrite it once.
type indexWriter struct {
	ops []indexOp
}

// put adds entries to their indexes.
func (w *indexWriter) put(entries []indexEntry) {
	for _, e := range entries {
		w.ops = append(w.ops, indexOp{e, true})
	}
}

// del removes entries from their indexes.
func (w *indexWriter) del(entries []indexEntry) {
	for _, e := range entries {
		w.ops = append(w.ops, indexOp{e, false})
	}
}

// move replaces old (the entries of a stored job) by next (those of its
// new version), touching only those that differ. Both are ordered as
// indexEntries returns them.
func (w *indexWriter) move(old, next []indexEntry) {
	for len(old) > 0 || len(next) > 0 {
		c := 0
		switch {
		case len(old) == 0:
			c = 1
		case len(next) == 0:
			c = -1
		default:
			c = compareEntries(old[0], next[0])
		}
		switch {
		case c < 0:
			w.ops, old = append(w.ops, indexOp{old[0], false}), old[1:]
		case c > 0:
			w.ops, next = append(w.ops, indexOp{next[0], true}), next[1:]
		default:
			old, next = old[1:], next[1:]
		}
	}
}

// flush writes the gathered changes in tx, in order: of several changes to
// one entry the last one holds. An error must abort the transaction.
//
// The changes are grouped by index and value without a comparison sort of
// them all: a new batch's thousands of entries fall in a few values, each
// in id order already, and the ids of a value are sorted only when they
// are not.
func (w *indexWriter) flush(tx *bolt.Tx) error {
	type group struct {
		kind   indexKind
		prefix []byte
		ops    []postingOp
	}
	var (
		groups []*group
		counts []int
		last   [numIndexes]int // 1 + the group of each kind's last op
		byKey  = make(map[string]int)
		of     = make([]int32, len(w.ops)) // each op's group
	)
	// Find each op's group and count them, then copy the ops into slices
	// of the right size.
	for i, op := range w.ops {
		g := last[op.kind] - 1
		if g < 0 || !bytes.Equal(groups[g].prefix, op.prefix()) {
			key := string(append([]byte{byte(op.kind)}, op.prefix()...))
			var ok bool
			if g, ok = byKey[key]; !ok {
				g = len(groups)
				byKey[key] = g
				groups = append(groups, &group{kind: op.kind, prefix: op.prefix()})
				counts = append(counts, 0)
			}
			last[op.kind] = g + 1
		}
		of[i] = int32(g)
		counts[g]++
	}
	for g, n := range counts {
		groups[g].ops = make([]postingOp, 0, n)
	}
	for i, op := range w.ops {
		groups[of[i]].ops = append(groups[of[i]].ops, postingOp{op.id(), op.add})
	}
	w.ops = nil
	slices.SortFunc(groups, func(a, b *group) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), bytes.Compare(a.prefix, b.prefix))
	})
	for _, g := range groups {
		if err := applyPostings(tx.Bucket(indexBuckets[g.kind]), g.prefix, lastByID(g.ops)); err != nil {
			return fmt.Errorf("index %s: %w", g.kind, err)
		}
	}
	return nil
}

// lastByID returns ops (of one value) in id order, with only the last op of
// each id.
func lastByID(ops []postingOp) []postingOp {
	byID := func(a, b postingOp) int { return bytes.Compare(a.id, b.id) }
	if !slices.IsSortedFunc(ops, byID) {
		slices.SortStableFunc(ops, byID) // stable: the last op of an id stays last
	}
	out := ops[:0]
	for i, op := range ops {
		if i+1 < len(ops) && bytes.Equal(op.id, ops[i+1].id) {
			continue
		}
		out = append(out, op)
	}
	return out
}

// applyPostings applies ops, all of one value (prefix) and in id order, to
// the value's chunks in b, one chunk at a time: the ops that fall in a
// chunk's range are merged into it and the chunk is written back, split
// when it grows past chunkIDs.
func applyPostings(b *bolt.Bucket, prefix []byte, ops []postingOp) error {
	for len(ops) > 0 {
		ch := findChunk(b.Cursor(), prefix, ops[0].id)
		n := len(ops)
		if ch.upper != nil {
			n, _ = slices.BinarySearchFunc(ops, ch.upper, func(op postingOp, upper []byte) int {
				return bytes.Compare(op.id, upper)
			})
		}
		ids, err := decodeChunk(bytes.Clone(ch.val))
		if err != nil {
			return fmt.Errorf("chunk %q: %w", ch.key, err)
		}
		merged := mergeChunk(ids, ops[:n])
		ops = ops[n:]
		if err := writeChunk(b, prefix, ch.key, merged); err != nil {
			return err
		}
	}
	return nil
}

// chunk is where findChunk found an id's chunk: its key and value (nil when
// the value has no chunk yet), and upper, the first id of the next chunk of
// the value (nil: none).
type chunk struct {
	key, val, upper []byte
}

// findChunk returns the chunk of prefix that holds id or would: the last
// one whose first id is at most id, or else the value's first chunk. The
// key and upper are copies; the value is valid until the bucket changes.
func findChunk(c *bolt.Cursor, prefix, id []byte) chunk {
	key, val, next := locateChunk(c, append(slices.Clip(prefix), id...), len(prefix))
	if key == nil {
		return chunk{}
	}
	ch := chunk{key: bytes.Clone(key), val: val}
	if next != nil && bytes.HasPrefix(next, prefix) {
		ch.upper = bytes.Clone(next[len(prefix):])
	}
	return ch
}

// locateChunk is findChunk for seek, a value's prefix (its first plen
// bytes) followed by an id: it returns the chunk's key and value and the
// key after it (of any value, or nil), all valid until the bucket changes
// or the cursor moves.
func locateChunk(c *bolt.Cursor, seek []byte, plen int) (key, val, next []byte) {
	prefix := seek[:plen]
	k, v := c.Seek(seek)
	if k != nil && bytes.Equal(k, seek) {
		next, _ = c.Next()
		return k, v, next
	}
	// k is the first key after id, or nil; the chunk before it holds id
	// when it is of the value.
	pk, pv := keyBefore(c, k)
	switch {
	case pk != nil && bytes.HasPrefix(pk, prefix):
		return pk, pv, k
	case k != nil && bytes.HasPrefix(k, prefix):
		// id comes before the value's first chunk, which takes it.
		c.Seek(k)
		next, _ = c.Next()
		return k, v, next
	}
	return nil, nil, nil
}

// keyBefore moves c back from k, the key it is at (nil: past the last
// one), and returns the key before it, or nil when there is none. In a
// write transaction bbolt's cursor can step into a leaf whose keys the
// transaction deleted (it is merged away only at the commit): Last then
// never returns when every leaf is such, and Prev returns nil although
// earlier keys exist. So a nil is checked against First, and only when
// an emptied leaf was in the way does keyBefore walk forward from the
// first key.
func keyBefore(c *bolt.Cursor, k []byte) (pk, pv []byte) {
	if k == nil {
		if first, _ := c.First(); first == nil {
			return nil, nil // the bucket is empty
		}
		return c.Last()
	}
	if pk, pv = c.Prev(); pk != nil {
		return pk, pv
	}
	first, fv := c.First()
	if first == nil || bytes.Compare(first, k) >= 0 {
		return nil, nil // k is the first key
	}
	pk, pv = first, fv
	for nk, nv := c.Next(); nk != nil && bytes.Compare(nk, k) < 0; nk, nv = c.Next() {
		pk, pv = nk, nv
	}
	return pk, pv
}

// mergeChunk applies ops (in id order) to ids (in id order): an add inserts
// an id that is missing, a removal drops one that is there.
func mergeChunk(ids [][]byte, ops []postingOp) [][]byte {
	out := make([][]byte, 0, len(ids)+len(ops))
	i := 0
	for _, op := range ops {
		id := op.id
		for i < len(ids) && bytes.Compare(ids[i], id) < 0 {
			out = append(out, ids[i])
			i++
		}
		present := i < len(ids) && bytes.Equal(ids[i], id)
		if present {
			i++
		}
		if op.add {
			out = append(out, id)
		}
	}
	return append(out, ids[i:]...)
}

// writeChunk stores ids, the new content of the chunk that was at key (nil:
// none), as chunks of at most chunkIDs ids of equal size: a chunk grown by
// appends is split into nearly full ones, and one grown by a single id into
// halves. A chunk left empty is deleted.
func writeChunk(b *bolt.Bucket, prefix, key []byte, ids [][]byte) error {
	if key != nil && (len(ids) == 0 || !bytes.Equal(key[len(prefix):], ids[0])) {
		if err := b.Delete(key); err != nil {
			return err
		}
	}
	pieces := (len(ids) + chunkIDs - 1) / chunkIDs
	for p := range pieces {
		lo, hi := p*len(ids)/pieces, (p+1)*len(ids)/pieces
		k := append(slices.Clip(prefix), ids[lo]...)
		if err := b.Put(k, encodeIDs(ids[lo:hi])); err != nil {
			return err
		}
	}
	return nil
}

// encodeIDs returns the value of a chunk of ids (in order): each id as the
// length of the prefix it shares with the one before, then the length of
// the rest and the rest. Ids made together (ULIDs of one batch) share all
// but their last few bytes, so that an id costs a few bytes, not 26.
func encodeIDs(ids [][]byte) []byte {
	shared := func(i int) int {
		if i == 0 {
			return 0
		}
		prev, id := ids[i-1], ids[i]
		n := 0
		for n < len(prev) && n < len(id) && prev[n] == id[n] {
			n++
		}
		return n
	}
	size := 0
	for i, id := range ids {
		s := shared(i)
		size += protowire.SizeVarint(uint64(s)) + protowire.SizeBytes(len(id)-s)
	}
	out := make([]byte, 0, size)
	for i, id := range ids {
		s := shared(i)
		out = binary.AppendUvarint(out, uint64(s))
		out = binary.AppendUvarint(out, uint64(len(id)-s))
		out = append(out, id[s:]...)
	}
	return out
}

// chunkReader reads the ids of a chunk's value in order. The id it holds
// is overwritten by the next one.
type chunkReader struct {
	v, id []byte
	err   error
}

// next reads the next id, and reports whether there was one; a malformed
// value sets err.
func (r *chunkReader) next() bool {
	if len(r.v) == 0 || r.err != nil {
		return false
	}
	shared, w := binary.Uvarint(r.v)
	if w <= 0 || shared > uint64(len(r.id)) {
		r.err = errors.New("malformed chunk")
		return false
	}
	r.v = r.v[w:]
	n, w := binary.Uvarint(r.v)
	if w <= 0 || n > uint64(len(r.v)-w) || shared+n == 0 {
		r.err = errors.New("malformed chunk")
		return false
	}
	r.id = append(r.id[:shared], r.v[w:w+int(n)]...)
	r.v = r.v[w+int(n):]
	return true
}

// chunkLen is the number of ids of a chunk's value, read without copying
// them.
func chunkLen(v []byte) (int, error) {
	n := 0
	for len(v) > 0 {
		_, w := binary.Uvarint(v)
		if w <= 0 {
			return 0, errors.New("malformed chunk")
		}
		l, w2 := binary.Uvarint(v[w:])
		if w2 <= 0 || l > uint64(len(v)-w-w2) {
			return 0, errors.New("malformed chunk")
		}
		v = v[w+w2+int(l):]
		n++
	}
	return n, nil
}

// decodeChunk returns the ids of a chunk's value, in one new allocation:
// a first pass reads their lengths, so that the buffer is made at its size.
func decodeChunk(v []byte) ([][]byte, error) {
	n, size := 0, 0
	r := chunkReader{v: v}
	for r.next() {
		n++
		size += len(r.id)
	}
	if r.err != nil {
		return nil, r.err
	}
	buf := make([]byte, 0, size)
	ids := make([][]byte, 0, n)
	r = chunkReader{v: v, id: r.id[:0]}
	for r.next() {
		start := len(buf)
		buf = append(buf, r.id...)
		ids = append(ids, buf[start:len(buf):len(buf)])
	}
	return ids, nil
}

// postingProbe looks ids up in an index bucket, reusing its buffers and
// cursor from one lookup to the next, so that a listing that checks a
// filter for each of its candidates allocates nothing per candidate.
type postingProbe struct {
	b        *bolt.Bucket
	c        *bolt.Cursor
	seek, id []byte
}

// has reports whether the index bucket b holds id under prefix.
func (p *postingProbe) has(b *bolt.Bucket, prefix, id []byte) bool {
	if p.b != b {
		p.b, p.c = b, b.Cursor()
	}
	p.seek = append(append(p.seek[:0], prefix...), id...)
	_, val, _ := locateChunk(p.c, p.seek, len(prefix))
	r := chunkReader{v: val, id: p.id[:0]}
	defer func() { p.id = r.id }()
	for r.next() {
		switch c := bytes.Compare(r.id, id); {
		case c == 0:
			return true
		case c > 0:
			return false
		}
	}
	return false
}

// eachPosting calls fn with every (prefix, id) of the index bucket b of
// kind, checking that the chunks are well formed: not empty, keyed by their
// first id, ascending, and disjoint from the next chunk of the value.
func eachPosting(kind indexKind, b *bolt.Bucket, fn func(prefix, id []byte)) error {
	var lastPrefix, lastID []byte
	return b.ForEach(func(k, v []byte) error {
		prefix, first, err := parseIndexKey(kind, k)
		if err != nil {
			return err
		}
		ids, err := decodeChunk(v)
		switch {
		case err != nil:
			return fmt.Errorf("index %s: chunk %q: %w", kind, k, err)
		case len(ids) == 0:
			return fmt.Errorf("index %s: chunk %q is empty", kind, k)
		case !bytes.Equal(ids[0], first):
			return fmt.Errorf("index %s: chunk %q starts with %q", kind, k, ids[0])
		}
		if !bytes.Equal(prefix, lastPrefix) {
			lastPrefix, lastID = prefix, nil
		}
		for _, id := range ids {
			if lastID != nil && bytes.Compare(id, lastID) <= 0 {
				return fmt.Errorf("index %s: chunk %q: id %q out of order", kind, k, id)
			}
			fn(prefix, id)
			lastID = id
		}
		return nil
	})
}

// postingCursor walks the ids of one value (prefix) of an index bucket in
// either direction, one chunk at a time. It is for read transactions: it
// keeps the chunk's value, which bbolt keeps valid for the transaction.
// The head of a chunk is found by scanning it with one buffer; the chunk
// is decoded into ids (copies) only once the walk moves past its head, so
// that a merge of many runs, most of which never give an id to the page,
// decodes one chunk, not one per run.
type postingCursor struct {
	c      *bolt.Cursor
	prefix []byte
	desc   bool
	raw    []byte   // the current chunk's value
	first  []byte   // its head: the first id in walk order, or nil at the end
	ids    [][]byte // once decoded: the ids after first, in walk order
	err    error    // a malformed chunk; the walk is over
}

// newPostingCursor returns a cursor at the first id of prefix in b that
// comes after after in the walk's order (the first of all when after is
// nil): ascending, the first id greater than it; with desc, the first
// smaller one.
func newPostingCursor(b *bolt.Bucket, prefix, after []byte, desc bool) *postingCursor {
	p := &postingCursor{c: b.Cursor(), prefix: prefix, desc: desc}
	var k, v []byte
	switch {
	case after != nil:
		// The chunk that holds after or would: the walk starts in it.
		ch := findChunk(p.c, prefix, after)
		if ch.key == nil {
			return p
		}
		k, v = p.c.Seek(ch.key)
	case desc:
		k, v = seekLast(p.c, prefix)
	default:
		k, v = p.c.Seek(prefix)
	}
	p.load(k, v)
	for after != nil && p.head() != nil {
		if c := bytes.Compare(p.head(), after); desc && c < 0 || !desc && c > 0 {
			break
		}
		p.advance()
	}
	return p
}

// newPostingCursorFrom returns an ascending cursor at the first id of
// prefix in b that is not less than from.
func newPostingCursorFrom(b *bolt.Bucket, prefix, from []byte) *postingCursor {
	p := &postingCursor{c: b.Cursor(), prefix: prefix}
	ch := findChunk(p.c, prefix, from)
	if ch.key == nil {
		return p
	}
	p.load(p.c.Seek(ch.key))
	for p.head() != nil && bytes.Compare(p.head(), from) < 0 {
		p.advance()
	}
	return p
}

// seekLast moves c to the last key that starts with prefix and returns it,
// or nil when there is none.
func seekLast(c *bolt.Cursor, prefix []byte) (k, v []byte) {
	if end := prefixEnd(prefix); end != nil {
		if k, _ = c.Seek(end); k != nil {
			k, v = c.Prev()
		} else {
			k, v = c.Last()
		}
	} else {
		k, v = c.Last()
	}
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return nil, nil
	}
	return k, v
}

// prefixEnd returns the smallest key greater than every key that starts
// with prefix, or nil when there is none (prefix is all 0xff bytes).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// load makes the chunk k, v current when it is of the prefix, finding its
// head; otherwise the walk is over.
func (p *postingCursor) load(k, v []byte) {
	p.raw, p.first, p.ids = nil, nil, nil
	if k == nil || !bytes.HasPrefix(k, p.prefix) {
		return
	}
	r := chunkReader{v: v}
	for r.next() {
		if !p.desc {
			break // the first id is the head
		}
	}
	if r.err != nil {
		p.err = fmt.Errorf("chunk %q: %w", k, r.err)
		return
	}
	p.raw, p.first = v, r.id
}

// head returns the id at the cursor, or nil at the end of the walk.
func (p *postingCursor) head() []byte { return p.first }

// advance moves to the next id, decoding the current chunk the first time
// it moves past its head, and loading the next chunk of the value when
// the current one is done.
func (p *postingCursor) advance() {
	if p.first == nil || p.err != nil {
		p.first = nil
		return
	}
	if p.ids == nil && p.raw != nil {
		ids, err := decodeChunk(p.raw)
		if err != nil {
			p.err, p.first = err, nil
			return
		}
		if p.desc {
			slices.Reverse(ids)
		}
		p.ids, p.raw = ids[1:], nil
	}
	if len(p.ids) > 0 {
		p.first, p.ids = p.ids[0], p.ids[1:]
		return
	}
	var k, v []byte
	if p.desc {
		k, v = p.c.Prev()
	} else {
		k, v = p.c.Next()
	}
	p.load(k, v)
}
