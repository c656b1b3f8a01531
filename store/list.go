package store

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
)

// How List and Count find the jobs of a filter. A listing walks runs of
// ids in order — the ids of one value of an index, or of several values
// merged (a name pattern's names, the states and finish minutes of a
// window) — or, with no filter an index serves, the jobs bucket itself;
// forward or, newest first, backward, from the page token. The other
// filters are checked per candidate: a filter of one index value by
// looking the id up in its chunks, the others (a name pattern or a window
// that is not walked, Since) on the job once it is read. So a page costs
// the walked runs up to its last job, and a listing newest first that has
// Since stops at the first id made before it.

// listCheckEvery is how many keys List and Count visit between checks of
// their context.
const listCheckEvery = 256

// maxUnion is the most index values one listing merges, and maxUnionScan
// the most values of the name index it looks at to find a pattern's: a
// filter that needs more is checked on each job instead.
const (
	maxUnion     = 256
	maxUnionScan = 4 * maxUnion
)

// Costs of Count, in units of its budget: visiting an id, looking one up
// in an index, reading a job.
const (
	countID    = 1
	countProbe = 8
	countRead  = 16
)

// source is one run of candidate ids: the ids of one value of an index.
type source struct {
	kind   indexKind
	prefix []byte
	// straddle marks a minute of the finished index that began before
	// Filter.NotFinishedBefore: some of its jobs finished before it, which
	// only their record tells.
	straddle bool
}

// listPlan is how List and Count find the jobs of a filter: the runs they
// walk (merged in id order; none: the jobs bucket), the index entries the
// other filters need (prefix+id must exist), and whether some filter can
// only be told from the job itself (residual).
type listPlan struct {
	f        job.Filter
	limit    int
	none     bool // the filter contradicts itself: nothing matches
	sources  []source
	checks   []indexEntry
	probes   []postingProbe // one per check
	residual bool
}

// planList chooses the runs a listing walks: the first filter given in
// the order array, pipeline, exact name, window (NotFinishedBefore), name
// pattern, label, tenant, state (or Finished). The order puts first the
// filters that usually select least: an array or a pipeline is one
// submission's jobs, a name one recurring job's runs; the window is what
// has not finished plus the last hour, where a label, a tenant or a state
// keep every job of theirs the retention keeps. A count of each candidate
// range would catch the exceptions but costs a walk of each; the order is
// right for the listings people run.
func planList(tx *bolt.Tx, f job.Filter) *listPlan {
	p := &listPlan{f: f, limit: f.PageSize()}
	if f.Finished && f.State != 0 && !f.State.Terminal() {
		p.none = true
		return p
	}
	walked := false
	single := func(kind indexKind, prefix []byte) {
		if walked {
			p.checks = append(p.checks, prefixEntry(kind, prefix))
			return
		}
		p.sources, walked = []source{{kind: kind, prefix: prefix}}, true
	}
	union := func(srcs []source, ok bool) {
		switch {
		case walked || !ok:
			p.residual = true
		case len(srcs) == 0:
			p.none = true // no value of the index is selected
		default:
			p.sources, walked = srcs, true
		}
	}
	if f.Array != "" {
		single(indexArray, indexPrefix(f.Array))
	}
	if f.Pipeline != "" {
		single(indexPipeline, indexPrefix(f.Pipeline))
	}
	lit, glob := job.NamePattern(f.Name)
	if f.Name != "" && !glob {
		single(indexName, indexPrefix(f.Name))
	}
	// The names a pattern selects come before the window: they are few
	// (at most maxUnion), where the window holds every unfinished job,
	// and the window is then checked on each of theirs (residual), so
	// that a count stays within its budget and exact.
	if glob {
		union(nameSources(tx, f.Name, lit))
	}
	// A state that has not finished is in the window whatever the time.
	if !f.NotFinishedBefore.IsZero() && (f.State == 0 || f.State.Terminal()) {
		union(windowSources(tx, f))
	}
	for _, k := range slices.Sorted(maps.Keys(f.Labels)) {
		single(indexLabel, indexPrefix(k, f.Labels[k]))
	}
	if f.Tenant != "" {
		single(indexTenant, indexPrefix(f.Tenant))
	}
	if f.State != 0 {
		single(indexState, indexPrefix(stateValue(f.State)))
	} else if f.Finished && f.NotFinishedBefore.IsZero() {
		union(stateSources(job.Completed, job.Failed, job.Cancelled), true)
	}
	return p
}

