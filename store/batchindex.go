package store

import (
	"bytes"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
)

// The index entries of new jobs and of a commit's requests: gathered
// before or during the transaction, written once at its end (see
// postings.go for the chunks they go to).

// indexAdds gathers the entries a batch of new jobs adds, grouped by index
// and value as they are made, so that a batch of a thousand jobs that share
// their tenant, name and labels is a few groups of a thousand ids, with no
// key made per entry and no sort (new ids ascend). Its flush writes them.
//
// job only notes each entry's group (refs); the groups' ids are copied
// into slices of their final size when they are first needed (ids), so
// that a thousand jobs cost one slice per group rather than one grown by
// doubling.
type indexAdds struct {
	groups []*addGroup
	byKind [numIndexes][]*addGroup // looked through in order: few per kind
	byKey  map[addKey]*addGroup    // once a kind has many
	refs   []addRef                // the entries noted since ids last ran
}

// addKey is an indexed value: its index and parts.
type addKey struct {
	kind   indexKind
	v1, v2 string
}

type addGroup struct {
	addKey
	prefix []byte
	n      int         // its entries in refs
	ops    []postingOp // adds, once ids ran
	// chunks, when set, are ops as full chunks, encoded by encode before
	// the transaction: flush puts them as they are when the ids fall
	// between the value's stored chunks (inGap).
	chunks [][]byte
}

// addRef is one entry noted by job: its group and id.
type addRef struct {
	g  *addGroup
	id []byte
}

// manyGroups is how many values of one index indexAdds looks through
// before it uses a map.
const manyGroups = 8

// job notes the entries of new job j, checking that bbolt can store each
// as a key, as checkIndexKeys does.
func (a *indexAdds) job(j *job.Job) error {
	id := []byte(j.ID)
	add := func(kind indexKind, v1, v2 string) error {
		g := a.group(addKey{kind, v1, v2})
		if len(g.prefix)+len(id) > bolt.MaxKeySize {
			return job.Invalid(kind.field(), "is too long to index (%d bytes with the id; at most %d)", len(g.prefix)+len(id), bolt.MaxKeySize)
		}
		g.n++
		a.refs = append(a.refs, addRef{g, id})
		return nil
	}
	for _, v := range [...]struct {
		kind  indexKind
		value string
	}{{indexArray, j.Spec.Array}, {indexPipeline, j.Spec.Pipeline}, {indexName, j.Spec.Name}} {
		if v.value != "" {
			if err := add(v.kind, v.value, ""); err != nil {
				return err
			}
		}
	}
	for k, v := range j.Spec.Labels {
		if err := add(indexLabel, k, v); err != nil {
			return err
		}
	}
	if j.Spec.Tenant != "" {
		if err := add(indexTenant, j.Spec.Tenant, ""); err != nil {
			return err
		}
	}
	return add(indexState, stateValue(j.State), "")
}

// ids moves the noted entries into their groups' ops, in order.
func (a *indexAdds) ids() {
	for _, g := range a.groups {
		if need := len(g.ops) + g.n; cap(g.ops) < need {
			g.ops = slices.Grow(g.ops, g.n)
		}
		g.n = 0
	}
	for _, r := range a.refs {
		r.g.ops = append(r.g.ops, postingOp{r.id, true})
	}
	a.refs = nil
}

// group returns the group of a value, making it.
func (a *indexAdds) group(k addKey) *addGroup {
	gs := a.byKind[k.kind]
	if len(gs) <= manyGroups {
		for _, g := range gs {
			if g.addKey == k {
				return g
			}
		}
	} else if g := a.byKey[k]; g != nil {
		return g
	}
	g := &addGroup{addKey: k}
	if k.kind == indexLabel {
		g.prefix = indexPrefix(k.v1, k.v2)
	} else {
		g.prefix = indexPrefix(k.v1)
	}
	a.groups = append(a.groups, g)
	a.byKind[k.kind] = append(gs, g)
	switch n := len(gs) + 1; {
	case n == manyGroups+1:
		// From now on the kind's groups are found in the map: put them
		// all there, once.
		if a.byKey == nil {
			a.byKey = make(map[addKey]*addGroup)
		}
		for _, g := range a.byKind[k.kind] {
			a.byKey[g.addKey] = g
		}
	case n > manyGroups+1:
		a.byKey[k] = g
	}
	return g
}

