package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
)

// Run runs the suite. open returns a new, empty store for one subtest and
// arranges its cleanup with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) cluster.Store) {
	t.Run("Insert", func(t *testing.T) { testInsert(t, open) })
	t.Run("Get", func(t *testing.T) { testGet(t, open) })
	t.Run("Apply", func(t *testing.T) { testApply(t, open) })
	t.Run("List", func(t *testing.T) { testList(t, open) })
	t.Run("Scan", func(t *testing.T) { testScan(t, open) })
	t.Run("Workers", func(t *testing.T) { testWorkers(t, open) })
	t.Run("DeleteFinished", func(t *testing.T) { testDeleteFinished(t, open) })
	t.Run("Tenants", func(t *testing.T) { testTenants(t, open) })
	t.Run("Admission", func(t *testing.T) { testAdmission(t, open) })
	t.Run("Pipelines", func(t *testing.T) { testPipelines(t, open) })
	t.Run("Schedules", func(t *testing.T) { testSchedules(t, open) })
}

// T0 is the creation time of the suite's jobs. Times in the suite are UTC
// with nanoseconds, as stores return them.
var T0 = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

// ID returns the n-th job id: valid ULID syntax, sorting by n.
func ID(n int) string { return fmt.Sprintf("01HZ%022d", n) }

// NewJob returns a new Pending job with attempt 1, a normalized spec and the
// given dependencies, in the shape a store returns it (no empty maps).
func NewJob(n int, deps ...string) *job.Job {
	spec := job.Spec{
		Name:      fmt.Sprintf("job-%d", n),
		Command:   []string{"echo", fmt.Sprint(n)},
		Labels:    map[string]string{"n": fmt.Sprint(n), "parity": []string{"even", "odd"}[n%2]},
		Priority:  job.DefaultPriority,
		DependsOn: deps,
	}
	spec.Normalize()
	return &job.Job{
		ID:        ID(n),
		Spec:      spec,
		State:     job.Pending,
		Attempt:   1,
		CreatedAt: T0.Add(time.Duration(n) * time.Second),
	}
}

// FullJob returns a job with every field set, to check a round trip.
func FullJob(n int) *job.Job {
	j := NewJob(n)
	j.Spec = job.Spec{
		Name:      "full",
		Tenant:    "team-a",
		Labels:    map[string]string{"app": "web", "tier": "1"},
		Command:   []string{"/bin/run", "--flag", "ü"},
		Env:       map[string]string{"A": "1", "B": "two"},
		SecretEnv: map[string]string{"TOKEN": "s3cret"},
		WorkDir:   "/srv",
		NoPTY:     true,
		Rows:      50,
		Cols:      132,
		Timeout:   90 * time.Second,
		Retries:   3,
		Backoff:   1500 * time.Millisecond,
		Priority:  900,
		Deadline:  T0.Add(time.Hour),
		Resources: job.Resources{CPUMillis: 1500, MemoryMiB: 512, Slots: 2},
		Selector:  map[string]string{"gpu": "true"},
	}
	j.Worker = "w-1"
	j.ExitCode = -1
	j.Signal = 9
	j.Reason = "previous reason"
	j.CancelRequested = "timeout"
	j.ScheduledAt = T0.Add(time.Minute)
	j.StartedAt = T0.Add(2 * time.Minute)
	j.FinishedAt = T0.Add(3 * time.Minute)
	j.NotBefore = T0.Add(4 * time.Minute)
	j.Usage = job.Usage{CPUTime: 1234567 * time.Microsecond, MaxRSSKiB: 2048}
	return j
}

// NewTenant returns a valid tenant record named name with weight 1 and no
// limits, created at T0.
func NewTenant(name string) *job.Tenant {
	return &job.Tenant{Name: name, Weight: 1, CreatedAt: T0, UpdatedAt: T0}
}

// MustPutTenant stores tenants and fails the test on error. Jobs of a
// tenant other than job.DefaultTenant need their tenant stored first.
func MustPutTenant(t testing.TB, s cluster.Store, tenants ...*job.Tenant) {
	t.Helper()
	for _, tn := range tenants {
		require.NoError(t, s.PutTenant(context.Background(), tn))
	}
}

// MustInsert inserts jobs and fails the test on error.
func MustInsert(t testing.TB, s cluster.Store, jobs ...*job.Job) {
	t.Helper()
	require.NoError(t, s.Insert(context.Background(), jobs))
}

// MustGet returns the stored job or fails the test.
func MustGet(t testing.TB, s cluster.Store, id string) *job.Job {
	t.Helper()
	j, err := s.Get(context.Background(), id)
	require.NoError(t, err)
	return j
}

// MustApply applies one update that must succeed and returns the new job.
func MustApply(t testing.TB, s cluster.Store, cur *job.Job, change func(*job.Job)) *job.Job {
	t.Helper()
	next := cur.Clone()
	change(next)
	errs, err := s.Apply(context.Background(), []job.Update{{Expect: cur.Expected(), Next: next}})
	require.NoError(t, err)
	require.NoError(t, errs[0])
	return next
}

