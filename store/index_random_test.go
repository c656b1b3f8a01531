package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// randomWorld is the shared state of TestIndexRandom's workers: the ids
// that may be stored (a job whose insert failed may be listed; the
// operations on it then fail with NotFound) and the arrays.
type randomWorld struct {
	mu     sync.Mutex
	ids    []string
	arrays []*job.Array
}

func (w *randomWorld) addIDs(ids []string) {
	w.mu.Lock()
	w.ids = append(w.ids, ids...)
	w.mu.Unlock()
}

func (w *randomWorld) pick(r *rand.Rand, n int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ids) == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = w.ids[r.IntN(len(w.ids))]
	}
	return out
}

// Values chosen so that many are prefixes of others, hold NUL and multi-byte runes,
// or are long, as the index keys must keep them apart.
var (
	randNames   = []string{"", "x", "x\x00", "xy", "xÿ", "\x00", "\x01x", string(make([]byte, 300)), "name"}
	randTenants = []string{job.DefaultTenant, "a", "ab", "b"}
	randLabelKs = []string{"k", "k\x00", "kk", "", "ÿ"}
	randLabelVs = []string{"", "v", "v\x00", "vv", "\x01"}
	randPipes   = []string{"", "", "p", "p\x00", "pp"}
	idAlphabet  = []string{"\x00", "\x01", "a", "b", "\x7f", "é", "éa"}
)

// randomID returns an id that is not a ULID: a few bytes of a small
// alphabet, so that ids are often prefixes of each other. None starts
// with '0', so that none falls in an array's task range.
func randomID(r *rand.Rand) string {
	var b []byte
	for range 1 + r.IntN(6) {
		b = append(b, idAlphabet[r.IntN(len(idAlphabet))]...)
	}
	return string(b)
}

func randomSpec(r *rand.Rand) job.Spec {
	s := job.Spec{
		Name:     randNames[r.IntN(len(randNames))],
		Tenant:   randTenants[r.IntN(len(randTenants))],
		Pipeline: randPipes[r.IntN(len(randPipes))],
		Command:  []string{"true"},
		Priority: job.DefaultPriority,
	}
	if n := r.IntN(4); n > 0 {
		s.Labels = make(map[string]string, n)
		for range n {
			s.Labels[randLabelKs[r.IntN(len(randLabelKs))]] = randLabelVs[r.IntN(len(randLabelVs))]
		}
	}
	return s
}

// randomBatch returns new jobs: ULID-like ids in an ascending run that
// starts anywhere (so that batches interleave, land in gaps of each
// other's chunks, or overlap), or random bytes in no order; the jobs
// share their spec or not. Sometimes it repeats an id.
func randomBatch(r *rand.Rand, w *randomWorld) []*job.Job {
	n := []int{1, 2, 9, 63, 64, 65, 127, 128, 129, 300, 1100}[r.IntN(11)]
	ids := make([]string, n)
	if r.IntN(3) > 0 {
		start, step := r.IntN(1_000_000), []int{1, 1, 3, 1000}[r.IntN(4)]
		for i := range ids {
			ids[i] = fmt.Sprintf("01HY%022d", start+i*step)
		}
	} else {
		for i := range ids {
			ids[i] = randomID(r)
		}
	}
	if r.IntN(20) == 0 && n > 1 {
		ids[r.IntN(n)] = ids[r.IntN(n)]
	}
	if old := w.pick(r, 1); r.IntN(20) == 0 && old != nil {
		ids[r.IntN(n)] = old[0]
	}
	shared := randomSpec(r)
	same := r.IntN(3) > 0
	jobs := make([]*job.Job, n)
	for i, id := range ids {
		s := shared
		if !same {
			s = randomSpec(r)
		}
		jobs[i] = &job.Job{ID: id, Spec: s, State: job.Pending, Attempt: 1, CreatedAt: storetest.T0}
	}
	return jobs
}

