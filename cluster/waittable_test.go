package cluster

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// TestWaitTableModel drives a waitTable with random adds and removes of
// ids of every length (ULIDs, short test ids, ids past what an entry holds
// in place, arbitrary bytes) and checks it against a map after every step:
// each id is found at its slot with its fields, no removed id is found,
// and the ids compare as strings do.
func TestWaitTableModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	base := "01JCZ3B8M1XKQ7H8Y3G6T9R2VW"
	newID := func(i int) string {
		switch rng.IntN(4) {
		case 0:
			return job.AddID(base, uint64(i))
		case 1:
			return "j" + strings.Repeat("x", rng.IntN(3)) + string(rune('a'+i%26)) + strconv.Itoa(i)
		case 2:
			return strings.Repeat("long-", 8+rng.IntN(8)) + strconv.Itoa(i) // past inlineID
		default:
			return string([]byte{0, 0xff, byte(i), byte(i >> 8), byte(i >> 16)}) + strconv.Itoa(i)
		}
	}
	selectors := []map[string]string{nil, {"gpu": "a100"}, {"zone": "b", "gpu": "a100"}}
	var tab waitTable
	model := map[string]slot{}
	var ids []string
	check := func() {
		t.Helper()
		if tab.len() != len(model) {
			t.Fatalf("table holds %d entries, model %d", tab.len(), len(model))
		}
		for id, want := range model {
			got, ok := tab.lookup(id)
			if !ok || got != want {
				t.Fatalf("lookup(%q) = %d, %v; want %d", id, got, ok, want)
			}
			if tab.id(got) != id {
				t.Fatalf("id(%d) = %q, want %q", got, tab.id(got), id)
			}
		}
	}
	for step := range 20_000 {
		if len(ids) == 0 || rng.IntN(10) < 6 {
			id := newID(step)
			if _, dup := model[id]; dup {
				continue
			}
			sel := selectors[rng.IntN(len(selectors))]
			w := &scheduler.Waiting{ID: id, Key: int64(step), Priority: int32(step % 1000), Selector: sel, Array: map[bool]string{true: base}[step%5 == 0]}
			s := tab.add(w, 0, uint64(step), false)
			e := tab.at(s)
			if e.key != int64(step) || e.version != uint64(step) || len(tab.selectors.get(e.selector)) != len(sel) || tab.arrays.get(e.array) != w.Array {
				t.Fatalf("entry of %q: %+v", id, e)
			}
			model[id] = s
			ids = append(ids, id)
		} else {
			i := rng.IntN(len(ids))
			id := ids[i]
			ids[i] = ids[len(ids)-1]
			ids = ids[:len(ids)-1]
			tab.remove(model[id])
			delete(model, id)
			if _, ok := tab.lookup(id); ok {
				t.Fatalf("removed %q still found", id)
			}
		}
		if step%997 == 0 {
			check()
		}
		if len(ids) >= 2 {
			a, b := ids[rng.IntN(len(ids))], ids[rng.IntN(len(ids))]
			if got, want := tab.cmpID(model[a], model[b]), strings.Compare(a, b); got != want {
				t.Fatalf("cmpID(%q, %q) = %d, want %d", a, b, got, want)
			}
		}
	}
	check()
	for _, id := range ids {
		tab.remove(model[id])
	}
	// Emptied, the table lets go of its memory: one spare chunk, the
	// smallest index, and no interned value.
	kept := 0
	for _, c := range tab.chunks {
		if c != nil {
			kept++
		}
	}
	if tab.len() != 0 || kept > 1 || len(tab.index.cells) > minCells || len(tab.long) != 0 ||
		len(tab.selectors.byKey) != 0 || len(tab.arrays.byKey) != 0 {
		t.Fatalf("empty table keeps %d entries, %d chunks, %d index cells, %d long ids, %d selectors, %d arrays",
			tab.len(), kept, len(tab.index.cells), len(tab.long), len(tab.selectors.byKey), len(tab.arrays.byKey))
	}
}

// TestWaitTableDrains checks that a backlog that drains in order gives its
// chunks back as it goes, and that slots freed are reused before new
// chunks are made.
func TestWaitTableDrains(t *testing.T) {
	var tab waitTable
	const n = 10 * chunkSize
	slots := make([]slot, n)
	base := "01JCZ3B8M1XKQ7H8Y3G6T9R2VW"
	for i := range n {
		slots[i] = tab.add(&scheduler.Waiting{ID: job.AddID(base, uint64(i))}, 0, 1, false)
	}
	if len(tab.chunks) != 10 {
		t.Fatalf("%d entries in %d chunks, want 10", n, len(tab.chunks))
	}
	for i := range n / 2 {
		tab.remove(slots[i])
	}
	held := 0
	for _, c := range tab.chunks {
		if c != nil {
			held++
		}
	}
	if held != 6 { // 5 with entries, 1 spare
		t.Fatalf("half drained: %d chunks held, want 6", held)
	}
	for i := range n / 2 {
		slots[i] = tab.add(&scheduler.Waiting{ID: job.AddID(base, uint64(n+i))}, 0, 1, false)
	}
	if len(tab.chunks) != 10 {
		t.Fatalf("refilled: %d chunks, want 10 (freed room reused)", len(tab.chunks))
	}
}