// prefixEntry is the range of a value in an index: an entry without an id.
func prefixEntry(kind indexKind, prefix []byte) indexEntry {
	return indexEntry{kind, prefix, len(prefix)}
}

// stateSources are the runs of states.
func stateSources(states ...job.State) []source {
	out := make([]source, len(states))
	for i, s := range states {
		out[i] = source{kind: indexState, prefix: indexPrefix(stateValue(s))}
	}
	return out
}

// windowSources are the runs of f's window: the states that have not
// finished (unless f wants finished jobs only) and the minutes of the
// finished index from NotFinishedBefore's on. ok is false when there are
// more than maxUnion.
func windowSources(tx *bolt.Tx, f job.Filter) (srcs []source, ok bool) {
	if f.State == 0 && !f.Finished {
		srcs = stateSources(job.Pending, job.Scheduled, job.Running)
	}
	from := indexPrefix(finishedValue(f.NotFinishedBefore))
	c := tx.Bucket(indexBuckets[indexFinished]).Cursor()
	for k, _ := c.Seek(from); k != nil; {
		prefix, _, err := parseIndexKey(indexFinished, k)
		if err != nil || len(prefix) != len(from) || len(srcs) == maxUnion {
			return nil, false
		}
		prefix = bytes.Clone(prefix)
		straddle := finishedMinute(prefix[1:]).Before(f.NotFinishedBefore)
		srcs = append(srcs, source{kind: indexFinished, prefix: prefix, straddle: straddle})
		k, _ = c.Seek(prefixEnd(prefix))
	}
	return srcs, true
}

// nameSources are the runs of the names in the index that pattern (a
// glob whose literal prefix is lit) selects. The index holds each length
// of name as a run of its own (keys start with the length), so it seeks
// lit in each length present. ok is false when the pattern selects more
// than maxUnion names or more than maxUnionScan names start with lit.
func nameSources(tx *bolt.Tx, pattern, lit string) (srcs []source, ok bool) {
	c := tx.Bucket(indexBuckets[indexName]).Cursor()
	scanned := 0
	for k, _ := c.First(); k != nil; {
		n, w := binary.Uvarint(k)
		if w <= 0 {
			return nil, false
		}
		length := bytes.Clone(k[:w])
		if n >= uint64(len(lit)) {
			start := append(slices.Clip(length), lit...)
			for k, _ := c.Seek(start); k != nil && bytes.HasPrefix(k, start); {
				prefix, _, err := parseIndexKey(indexName, k)
				if scanned++; err != nil || scanned > maxUnionScan {
					return nil, false
				}
				prefix = bytes.Clone(prefix)
				if job.NameMatches(pattern, string(prefix[w:])) {
					if len(srcs) == maxUnion {
						return nil, false
					}
					srcs = append(srcs, source{kind: indexName, prefix: prefix})
				}
				k, _ = c.Seek(prefixEnd(prefix))
			}
		}
		end := prefixEnd(length)
		if end == nil {
			break
		}
		k, _ = c.Seek(end)
	}
	return srcs, true
}