// nextState returns a legal move from cur, changed as the cluster would.
func nextState(r *rand.Rand, cur *job.Job, now time.Time) *job.Job {
	n := cur.Clone()
	moves := map[job.State][]job.State{
		job.Pending:   {job.Scheduled, job.Scheduled, job.Cancelled, job.Failed},
		job.Scheduled: {job.Running, job.Pending, job.Completed, job.Failed, job.Cancelled},
		job.Running:   {job.Pending, job.Completed, job.Failed, job.Cancelled},
	}[cur.State]
	if len(moves) == 0 {
		return nil
	}
	n.State = moves[r.IntN(len(moves))]
	switch {
	case n.State == job.Pending:
		n.Attempt++
	case n.State.Terminal():
		n.FinishedAt = now
	}
	if r.IntN(10) == 0 {
		// A change of indexed fields besides the state: the store replaces
		// whatever entries differ.
		s := randomSpec(r)
		n.Spec.Name, n.Spec.Labels, n.Spec.Pipeline = s.Name, s.Labels, s.Pipeline
	}
	return n
}

func randomApply(ctx context.Context, r *rand.Rand, db *DB, w *randomWorld) {
	ids := w.pick(r, 1+r.IntN(80))
	if ids == nil {
		return
	}
	cur, err := db.GetMany(ctx, ids)
	mustNil(err)
	var updates []job.Update
	for _, c := range cur {
		if c == nil {
			continue
		}
		n := nextState(r, c, time.Now())
		if n == nil {
			continue
		}
		u := job.Update{Expect: c.Expected(), Next: n}
		switch r.IntN(3) {
		case 0:
			u.Prev = c
		case 1:
			// A Prev of another version: the store must not trust it.
			p := c.Clone()
			p.Version--
			u.Prev = p
		}
		updates = append(updates, u)
		if r.IntN(8) == 0 {
			// A second move of the same job in the same call.
			n.Version = c.Version + 1
			if n2 := nextState(r, n, time.Now()); n2 != nil {
				updates = append(updates, job.Update{Expect: n.Expected(), Next: n2})
			}
		}
	}
	if len(updates) == 0 {
		return
	}
	_, err = db.Apply(ctx, updates)
	mustNil(err)
}

// randomArray stores an array, materializes some of its tasks (some
// cancelled on their own), then sometimes cancels it with updates of the
// materialized pending tasks.
func randomArray(ctx context.Context, r *rand.Rand, db *DB, seq int) {
	spec := randomSpec(r)
	a := &job.Array{ID: fmt.Sprintf("01HZ%018d0000", seq), Spec: spec, First: 0, Last: r.IntN(300), CreatedAt: storetest.T0}
	if err := db.InsertArray(ctx, a); err != nil {
		if !errors.Is(err, job.ErrConflict) {
			panic(err)
		}
		return
	}
	var creates []job.Update
	for p := range a.Len() {
		if r.IntN(3) > 0 {
			continue
		}
		task := a.Task(p)
		n := task.Clone()
		if r.IntN(4) == 0 {
			n.State, n.FinishedAt = job.Cancelled, time.Now()
		} else {
			n.State = job.Scheduled
		}
		creates = append(creates, job.Update{Expect: task.Expected(), Next: n, Create: true})
	}
	if len(creates) > 0 {
		errs, err := db.Apply(ctx, creates)
		mustNil(err)
		for _, err := range errs {
			mustNil(err)
		}
	}
	if r.IntN(2) == 0 {
		return
	}
	var updates []job.Update
	for _, u := range creates {
		cur := u.Next
		if cur.State != job.Scheduled {
			continue
		}
		n := cur.Clone()
		n.State, n.FinishedAt = job.Cancelled, time.Now()
		updates = append(updates, job.Change(cur, n))
	}
	c := a.Clone()
	c.Cancelled, c.CancelReason, c.CancelledAt = true, "test", time.Now()
	_, err := db.CancelArray(ctx, c, updates)
	mustNil(err)
}

