package cluster

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
	"github.com/hodei-jobs/hodei/store"
)

// The benchmarks of a Cluster that holds a large backlog share these
// helpers: a real bbolt store filled fast (straight through Insert, 1,000
// jobs a transaction), a Cluster rebuilt from it by Recover as a restart
// rebuilds it, a clock safe for the fake agents' goroutines, and an agent
// that runs whatever it is given at once.

// fillBatch is how many jobs fillStore writes per transaction.
const fillBatch = 1000

// openBenchStore opens a bbolt store in dir. sync false skips fsync on
// commit (store.Options.NoSync): for filling, and for benchmarks whose
// figure is not the disk.
func openBenchStore(tb testing.TB, dir string, sync bool) *store.DB {
	tb.Helper()
	db, err := store.Open(filepath.Join(dir, "hodei.db"), store.Options{NoSync: !sync})
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

// benchTenants returns n tenant names: the default tenant alone for 1.
func benchTenants(n int) []string {
	if n == 1 {
		return []string{job.DefaultTenant}
	}
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("tenant-%04d", i)
	}
	return out
}

// fillStore creates tenants (but the default one) and inserts n Pending
// jobs spread over them in turn, fillBatch to a transaction, as if
// submitted over the hour before t0, with ids that ascend from that hour.
// With mixed, their priorities spread over the whole range, so that the
// queue's order is not the store's; without, they all have the default
// priority and are dispatched in submission order.
func fillStore(tb testing.TB, db *store.DB, n int, tenants []string, mixed bool) {
	tb.Helper()
	fillStoreWith(tb, db, n, tenants, func(i int, spec *job.Spec) {
		if mixed {
			spec.Priority = (i * 7919) % (job.MaxPriority + 1)
		}
	})
}

// fillStoreWith is fillStore with shape setting the spec of job i (its
// tenant, command and default priority already set).
func fillStoreWith(tb testing.TB, db *store.DB, n int, tenants []string, shape func(i int, spec *job.Spec)) {
	tb.Helper()
	ctx := context.Background()
	for _, name := range tenants {
		if name == job.DefaultTenant {
			continue
		}
		t := &job.Tenant{Name: name, CreatedAt: t0.Add(-2 * time.Hour)}
		t.Normalize()
		if err := db.PutTenant(ctx, t); err != nil {
			tb.Fatal(err)
		}
	}
	start := t0.Add(-time.Hour)
	base := ulid.MustNew(ulid.Timestamp(start), bytes.NewReader(make([]byte, 16))).String()
	step := time.Hour / time.Duration(n)
	batch := make([]*job.Job, 0, fillBatch)
	for i := range n {
		spec := job.Spec{Tenant: tenants[i%len(tenants)], Command: []string{"true"}, Priority: job.DefaultPriority}
		shape(i, &spec)
		spec.Normalize()
		batch = append(batch, &job.Job{
			ID: job.AddID(base, uint64(i)), Spec: spec, State: job.Pending, Attempt: 1,
			CreatedAt: start.Add(time.Duration(i) * step),
		})
		if len(batch) == fillBatch || i == n-1 {
			if err := db.Insert(ctx, batch); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// benchClock is a fake clock that the fake agents' goroutines may read.
type benchClock struct{ ns atomic.Int64 }

func newBenchClock(t time.Time) *benchClock {
	c := &benchClock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *benchClock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *benchClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// recoverCluster builds a Cluster on db and recovers it, as a restart
// does: every stored Pending job back in its tenant's queue. Workers never
// go silent on the fake clock.
func recoverCluster(tb testing.TB, db Store, disp Dispatcher, clock *benchClock) *Cluster {
	tb.Helper()
	s := New(Config{
		Store: db, Dispatcher: disp, Now: clock.now,
		Settings: Settings{Heartbeat: time.Hour, Lease: 1000 * time.Hour, KillGrace: time.Second},
	})
	if err := s.Recover(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return s
}

// connectWorker says Hello for a worker of the given slots.
func connectWorker(tb testing.TB, s *Cluster, id string, slots int64) {
	tb.Helper()
	_, err := s.WorkerHello(context.Background(), Hello{Worker: &job.Worker{
		ID: id, Name: id,
		Capacity: job.Resources{Slots: slots, CPUMillis: slots * 1000, MemoryMiB: slots * 1024},
	}})
	if err != nil {
		tb.Fatal(err)
	}
}

// fakeAgent is an in-process agent: a Dispatcher that records the
// assignments of a pass, which report then starts and finishes through the
// Cluster so that their slots are free for the next pass.
type fakeAgent struct {
	mu       sync.Mutex
	assigned []*job.Job
}

func (a *fakeAgent) Assign(_ string, j *job.Job) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.assigned = append(a.assigned, j)
	return true
}

func (a *fakeAgent) Cancel(string, CancelOrder) bool { return true }

// report starts and finishes, at now, every job assigned since the last
// call and returns how many. Each job reports from a goroutine of its own,
// as the server handles an agent's reports (so that concurrent reports
// share commits); report waits for them all.
func (a *fakeAgent) report(tb testing.TB, s *Cluster, now time.Time) int {
	a.mu.Lock()
	jobs := a.assigned
	a.assigned = nil
	a.mu.Unlock()
	ctx := context.Background()
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			if err := s.JobStarted(ctx, j.Worker, Ref{j.ID, j.Attempt}, now); err != nil {
				errs[i] = fmt.Errorf("start %s: %w", j.ID, err)
				return
			}
			f := scheduler.Finish{JobID: j.ID, Attempt: j.Attempt, Outcome: scheduler.Exited}
			if _, err := s.JobFinished(ctx, j.Worker, f); err != nil {
				errs[i] = fmt.Errorf("finish %s: %w", j.ID, err)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return len(jobs)
}

// liveHeap returns the bytes of heap the garbage collector found live,
// after collecting twice so that what sync.Pools dropped is gone too.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}