// TestLabelsKey checks that selectors that differ have different keys,
// even when their pairs run together the same.
func TestLabelsKey(t *testing.T) {
	for _, c := range [][2]map[string]string{
		{{"a": "bc"}, {"ab": "c"}},
		{{"a": "b", "c": "d"}, {"a": "b"}},
		{{"a": ""}, {}},
	} {
		if scheduler.SelectorKey(c[0]) == scheduler.SelectorKey(c[1]) {
			t.Errorf("%v and %v share key %q", c[0], c[1], scheduler.SelectorKey(c[0]))
		}
	}
	if scheduler.SelectorKey(map[string]string{"x": "1", "y": "2"}) != scheduler.SelectorKey(map[string]string{"y": "2", "x": "1"}) {
		t.Error("the same selector has two keys")
	}
}

// TestWaitingIDsOfAnyLength recovers waiting jobs whose ids are short,
// just fit an entry, just do not, are long or hold arbitrary bytes, all
// with the same key, and checks that they are dispatched in id order and
// each found by its id.
func TestWaitingIDsOfAnyLength(t *testing.T) {
	h := newHarness(t)
	ids := []string{
		"a", "\x00\xffbinary", strings.Repeat("m", inlineID), strings.Repeat("m", inlineID+1),
		strings.Repeat("z", 100), "01JCZ3B8M1XKQ7H8Y3G6T9R2VW", strings.Repeat("m", inlineID-1) + "\xff",
	}
	var jobs []*job.Job
	for _, id := range ids {
		spec := job.Spec{Command: []string{"true"}, Priority: job.DefaultPriority}
		spec.Normalize()
		jobs = append(jobs, &job.Job{ID: id, Spec: spec, State: job.Pending, Attempt: 1, CreatedAt: h.now})
	}
	if err := h.store.Insert(h.ctx, jobs); err != nil {
		t.Fatal(err)
	}
	h.restart()
	for _, id := range ids {
		if j := h.get(id); j.State != job.Pending {
			t.Fatalf("job %q is %s after recovery", id, j.State)
		}
	}
	h.worker("w1", 1, nil)
	var got []string
	for range ids {
		h.pass()
		checkWaiting(t, h.s)
		for _, a := range h.disp.takeAssigns() {
			got = append(got, a.job.ID)
			h.start(a.job)
			if _, err := h.finish(a.job, scheduler.Exited, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	if want := slices.Sorted(slices.Values(ids)); !slices.Equal(got, want) {
		t.Fatalf("dispatched %q, want %q", got, want)
	}
}

// TestCancelDuringBackoff cancels a job whose retry waits for its backoff
// among others that wait longer and shorter: the others start as their
// backoffs end, in that order, and the cancelled one never does.
func TestCancelDuringBackoff(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 3, nil)
	var jobs []*job.Job
	for i := range 3 {
		jobs = append(jobs, h.submit(job.Spec{Retries: 1, Backoff: time.Duration(i+1) * time.Second}))
	}
	h.pass()
	for _, j := range jobs {
		h.start(j)
		if _, err := h.finish(j, scheduler.Exited, 1); err != nil {
			t.Fatal(err)
		}
	}
	h.disp.takeAssigns()
	if _, err := h.s.Cancel(h.ctx, jobs[1].ID, ""); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 4 {
		next := h.pass()
		checkWaiting(t, h.s)
		for _, a := range h.disp.takeAssigns() {
			got = append(got, a.job.ID)
		}
		if next.IsZero() {
			break
		}
		h.now = next
	}
	if want := []string{jobs[0].ID, jobs[2].ID}; !slices.Equal(got, want) {
		t.Fatalf("after the backoffs dispatched %v, want %v", got, want)
	}
	h.wantState(jobs[1].ID, job.Cancelled)
}

// checkWaiting checks that every waiting entry is filed exactly once and
// where it says: each queue item and heap slot is a live entry of that
// place, and they add up to the entries the table holds.
func checkWaiting(t *testing.T, s *Cluster) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	filed := 0
	for name, q := range s.queues {
		n := 0
		for k, tr := range q.shapes {
			head, ok := tr.Min()
			if !ok || !q.heads.Has(head) {
				t.Errorf("queue %s: shape %v has head %v, not in heads (%v)", name, k, head, ok)
			}
			if e := s.wait.at(head.slot); s.shapeOf(e) != k {
				t.Errorf("queue %s: an entry of shape %v is filed under %v", name, s.shapeOf(e), k)
			}
			n += tr.Len()
		}
		if q.heads.Len() != len(q.shapes) || n != q.n {
			t.Errorf("queue %s: %d heads for %d shapes; %d entries, counted %d", name, q.heads.Len(), len(q.shapes), n, q.n)
		}
		q.each(func(it qitem) bool {
			e := s.wait.at(it.slot)
			if e.at != ready || e.key != it.key || s.tenantList[e.tenant].name != name {
				t.Errorf("queue %s holds slot %d (key %d), an entry %+v", name, it.slot, it.key, *e)
			}
			filed++
			return true
		})
	}
	for i, sl := range s.delayed.slots {
		if e := s.wait.at(sl); e.at != delayed || int(e.pos) != i {
			t.Errorf("delayed heap holds slot %d at %d, an entry %+v", sl, i, *e)
		}
		filed++
	}
	for id := range s.needs {
		if sl, ok := s.wait.lookup(id); !ok || s.wait.at(sl).at != blocked {
			t.Errorf("blocked job %s is not a blocked entry", id)
		}
		filed++
	}
	if filed != s.wait.len() {
		t.Errorf("%d entries filed, the table holds %d", filed, s.wait.len())
	}
}