// TestIndexRandom runs inserts (ascending, interleaved, unordered,
// duplicate ids, ids that are prefixes of others), transitions (with and
// without a trustworthy Prev, two moves of a job in one call, changes of
// indexed fields), deletions of finished jobs and arrays from several
// goroutines, then checks the file and that List with every filter gives
// what a scan and Match give.
func TestIndexRandom(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	db := MustOpen(t)
	ctx := t.Context()
	for _, name := range randTenants[1:] {
		storetest.MustPutTenant(t, db, storetest.NewTenant(name))
	}
	workers, rounds := 6, 120
	if testing.Short() {
		rounds = 40
	}
	var (
		world randomWorld
		wg    sync.WaitGroup
		seqMu sync.Mutex
		seq   int
	)
	failed := make(chan error, workers)
	for g := range workers {
		wg.Go(func() {
			defer func() {
				if p := recover(); p != nil {
					failed <- fmt.Errorf("worker %d: %v", g, p)
				}
			}()
			r := rand.New(rand.NewPCG(uint64(seed), uint64(g)))
			for range rounds {
				switch op := r.IntN(10); {
				case op < 4:
					jobs := randomBatch(r, &world)
					ids := make([]string, len(jobs))
					for i, j := range jobs {
						ids[i] = j.ID
					}
					if err := db.Insert(ctx, jobs); err != nil {
						if !errors.Is(err, job.ErrConflict) {
							panic(fmt.Sprintf("insert: %v", err))
						}
						continue
					}
					world.addIDs(ids)
				case op < 8:
					randomApply(ctx, r, db, &world)
				case op < 9:
					_, err := db.DeleteFinished(ctx, time.Now().Add(time.Hour), 1+r.IntN(200), keepTasks)
					if err != nil {
						panic(fmt.Sprintf("delete finished: %v", err))
					}
				default:
					seqMu.Lock()
					seq++
					n := seq
					seqMu.Unlock()
					randomArray(ctx, r, db, n)
				}
			}
		})
	}
	wg.Wait()
	close(failed)
	for err := range failed {
		t.Fatal(err)
	}
	require.NoError(t, db.Check())

	// Every filter on its own and with a second one, against a scan.
	var all []*job.Job
	require.NoError(t, db.Scan(ctx, func(j *job.Job) error { all = append(all, j); return nil }))
	var filters []job.Filter
	for _, v := range randNames[1:] {
		filters = append(filters, job.Filter{Name: v})
	}
	for _, v := range randTenants[1:] {
		filters = append(filters, job.Filter{Tenant: v})
	}
	for _, v := range randPipes[2:] {
		filters = append(filters, job.Filter{Pipeline: v})
	}
	for s := job.Pending; s <= job.Cancelled; s++ {
		filters = append(filters, job.Filter{State: s})
	}
	for _, k := range randLabelKs {
		for _, v := range randLabelVs {
			filters = append(filters, job.Filter{Labels: map[string]string{k: v}})
		}
	}
	for i := 1; i <= seq; i++ {
		filters = append(filters, job.Filter{Array: fmt.Sprintf("01HZ%018d0000", i)})
	}
	r := rand.New(rand.NewPCG(uint64(seed), 99))
	for range 200 {
		f, g := filters[r.IntN(len(filters))], filters[r.IntN(len(filters))]
		f.State = cmpOr(f.State, g.State)
		f.Tenant = cmpOr(f.Tenant, g.Tenant)
		f.Name = cmpOr(f.Name, g.Name)
		f.Pipeline = cmpOr(f.Pipeline, g.Pipeline)
		if f.Labels == nil {
			f.Labels = g.Labels
		} else if g.Labels != nil {
			f.Labels = maps.Clone(f.Labels)
			maps.Copy(f.Labels, g.Labels)
		}
		filters = append(filters, f)
	}
	for _, f := range filters {
		var want []string
		for _, j := range all {
			if f.Match(j) {
				want = append(want, j.ID)
			}
		}
		f.Limit = []int{1, 7, 100, 1000}[r.IntN(4)]
		var got []string
		for {
			page, next, err := db.List(ctx, f)
			require.NoError(t, err)
			for _, j := range page {
				got = append(got, j.ID)
			}
			if next == "" {
				break
			}
			f.After = next
		}
		require.True(t, slices.Equal(want, got), "filter %+v: %d ids, want %d", f, len(got), len(want))
	}
}

func cmpOr[T comparable](a, b T) T {
	var zero T
	if a != zero {
		return a
	}
	return b
}

// mustNil panics with err, for the workers of TestIndexRandom, which
// report panics.
func mustNil(err error) {
	if err != nil {
		panic(err)
	}
}

// keepTasks keeps the tasks of arrays, as the cluster does while their
// array's record is kept (a deleted task would count as one not run), and
// some other jobs.
func keepTasks(id string) bool { return strings.HasPrefix(id, "01HZ") || len(id)%3 == 0 }
