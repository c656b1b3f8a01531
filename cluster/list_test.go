package cluster

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// listedIDs pages through f with page size limit and returns the ids.
func (h *harness) listedIDs(f job.Filter, limit int) []string {
	h.t.Helper()
	f.Limit = limit
	var out []string
	for pages := 0; ; pages++ {
		page, next, err := h.s.List(h.ctx, f)
		if err != nil {
			h.t.Fatal(err)
		}
		for _, j := range page {
			out = append(out, j.ID)
		}
		if next == "" || pages > 1000 {
			return out
		}
		f.After = next
	}
}

// listFixture is three jobs, an array of five tasks (one cancelled on its
// own, so stored) and two jobs more, a minute apart; the first job is
// cancelled two hours before now, the second one ten minutes before.
func listFixture(t *testing.T) (*harness, []string) {
	h := newHarness(t)
	var ids []string
	for range 3 {
		ids = append(ids, h.submit(job.Spec{Name: "job"}).ID)
		h.advance(time.Minute)
	}
	a, err := h.s.SubmitArray(h.ctx, job.Spec{Name: "render", Command: []string{"true"}, Priority: job.DefaultPriority}, job.ArraySpec{First: 10, Last: 14})
	if err != nil {
		t.Fatal(err)
	}
	for p := range 5 {
		ids = append(ids, job.TaskID(a.ID, p))
	}
	h.advance(time.Minute)
	for range 2 {
		ids = append(ids, h.submit(job.Spec{Name: "job"}).ID)
		h.advance(time.Minute)
	}
	if _, err := h.s.Cancel(h.ctx, ids[0], ""); err != nil {
		t.Fatal(err)
	}
	h.advance(110 * time.Minute)
	for _, id := range []string{ids[1], ids[5]} { // a job and task render[12]
		if _, err := h.s.Cancel(h.ctx, id, ""); err != nil {
			t.Fatal(err)
		}
	}
	h.advance(10 * time.Minute)
	return h, ids
}

func TestListNewestFirst(t *testing.T) {
	h, ids := listFixture(t)
	hour := h.now.Add(-time.Hour)
	for _, tc := range []struct {
		name string
		f    job.Filter
		want []string // oldest first
	}{
		{"All", job.Filter{}, ids},
		{"Window", job.Filter{NotFinishedBefore: hour}, ids[1:]},
		{"WindowFinished", job.Filter{NotFinishedBefore: hour, Finished: true}, []string{ids[1], ids[5]}},
		{"Pending", job.Filter{State: job.Pending}, slices.Concat(ids[2:5], ids[6:])},
		{"Pattern", job.Filter{Name: "render?1[13]?"}, []string{ids[4], ids[6]}},
		{"PatternStored", job.Filter{Name: "*12?"}, []string{ids[5]}},
		{"PatternNone", job.Filter{Name: "other*"}, nil},
		{"TaskName", job.Filter{Name: "render[14]"}, []string{ids[7]}},
		{"Since", job.Filter{Since: h.now.Add(-122 * time.Minute)}, ids[8:]},
		{"Array", job.Filter{Array: arrayOf(h, ids[3])}, ids[3:8]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, limit := range []int{1, 2, 100} {
				if got := h.listedIDs(tc.f, limit); !slices.Equal(got, tc.want) {
					t.Errorf("limit %d: %v, want %v", limit, got, tc.want)
				}
				desc := tc.f
				desc.Desc = true
				want := slices.Clone(tc.want)
				slices.Reverse(want)
				if got := h.listedIDs(desc, limit); !slices.Equal(got, want) {
					t.Errorf("newest first, limit %d: %v, want %v", limit, got, want)
				}
			}
			n, exact, err := h.s.Count(h.ctx, tc.f)
			if err != nil || !exact || n != len(tc.want) {
				t.Errorf("Count = %d, %v, %v; want %d, exact", n, exact, err, len(tc.want))
			}
		})
	}
}

// arrayOf returns the array of a task.
func arrayOf(h *harness, task string) string {
	h.t.Helper()
	return h.get(task).Spec.Array
}

func TestCountCounters(t *testing.T) {
	// Unfinished jobs by state and tenant come from the counters, exact,
	// whatever the store holds; array tasks count until they run.
	h, ids := listFixture(t)
	h.worker("w-1", 2, nil)
	h.pass()
	for _, tc := range []struct {
		f    job.Filter
		want int
	}{
		{job.Filter{State: job.Pending}, 5},
		{job.Filter{State: job.Scheduled}, 2},
		{job.Filter{State: job.Pending, Tenant: job.DefaultTenant}, 5},
		{job.Filter{State: job.Pending, Tenant: "other"}, 0},
		{job.Filter{NotFinishedBefore: h.now.Add(-time.Hour)}, len(ids) - 1},
		{job.Filter{NotFinishedBefore: h.now.Add(-time.Minute)}, len(ids) - 3},
		{job.Filter{State: job.Cancelled}, 3},
	} {
		if n, exact, err := h.s.Count(h.ctx, tc.f); err != nil || !exact || n != tc.want {
			t.Errorf("Count(%+v) = %d, %v, %v; want %d, exact", tc.f, n, exact, err, tc.want)
		}
	}
}