// run lists a page in tx. visit, when not nil, is a test hook called with
// the entries visited so far each time run checks ctx.
func (p *listPlan) run(ctx context.Context, tx *bolt.Tx, visit *func(int)) ([]*job.Job, string, error) {
	if p.none {
		return nil, "", nil
	}
	jobs := tx.Bucket(bucketJobs)
	f := &p.f
	var (
		out     []*job.Job
		next    string
		visited int
		failed  error
	)
	// take handles one candidate; it returns false to stop the walk.
	take := func(id, v []byte) bool {
		if visited++; visited%listCheckEvery == 0 {
			if visit != nil {
				(*visit)(visited)
			}
			if err := ctx.Err(); err != nil {
				failed = err
				return false
			}
		}
		if !f.Since.IsZero() && job.IDBefore(string(id), f.Since) {
			return !f.Desc // newest first, every id after it is older still
		}
		if len(out) == p.limit {
			next = out[len(out)-1].ID
			return false
		}
		if p.sources != nil {
			if !p.indexed(tx, id) {
				return true
			}
			if v = jobs.Get(id); v == nil {
				failed = fmt.Errorf("index entry of %q names no stored job", id)
				return false
			}
		}
		j, err := decodeJob(string(id), v)
		if err != nil {
			failed = fmt.Errorf("job %s: %w", id, err)
			return false
		}
		if f.Match(j) {
			out = append(out, j)
		}
		return true
	}
	var after []byte
	if f.After != "" {
		after = []byte(f.After)
	}
	if p.sources != nil {
		if err := p.merge(tx, after, func(id []byte, _ *source) bool { return take(id, nil) }); err != nil {
			return nil, "", err
		}
	} else {
		walkJobs(jobs.Cursor(), after, f.Desc, take)
	}
	if failed != nil {
		return nil, "", failed
	}
	return out, next, nil
}

// walkJobs calls take with the jobs bucket's keys and values after after
// (all when nil), in order or, with desc, backwards, until it returns
// false.
func walkJobs(c *bolt.Cursor, after []byte, desc bool, take func(k, v []byte) bool) {
	if !desc {
		k, v := c.Seek(after)
		if after != nil && bytes.Equal(k, after) {
			k, v = c.Next()
		}
		for ; k != nil && take(k, v); k, v = c.Next() {
		}
		return
	}
	var k, v []byte
	switch {
	case after == nil:
		k, v = c.Last()
	default:
		// The key before the first one at or past after.
		if k, _ = c.Seek(after); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	}
	for ; k != nil && take(k, v); k, v = c.Prev() {
	}
}

// merge calls yield with the ids of the plan's runs after after, merged
// in the listing's order (an id in two runs once), until it returns false.
// An id is valid only until yield returns.
func (p *listPlan) merge(tx *bolt.Tx, after []byte, yield func(id []byte, src *source) bool) error {
	h := &runHeap{desc: p.f.Desc}
	for i := range p.sources {
		s := &p.sources[i]
		c := newPostingCursor(tx.Bucket(indexBuckets[s.kind]), s.prefix, after, p.f.Desc)
		if c.err != nil {
			return fmt.Errorf("index %s: %w", s.kind, c.err)
		}
		if c.head() != nil {
			h.runs = append(h.runs, run{c, s})
		}
	}
	heap.Init(h)
	var last []byte
	for h.Len() > 0 {
		top := h.runs[0]
		id := top.c.head()
		dup := last != nil && bytes.Equal(id, last)
		last = append(last[:0], id...)
		if !dup && !yield(last, top.src) {
			return nil
		}
		top.c.advance()
		switch {
		case top.c.err != nil:
			return fmt.Errorf("index %s: %w", top.src.kind, top.c.err)
		case top.c.head() == nil:
			heap.Pop(h)
		default:
			heap.Fix(h, 0)
		}
	}
	return nil
}

// run is one run of a merge: its cursor and source.
type run struct {
	c   *postingCursor
	src *source
}

// runHeap orders runs by their next id, smallest first or, with desc,
// largest first.
type runHeap struct {
	runs []run
	desc bool
}

func (h *runHeap) Len() int { return len(h.runs) }
func (h *runHeap) Less(i, j int) bool {
	c := bytes.Compare(h.runs[i].c.head(), h.runs[j].c.head())
	if h.desc {
		return c > 0
	}
	return c < 0
}
func (h *runHeap) Swap(i, j int) { h.runs[i], h.runs[j] = h.runs[j], h.runs[i] }
func (h *runHeap) Push(x any)    { h.runs = append(h.runs, x.(run)) }
func (h *runHeap) Pop() any {
	r := h.runs[len(h.runs)-1]
	h.runs = h.runs[:len(h.runs)-1]
	return r
}