// join appends the entries of b, of jobs that come after a's.
func (a *indexAdds) join(b *indexAdds) {
	b.ids()
	a.ids()
	for _, g := range b.groups {
		mine := a.group(g.addKey)
		mine.ops = append(mine.ops, g.ops...)
	}
}

// encode makes the chunks of the groups large enough to fill some, whose
// ids ascend, so that the commit only puts them: the work of a batch's
// index entries is then done before its transaction, outside the store's
// one writer. A smaller group is merged into the value's last chunk in the
// commit, so that single submits do not each make a chunk.
func (a *indexAdds) encode() {
	a.ids()
	for _, g := range a.groups {
		if len(g.ops) < chunkIDs/2 || !slices.IsSortedFunc(g.ops, func(x, y postingOp) int {
			if bytes.Compare(x.id, y.id) >= 0 {
				return 1 // not strictly ascending
			}
			return -1
		}) {
			continue
		}
		ids := make([][]byte, len(g.ops))
		for i, op := range g.ops {
			ids[i] = op.id
		}
		pieces := (len(ids) + chunkIDs - 1) / chunkIDs
		for p := range pieces {
			g.chunks = append(g.chunks, encodeIDs(ids[p*len(ids)/pieces:(p+1)*len(ids)/pieces]))
		}
	}
}

// flush writes the groups whose chunks were made before the transaction
// and whose ids fall in a gap of the stored chunks (inGap); the entries of
// the others go to w, to be merged with the other changes of the commit.
// An error must abort the transaction.
func (a *indexAdds) flush(tx *bolt.Tx, w *indexWriter) error {
	a.ids()
	for _, g := range a.groups {
		b := tx.Bucket(indexBuckets[g.kind])
		if g.chunks != nil && inGap(b, g.prefix, g.ops[0].id, g.ops[len(g.ops)-1].id) {
			pieces := len(g.chunks)
			for p, v := range g.chunks {
				first := g.ops[p*len(g.ops)/pieces].id
				if err := b.Put(append(slices.Clip(g.prefix), first...), v); err != nil {
					return fmt.Errorf("index %s: %w", g.kind, err)
				}
			}
			continue
		}
		for _, op := range g.ops {
			key := append(slices.Clip(g.prefix), op.id...)
			w.ops = append(w.ops, indexOp{indexEntry{g.kind, key, len(g.prefix)}, true})
		}
	}
	return nil
}

// txIndex gathers the index changes of the requests of one commit, which
// the commit loop writes once all of them ran (flush): when many requests
// of one job each (concurrent submits, a pass's reports) share a commit,
// their entries of one value are merged into its chunks once, not once
// per request. A request adds its changes only once its checks passed, so
// that a request that fails alone leaves none.
type txIndex struct {
	adds []*indexAdds
	w    indexWriter
}

// flush writes the gathered changes in tx. An error must abort it.
func (t *txIndex) flush(tx *bolt.Tx) error {
	// New jobs' entries first: a later request of the commit may change or
	// remove them, and the writer keeps the last change of an entry.
	w := indexWriter{}
	for _, a := range t.adds {
		if err := a.flush(tx, &w); err != nil {
			return err
		}
	}
	w.ops = append(w.ops, t.w.ops...)
	t.adds, t.w.ops = nil, nil
	return w.flush(tx)
}

// inGap reports whether the ids from first to last (in order) fall
// between two chunks of prefix in the index bucket b (or before the first,
// or after the last, or the value has none), so that chunks of them can be
// put without touching the others: batches committed out of the order of
// their ids land in such gaps.
func inGap(b *bolt.Bucket, prefix, first, last []byte) bool {
	ch := findChunk(b.Cursor(), prefix, first)
	if ch.key == nil {
		return true // the value has no chunk
	}
	if start := ch.key[len(prefix):]; bytes.Compare(start, first) > 0 {
		// first is before the value's first chunk, which findChunk gave.
		return bytes.Compare(last, start) < 0
	}
	r := chunkReader{v: ch.val}
	var end []byte
	for r.next() {
		end = r.id
	}
	return r.err == nil && bytes.Compare(end, first) < 0 && (ch.upper == nil || bytes.Compare(last, ch.upper) < 0)
}