// Finish moves a stored Pending job to a terminal state that ended at fin
// (zero leaves FinishedAt unset) and returns it.
func Finish(t testing.TB, s cluster.Store, j *job.Job, to job.State, fin time.Time) *job.Job {
	t.Helper()
	if to == job.Completed {
		j = MustApply(t, s, j, func(n *job.Job) { n.State = job.Scheduled; n.Worker = "w-1" })
	}
	return MustApply(t, s, j, func(n *job.Job) { n.State = to; n.FinishedAt = fin })
}

func assertNotFound(t *testing.T, s cluster.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		_, err := s.Get(t.Context(), id)
		require.ErrorIs(t, err, job.ErrNotFound, "job %s", id)
	}
}

func testInsert(t *testing.T, open func(*testing.T) cluster.Store) {
	t.Run("OK", func(t *testing.T) {
		s := open(t)
		a, b := NewJob(1), NewJob(2)
		require.NoError(t, s.Insert(t.Context(), []*job.Job{a, b}))
		require.Equal(t, uint64(1), a.Version, "Insert sets Version on the caller's job")
		require.Equal(t, uint64(1), b.Version)
		require.Equal(t, a, MustGet(t, s, a.ID))
		require.Equal(t, b, MustGet(t, s, b.ID))
	})
	t.Run("RoundTrip", func(t *testing.T) {
		s := open(t)
		want := FullJob(1)
		MustPutTenant(t, s, NewTenant(want.Spec.Tenant))
		MustInsert(t, s, want)
		require.Equal(t, want, MustGet(t, s, want.ID))
	})
	t.Run("NoAlias", func(t *testing.T) {
		s := open(t)
		j := NewJob(1)
		MustInsert(t, s, j)
		want := j.Clone()
		j.Spec.Labels["n"] = "changed"
		j.Spec.Command[0] = "changed"
		got := MustGet(t, s, j.ID)
		require.Equal(t, want, got)
		got.Spec.Labels["n"] = "changed again"
		require.Equal(t, want, MustGet(t, s, j.ID))
	})
	t.Run("Empty", func(t *testing.T) {
		s := open(t)
		require.NoError(t, s.Insert(t.Context(), nil))
	})
	t.Run("ErrConflict", func(t *testing.T) {
		s := open(t)
		MustInsert(t, s, NewJob(1))
		err := s.Insert(t.Context(), []*job.Job{NewJob(2), NewJob(1)})
		require.ErrorIs(t, err, job.ErrConflict)
		assertNotFound(t, s, ID(2))
		require.Equal(t, uint64(1), MustGet(t, s, ID(1)).Version)
	})
	t.Run("ErrConflict/SameCall", func(t *testing.T) {
		s := open(t)
		err := s.Insert(t.Context(), []*job.Job{NewJob(1), NewJob(2), NewJob(1)})
		require.ErrorIs(t, err, job.ErrConflict)
		assertNotFound(t, s, ID(1), ID(2))
	})
	t.Run("UnknownDependency", func(t *testing.T) {
		s := open(t)
		MustInsert(t, s, NewJob(1))
		a, b := NewJob(2, ID(1)), NewJob(3, ID(1), ID(99))
		err := s.Insert(t.Context(), []*job.Job{a, b})
		var fe *job.FieldError
		require.ErrorAs(t, err, &fe)
		require.Equal(t, "after", fe.Field)
		require.ErrorIs(t, err, job.ErrInvalid)
		require.Contains(t, err.Error(), ID(99))
		assertNotFound(t, s, ID(2), ID(3))
		require.Zero(t, a.Version, "a failed Insert leaves the caller's jobs alone")
	})
	t.Run("DependencyStored", func(t *testing.T) {
		s := open(t)
		MustInsert(t, s, NewJob(1))
		MustInsert(t, s, NewJob(2, ID(1)))
		require.Equal(t, []string{ID(1)}, MustGet(t, s, ID(2)).Spec.DependsOn)
	})
	t.Run("DependencyInSameCall", func(t *testing.T) {
		s := open(t)
		// The dependency may come before or after its dependent.
		MustInsert(t, s, NewJob(1, ID(3)), NewJob(2, ID(1), ID(3)), NewJob(3))
		require.Equal(t, []string{ID(1), ID(3)}, MustGet(t, s, ID(2)).Spec.DependsOn)
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		for name, change := range map[string]func(*job.Job){
			"NotPending": func(j *job.Job) { j.State = job.Running },
			"Attempt":    func(j *job.Job) { j.Attempt = 2 },
			"NoID":       func(j *job.Job) { j.ID = "" },
		} {
			t.Run(name, func(t *testing.T) {
				s := open(t)
				bad := NewJob(2)
				change(bad)
				err := s.Insert(t.Context(), []*job.Job{NewJob(1), bad})
				require.ErrorIs(t, err, job.ErrInvalid)
				assertNotFound(t, s, ID(1), ID(2))
			})
		}
	})
	t.Run("ContextDone", func(t *testing.T) {
		s := open(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := s.Insert(ctx, []*job.Job{NewJob(1)})
		require.ErrorIs(t, err, context.Canceled)
		assertNotFound(t, s, ID(1))
	})
}

func testGet(t *testing.T, open func(*testing.T) cluster.Store) {
	t.Run("ErrNotFound", func(t *testing.T) {
		s := open(t)
		MustInsert(t, s, NewJob(1))
		_, err := s.Get(t.Context(), ID(2))
		require.ErrorIs(t, err, job.ErrNotFound)
		_, err = s.Get(t.Context(), "")
		require.ErrorIs(t, err, job.ErrNotFound)
	})
	t.Run("ContextDone", func(t *testing.T) {
		s := open(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := s.Get(ctx, ID(1))
		require.True(t, errors.Is(err, context.Canceled), "got %v", err)
	})
}

// FillQueued inserts n Pending jobs, 1,000 per commit, as a backlog for
// benchmarks: ids time-ordered from an hour ago, a command and a label
// each, the defaults filled in. It returns the first job's id.
func FillQueued(tb testing.TB, s cluster.Store, n int) string {
	tb.Helper()
	t := time.Now().Add(-time.Hour)
	var first string
	for i := 0; i < n; i += 1000 {
		batch := make([]*job.Job, 0, 1000)
		for k := range min(1000, n-i) {
			spec := job.Spec{Command: []string{"/bin/true", "--job", strconv.Itoa(i + k)}, Labels: map[string]string{"batch": strconv.Itoa(i / 1000)}}
			spec.Normalize()
			id := ulid.MustNew(ulid.Timestamp(t.Add(time.Duration(i+k)*time.Microsecond)), ulid.DefaultEntropy()).String()
			if first == "" {
				first = id
			}
			batch = append(batch, &job.Job{ID: id, Spec: spec, State: job.Pending, Attempt: 1, CreatedAt: t})
		}
		MustInsert(tb, s, batch...)
	}
	return first
}

// History is what FillHistory stored: the ids of its jobs in the order
// they were made, how many of the last ones have not finished or
// finished recently, and the greatest id (the newest job).
type History struct {
	IDs                []string
	Unfinished, Recent int
	Newest             string
}

// FillHistory stores n jobs as a long-running cluster holds them, as a
// backlog for benchmarks of listings: created a tenth of a millisecond
// apart, up to now, with ids made at their creation (their random part
// spread as a ULID's is, so that a dozen characters tell one from the
// others of its millisecond); all but the last
// unfinished+recent cancelled two days before now (most of a store is
// history), the recent ones finished in the last half hour, the last
// unfinished ones Pending. Insert and cancel go 1,000 to a commit.
func FillHistory(tb testing.TB, s cluster.Store, n, unfinished, recent int, now time.Time) History {
	tb.Helper()
	h := History{IDs: make([]string, 0, n), Unfinished: unfinished, Recent: recent}
	start := now.Add(-time.Duration(n) * 100 * time.Microsecond)
	for i := 0; i < n; i += 1000 {
		batch := make([]*job.Job, 0, 1000)
		var ends []job.Update
		for k := range min(1000, n-i) {
			p := i + k
			created := start.Add(time.Duration(p) * 100 * time.Microsecond)
			spec := job.Spec{Name: fmt.Sprintf("build-%d", p%1000), Command: []string{"/bin/true", "--job", strconv.Itoa(p)},
				Labels: map[string]string{"batch": strconv.Itoa(p / 1000)}}
			spec.Normalize()
			j := &job.Job{ID: spreadID(created, uint64(p+1)*0x9E3779B97F4A7C15), Spec: spec, State: job.Pending, Attempt: 1, CreatedAt: created}
			batch = append(batch, j)
			h.IDs = append(h.IDs, j.ID)
			h.Newest = max(h.Newest, j.ID)
			switch {
			case p >= n-unfinished:
			case p >= n-unfinished-recent:
				ends = append(ends, cancelAt(j, now.Add(-time.Duration(n-unfinished-p)*time.Second%(30*time.Minute))))
			default:
				ends = append(ends, cancelAt(j, now.Add(-48*time.Hour)))
			}
		}
		MustInsert(tb, s, batch...)
		if len(ends) == 0 {
			continue
		}
		errs, err := s.Apply(context.Background(), ends)
		if err != nil {
			tb.Fatal(err)
		}
		for _, err := range errs {
			if err != nil {
				tb.Fatal(err)
			}
		}
	}
	return h
}

// spreadID is a ULID made at t whose random part starts with r, as the
// random bits of a ULID spread: ids of one millisecond differ from their
// 11th or 12th character on.
func spreadID(t time.Time, r uint64) string {
	const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	b := []byte(IDAt(t, 0))
	for i := 22; i >= 10; i-- {
		b[i] = crockford[r%32]
		r /= 32
	}
	return string(b)
}

// cancelAt is the update that cancels the new job j at t.
func cancelAt(j *job.Job, t time.Time) job.Update {
	next := j.Clone()
	next.State, next.FinishedAt, next.Reason = job.Cancelled, t, "cancelled by user"
	return job.Update{Expect: job.Expect{State: job.Pending, Attempt: 1}, Next: next}
}