// indexed reports whether job id has the entry of every other filter.
func (p *listPlan) indexed(tx *bolt.Tx, id []byte) bool {
	if p.probes == nil {
		p.probes = make([]postingProbe, len(p.checks))
	}
	for i, c := range p.checks {
		if !p.probes[i].has(tx.Bucket(indexBuckets[c.kind]), c.prefix(), id) {
			return false
		}
	}
	return true
}

// countRun counts the ids of one value (prefix) of an index bucket,
// reading its chunks without decoding the ids, and stops once it passed
// limit.
func countRun(b *bolt.Bucket, prefix []byte, limit int) (int, error) {
	c := b.Cursor()
	n := 0
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && n <= limit; k, v = c.Next() {
		m, err := chunkLen(v)
		if err != nil {
			return 0, fmt.Errorf("chunk %q: %w", k, err)
		}
		n += m
	}
	return n, nil
}

// count counts the plan's jobs in tx, across all pages, spending at most
// budget units (countID, countProbe, countRead). The runs of a plan are
// disjoint (one index's values), so it counts each on its own, without
// merging, newest first when there is a Since to stop at. exact is false
// when the budget ran out; n is then what it had counted.
func (p *listPlan) count(ctx context.Context, tx *bolt.Tx, budget int) (n int, exact bool, err error) {
	if p.none {
		return 0, true, nil
	}
	jobs := tx.Bucket(bucketJobs)
	f := &p.f
	spent, visited := 0, 0
	over := false
	// take counts one candidate; it returns false to stop the run.
	take := func(id, v []byte, src *source) bool {
		if visited++; visited%listCheckEvery == 0 {
			if err = ctx.Err(); err != nil {
				return false
			}
		}
		if spent += countID; spent > budget {
			over = true
			return false
		}
		if !f.Since.IsZero() && job.IDBefore(string(id), f.Since) {
			return false // runs are walked newest first when there is a Since
		}
		if src != nil && len(p.checks) > 0 {
			spent += countProbe * len(p.checks)
			if !p.indexed(tx, id) {
				return true
			}
		}
		switch {
		case p.residual:
			if v == nil {
				v = jobs.Get(id)
			}
			spent += countRead
			j, derr := decodeJob(string(id), v)
			if derr != nil {
				err = fmt.Errorf("job %s: %w", id, derr)
				return false
			}
			if !f.Match(j) {
				return true
			}
		case src != nil && src.straddle:
			spent += countRead
			h, herr := readHeader(jobs.Get(id))
			if herr != nil {
				err = fmt.Errorf("job %s: %w", id, herr)
				return false
			}
			if h.Finished < f.NotFinishedBefore.UnixNano() {
				return true
			}
		}
		n++
		return true
	}
	desc := !f.Since.IsZero()
	if p.sources == nil {
		walkJobs(jobs.Cursor(), nil, desc, func(k, v []byte) bool { return take(k, v, nil) })
	}
	// Runs whose every id counts are counted chunk by chunk.
	plain := f.Since.IsZero() && len(p.checks) == 0 && !p.residual
	for i := range p.sources {
		s := &p.sources[i]
		if plain && !s.straddle {
			m, err := countRun(tx.Bucket(indexBuckets[s.kind]), s.prefix, budget-spent)
			if err != nil {
				return 0, false, fmt.Errorf("index %s: %w", s.kind, err)
			}
			n += m
			if spent += m * countID; spent > budget {
				return n, false, nil
			}
			continue
		}
		c := newPostingCursor(tx.Bucket(indexBuckets[s.kind]), s.prefix, nil, desc)
		for ; c.head() != nil && take(c.head(), nil, s); c.advance() {
		}
		if c.err != nil {
			return 0, false, fmt.Errorf("index %s: %w", s.kind, c.err)
		}
		if err != nil || over {
			break
		}
	}
	if err != nil {
		return 0, false, err
	}
	return n, !over, nil
}
