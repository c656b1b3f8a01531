package cluster

import (
	"bytes"
	"hash/maphash"
	"math"
	"math/bits"
	"strings"
	"unsafe"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// A backlog of a million waiting jobs must cost the garbage collector
// little. Every collection marks the whole live heap, and one comes each
// time the process has allocated about as much again, so a waiting job
// held as objects with pointers (its scheduler.Waiting, its id string, a
// map entry keyed by that string, a pointer in its queue's tree) makes
// every pass pay in marking for the size of the backlog. waitTable holds
// them by value instead, in memory the collector does not scan:
//
//   - entries live in chunks of chunkSize fixed-size entries that contain
//     no pointers: the id inline (up to inlineID bytes: ULIDs, task ids and
//     test ids; a longer one is kept aside in long), the tenant, selector
//     and array as small indexes into interned tables;
//   - the index from id to slot is an open-addressing table of integers;
//   - the tenants' queues are B-trees of (key, slot) pairs, and the
//     delayed heap a slice of slots.
//
// A collection then marks a few objects per chunk and per tree node, not
// several per job. Decide still sees scheduler.Waiting values: the queues
// make one for each entry it looks at (see Cluster.waitingOf), which costs
// what the pass looks at.
//
// A chunk whose entries have all left is released (one empty chunk is
// kept, so that a backlog hovering at a chunk's edge does not allocate one
// per job), and new entries go to the lowest chunk with room, so that a
// backlog that drains gives its memory back. The index shrinks as well.
//
// All of it is guarded by Cluster.mu.

// slot is a waiting entry's place in a waitTable.
type slot uint32

// noSlot is no entry.
const noSlot = slot(math.MaxUint32)

const (
	chunkBits = 8
	chunkSize = 1 << chunkBits
	// inlineID is the longest id an entry holds in place; it rounds the
	// entry up to 128 bytes.
	inlineID = 33
	// longID in entry.idLen says the id is in waitTable.long.
	longID = math.MaxUint8
)

// entry is one waiting job (or an array's unmaterialized tasks) as the
// queues need it, without pointers. Its fields are those of
// scheduler.Waiting, which see.
type entry struct {
	key, created, since, deadline int64
	res                           job.Resources
	version                       uint64
	priority, attempt, arrayLimit int32
	tenant                        uint32 // Cluster.tenantList
	selector                      uint32 // waitTable.selectors; 0: none
	array                         uint32 // waitTable.arrays; 0: none
	pos                           int32  // index in the delayed heap (delayed) or in its shape's parked list (parked)
	at                            where  // 0: the slot is free
	tasks                         bool   // stands for its array's unmaterialized tasks
	idLen                         uint8  // bytes of id in use, or longID
	id                            [inlineID]byte
}

// An entry must stay at 128 bytes: this fails to compile if it grows.
var _ [128 - unsafe.Sizeof(entry{})]struct{}

type chunk [chunkSize]entry

// waitTable holds the waiting entries; see above. Its zero value is
// ready to use.
type waitTable struct {
	chunks []*chunk // nil: released
	live   []int32  // entries in use, per chunk
	used   []int32  // entries handed out at least once since the chunk was allocated
	free   []int32  // head of each chunk's list of freed entries (-1: none); the list runs through entry.key
	room   []uint64 // bit c: chunk c has room (or is released)
	room0  int      // no word of room before this one has a bit set
	spare  int      // an empty chunk kept allocated; -1: none
	n      int      // entries in use

	index     idIndex
	long      map[slot][]byte // ids longer than inlineID
	selectors interned[map[string]string]
	arrays    interned[string]
}

// len returns the entries in use.
func (t *waitTable) len() int { return t.n }

// at returns the entry in slot s. The pointer is valid until s is
// removed.
func (t *waitTable) at(s slot) *entry {
	return &t.chunks[s>>chunkBits][s&(chunkSize-1)]
}

// add files w in a new entry and returns its slot; unless tasks, the
// entry is found by its id from then on (lookup). tenant is w.Tenant's
// index in Cluster.tenantList.
func (t *waitTable) add(w *scheduler.Waiting, tenant uint32, version uint64, tasks bool) slot {
	s := t.alloc()
	e := t.at(s)
	*e = entry{
		key: w.Key, created: w.Created, since: w.Since, deadline: w.Deadline,
		res: w.Resources, version: version,
		priority: w.Priority, attempt: w.Attempt, arrayLimit: w.ArrayLimit,
		tenant: tenant, pos: -1, at: ready, tasks: tasks,
	}
	if len(w.Selector) > 0 {
		e.selector = t.selectors.add(scheduler.SelectorKey(w.Selector), func() map[string]string { return cloneLabels(w.Selector) })
	}
	if w.Array != "" {
		e.array = t.arrays.add(w.Array, func() string { return strings.Clone(w.Array) })
	}
	if len(w.ID) <= inlineID {
		e.idLen = uint8(copy(e.id[:], w.ID))
	} else {
		e.idLen = longID
		if t.long == nil {
			t.long = make(map[slot][]byte)
		}
		t.long[s] = []byte(w.ID)
	}
	if !tasks {
		t.index.insert(w.ID, s)
	}
	return s
}

// remove frees slot s; the caller has taken it out of its queue or heap.
func (t *waitTable) remove(s slot) {
	e := t.at(s)
	if !e.tasks {
		t.index.remove(t, s)
	}
	t.selectors.drop(e.selector)
	t.arrays.drop(e.array)
	if e.idLen == longID {
		delete(t.long, s)
	}
	t.release(s)
}

// lookup returns the slot of the waiting job with id id.
func (t *waitTable) lookup(id string) (slot, bool) { return t.index.find(t, id) }

// idBytes returns the id of slot s, in the table's memory: read it, do
// not keep it.
func (t *waitTable) idBytes(s slot) []byte {
	e := t.at(s)
	if e.idLen == longID {
		return t.long[s]
	}
	return e.id[:e.idLen]
}

// id returns the id of slot s.
func (t *waitTable) id(s slot) string { return string(t.idBytes(s)) }

// cmpID compares the ids of two slots.
func (t *waitTable) cmpID(a, b slot) int { return bytes.Compare(t.idBytes(a), t.idBytes(b)) }

// alloc hands out a free slot, in the lowest chunk with room.
func (t *waitTable) alloc() slot {
	if t.chunks == nil {
		t.spare = -1
	}
	c := -1
	for ; t.room0 < len(t.room); t.room0++ {
		if w := t.room[t.room0]; w != 0 {
			c = t.room0*64 + bits.TrailingZeros64(w)
			break
		}
	}
	if c < 0 || c >= len(t.chunks) {
		c = len(t.chunks)
		t.chunks = append(t.chunks, nil)
		t.live = append(t.live, 0)
		t.used = append(t.used, 0)
		t.free = append(t.free, -1)
		if c/64 >= len(t.room) {
			t.room = append(t.room, 0)
		}
		t.setRoom(c)
	}
	if t.chunks[c] == nil {
		t.chunks[c] = new(chunk)
		t.used[c], t.free[c] = 0, -1
	}
	if c == t.spare {
		t.spare = -1
	}
	var off int32
	if f := t.free[c]; f >= 0 {
		off = f
		t.free[c] = int32(t.chunks[c][f].key)
	} else {
		off = t.used[c]
		t.used[c]++
	}
	t.live[c]++
	t.n++
	if t.live[c] == chunkSize {
		t.room[c/64] &^= 1 << (c % 64)
	}
	return slot(c<<chunkBits | int(off))
}

// release puts slot s back on its chunk's free list, and lets go of the
// chunk when it is empty.
func (t *waitTable) release(s slot) {
	c, off := int(s>>chunkBits), int32(s&(chunkSize-1))
	t.chunks[c][off] = entry{key: int64(t.free[c])}
	t.free[c] = off
	t.live[c]--
	t.n--
	t.setRoom(c)
	if t.live[c] > 0 {
		return
	}
	if t.spare < 0 {
		t.spare = c
		return
	}
	drop := max(c, t.spare)
	t.spare = min(c, t.spare)
	t.chunks[drop] = nil
	for last := len(t.chunks) - 1; last >= 0 && t.chunks[last] == nil; last-- {
		t.room[last/64] &^= 1 << (last % 64)
		t.chunks, t.live, t.used, t.free = t.chunks[:last], t.live[:last], t.used[:last], t.free[:last]
	}
}

func (t *waitTable) setRoom(c int) {
	t.room[c/64] |= 1 << (c % 64)
	t.room0 = min(t.room0, c/64)
}

// idIndex finds a waiting job's slot by its id: open addressing with
// linear probing over integers, so that the collector has nothing to
// scan. Each cell holds the high 32 bits of the id's hash (which also
// place it) and the slot + 1; 0 is an empty cell.
type idIndex struct {
	seed  maphash.Seed
	cells []uint64
	n     int
}

const minCells = 16

func (x *idIndex) hash(id string) uint64 { return maphash.String(x.seed, id) >> 32 }

func (x *idIndex) find(t *waitTable, id string) (slot, bool) {
	if x.n == 0 {
		return noSlot, false
	}
	h := x.hash(id)
	mask := uint64(len(x.cells) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		c := x.cells[i]
		if c == 0 {
			return noSlot, false
		}
		if s := slot(uint32(c) - 1); c>>32 == h && string(t.idBytes(s)) == id {
			return s, true
		}
	}
}

func (x *idIndex) insert(id string, s slot) {
	if x.cells == nil {
		x.seed = maphash.MakeSeed()
	}
	if (x.n+1)*4 > len(x.cells)*3 {
		x.resize(max(minCells, 2*len(x.cells)))
	}
	x.put(x.hash(id)<<32 | (uint64(s) + 1))
	x.n++
}

// put places a cell in the first empty cell from its home.
func (x *idIndex) put(c uint64) {
	mask := uint64(len(x.cells) - 1)
	i := c >> 32 & mask
	for x.cells[i] != 0 {
		i = (i + 1) & mask
	}
	x.cells[i] = c
}

// remove takes slot s out of the index; its id is still in the table.
func (x *idIndex) remove(t *waitTable, s slot) {
	id := t.idBytes(s)
	h := maphash.Bytes(x.seed, id) >> 32
	mask := uint64(len(x.cells) - 1)
	i := h & mask
	for x.cells[i] != h<<32|(uint64(s)+1) {
		i = (i + 1) & mask
	}
	// Shift back the cells of the run after i that may move closer to
	// their home (deletion without tombstones).
	for j := (i + 1) & mask; x.cells[j] != 0; j = (j + 1) & mask {
		home := x.cells[j] >> 32 & mask
		if (j-home)&mask >= (j-i)&mask {
			x.cells[i] = x.cells[j]
			i = j
		}
	}
	x.cells[i] = 0
	x.n--
	if len(x.cells) > minCells && x.n*8 < len(x.cells) {
		x.resize(len(x.cells) / 2)
	}
}

func (x *idIndex) resize(n int) {
	old := x.cells
	x.cells = make([]uint64, n)
	for _, c := range old {
		if c != 0 {
			x.put(c)
		}
	}
}

// interned is a table of values shared by many entries, found by a key and
// counted, so that a value no entry holds any more is dropped. Index 0 is
// no value.
type interned[T any] struct {
	vals  []T
	keys  []string
	refs  []int32
	byKey map[string]uint32
	free  []uint32
}

// add returns the index of the value of key, made by mk the first time.
func (t *interned[T]) add(key string, mk func() T) uint32 {
	if i, ok := t.byKey[key]; ok {
		t.refs[i]++
		return i
	}
	if t.byKey == nil {
		t.byKey = map[string]uint32{}
		t.vals, t.keys, t.refs = make([]T, 1), []string{""}, []int32{0}
	}
	var i uint32
	if n := len(t.free); n > 0 {
		i, t.free = t.free[n-1], t.free[:n-1]
	} else {
		i = uint32(len(t.vals))
		var zero T
		t.vals, t.keys, t.refs = append(t.vals, zero), append(t.keys, ""), append(t.refs, 0)
	}
	key = strings.Clone(key)
	t.vals[i], t.keys[i], t.refs[i] = mk(), key, 1
	t.byKey[key] = i
	return i
}

// drop lets go of one holder of index i.
func (t *interned[T]) drop(i uint32) {
	if i == 0 {
		return
	}
	if t.refs[i]--; t.refs[i] > 0 {
		return
	}
	delete(t.byKey, t.keys[i])
	var zero T
	t.vals[i], t.keys[i] = zero, ""
	t.free = append(t.free, i)
}

// key returns the key of the value at index i ("" for 0).
func (t *interned[T]) key(i uint32) string {
	if i == 0 {
		return ""
	}
	return t.keys[i]
}

// get returns the value at index i (the zero value for 0).
func (t *interned[T]) get(i uint32) T {
	if i == 0 {
		var zero T
		return zero
	}
	return t.vals[i]
}

// cloneLabels copies a selector and its strings, so that the one kept does
// not hold on to the record it was decoded from.
func cloneLabels(sel map[string]string) map[string]string {
	out := make(map[string]string, len(sel))
	for k, v := range sel {
		out[strings.Clone(k)] = strings.Clone(v)
	}
	return out
}