func TestResolve(t *testing.T) {
	// a and b, and an array's hundred tasks, are made in two milliseconds
	// of their own (the first ten characters of an id); the other objects
	// a second apart, so ten characters tell each from the rest.
	h := newHarness(t)
	a := h.submit(job.Spec{Name: "a"})
	b := h.submit(job.Spec{Name: "b"})
	h.advance(time.Second)
	spec := job.Spec{Name: "r", Command: []string{"true"}, Priority: job.DefaultPriority}
	arr, err := h.s.SubmitArray(h.ctx, spec, job.ArraySpec{First: 0, Last: 99})
	if err != nil {
		t.Fatal(err)
	}
	h.advance(time.Second)
	one, err := h.s.SubmitArray(h.ctx, spec, job.ArraySpec{First: 7, Last: 7})
	if err != nil {
		t.Fatal(err)
	}
	h.advance(time.Second)
	c := h.submit(job.Spec{Name: "c"})
	h.advance(time.Second)
	p, _, err := h.s.RunPipeline(h.ctx, job.PipelineSpec{Name: "pl", Steps: []job.Step{pstep("s")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"w-a1", "w-a10", "w-a2", "w-B"} {
		h.worker(w, 1, nil)
	}
	task := job.TaskID(arr.ID, 42)
	resolve := func(kind job.IDKind, prefix string) (string, error) {
		return h.s.Resolve(h.ctx, kind, "id", prefix, nil)
	}
	ok := func(kind job.IDKind, prefix, want string) {
		t.Helper()
		if got, err := resolve(kind, prefix); err != nil || got != want {
			t.Errorf("Resolve(%s, %q) = %q, %v; want %s", kind, prefix, got, err, want)
		}
	}
	ok(job.KindJob, c.ID[:10], c.ID)
	ok(job.KindJob, strings.ToLower(c.ID[:10]), c.ID)
	ok(job.KindJob, a.ID, a.ID)
	ok(job.KindJob, strings.ToLower(task), task) // a task not yet materialized
	ok(job.KindJob, one.ID[:10], job.TaskID(one.ID, 0))
	ok(job.KindArray, arr.ID[:10], arr.ID)
	ok(job.KindArray, strings.ToLower(one.ID[:10]), one.ID)
	ok(job.KindPipeline, strings.ToLower(p.ID[:10]), p.ID)
	ok(job.KindWorker, "w-b", "w-B")
	ok(job.KindWorker, "W-A2", "w-a2")
	ok(job.KindWorker, "w-a1", "w-a1") // a whole id, though it starts w-a10 too

	_, err = resolve(job.KindJob, a.ID[:10])
	var pe *job.PrefixError
	if !errors.As(err, &pe) || !errors.Is(err, job.ErrInvalid) || len(pe.Matches) != 2 || pe.More != 0 {
		t.Fatalf("ambiguous: %v (%+v)", err, pe)
	}
	if msg := err.Error(); !strings.Contains(msg, `"`+a.ID[:10]+`" is the start of 2 job ids`) ||
		!strings.Contains(msg, "\n  "+a.ID+"  a  PENDING\n  "+b.ID+"  b  PENDING") {
		t.Errorf("message:\n%s", msg)
	}
	_, err = resolve(job.KindJob, strings.ToLower(arr.ID[:10]))
	if !errors.As(err, &pe) || len(pe.Matches) != job.MaxShownMatches || pe.More != 100-job.MaxShownMatches || pe.MoreAtLeast {
		t.Fatalf("ambiguous tasks: %v (%+v)", err, pe)
	}
	if msg := err.Error(); !strings.Contains(msg, "is the start of 100 job ids") || !strings.Contains(msg, task[:25]) && !strings.Contains(msg, "r[0]  PENDING") ||
		!strings.HasSuffix(msg, "\n  and 90 more") {
		t.Errorf("message:\n%s", msg)
	}
	if _, err := resolve(job.KindWorker, "w-a"); !errors.Is(err, job.ErrInvalid) || !strings.Contains(err.Error(), "w-a10") {
		t.Errorf("ambiguous worker: %v", err)
	}
	for _, tc := range []struct {
		kind   job.IDKind
		prefix string
	}{{job.KindJob, "7ZZ"}, {job.KindArray, a.ID[:12] + "ZZ"}, {job.KindPipeline, "00"}, {job.KindWorker, "x"}} {
		_, err := resolve(tc.kind, tc.prefix)
		if !errors.Is(err, job.ErrNotFound) || !strings.Contains(err.Error(), tc.prefix) {
			t.Errorf("Resolve(%s, %q) = %v, want not found naming it", tc.kind, tc.prefix, err)
		}
	}
	if _, err := resolve(job.KindJob, "01J!"); !errors.Is(err, job.ErrInvalid) {
		t.Errorf("bad prefix: %v", err)
	}
	// A caller limited to another tenant sees none of them.
	if _, err := h.s.Resolve(h.ctx, job.KindJob, "id", c.ID[:12], []string{"other"}); !errors.Is(err, job.ErrNotFound) {
		t.Errorf("out of scope: %v", err)
	}
}
