package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
	"github.com/hodei-jobs/hodei/store/memstore"
)

// harness drives a Cluster deterministically: a fake clock, the in-memory
// store, and a dispatcher that records every order instead of sending it.
type harness struct {
	t     testing.TB
	ctx   context.Context
	now   time.Time
	store *countingStore
	disp  *recorder
	s     *Cluster
}

func newHarness(t testing.TB, configure ...func(*Config)) *harness {
	t.Helper()
	h := &harness{
		t:     t,
		ctx:   context.Background(),
		now:   time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		store: &countingStore{Store: memstore.New()},
	}
	h.restartWith(configure...)
	return h
}

// restart builds a new Cluster on the same store, as a server restart does.
func (h *harness) restart() {
	h.t.Helper()
	h.restartWith()
}

func (h *harness) advance(d time.Duration) { h.now = h.now.Add(d) }

func (h *harness) pass() time.Time { return h.s.Pass(h.ctx) }

// worker connects a worker with the given slots and labels.
func (h *harness) worker(id string, slots int64, labels map[string]string, running ...Ref) Reconcile {
	h.t.Helper()
	rc, err := h.s.WorkerHello(h.ctx, Hello{
		Worker:  &job.Worker{ID: id, Name: id, Labels: labels, Capacity: job.Resources{Slots: slots, CPUMillis: slots * 1000, MemoryMiB: slots * 1024}},
		Running: running,
	})
	if err != nil {
		h.t.Fatalf("hello %s: %v", id, err)
	}
	return rc
}

// busyWorkers connects n workers (w00000, w00001, …) of one slot each and
// gives each a job to run.
func (h *harness) busyWorkers(n int) {
	h.t.Helper()
	for i := range n {
		h.worker(fmt.Sprintf("w%05d", i), 1, nil)
		h.submit(job.Spec{})
	}
	h.pass()
	if got := len(h.s.active); got != n {
		h.t.Fatalf("%d active jobs, want %d", got, n)
	}
}

func (h *harness) submit(spec job.Spec) *job.Job {
	h.t.Helper()
	if len(spec.Command) == 0 && spec.Script == "" {
		spec.Command = []string{"true"}
	}
	if spec.Priority == 0 {
		spec.Priority = job.DefaultPriority
	}
	j, err := h.s.Submit(h.ctx, spec)
	if err != nil {
		h.t.Fatalf("submit: %v", err)
	}
	return j
}

func (h *harness) get(id string) *job.Job {
	h.t.Helper()
	j, err := h.s.Get(h.ctx, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}

func (h *harness) wantState(id string, want job.State) *job.Job {
	h.t.Helper()
	j := h.get(id)
	if j.State != want {
		h.t.Fatalf("job %s is %s (attempt %d, reason %q), want %s", id, j.State, j.Attempt, j.Reason, want)
	}
	stored, err := h.store.Get(h.ctx, id)
	if err != nil || stored.State != want || stored.Version != j.Version {
		h.t.Fatalf("stored job %s = %+v, %v; memory says %s v%d", id, stored, err, j.State, j.Version)
	}
	return j
}

func (h *harness) start(j *job.Job) {
	h.t.Helper()
	cur := h.get(j.ID)
	if err := h.s.JobStarted(h.ctx, cur.Worker, Ref{cur.ID, cur.Attempt}, h.now); err != nil {
		h.t.Fatalf("start %s: %v", j.ID, err)
	}
}

func (h *harness) finish(j *job.Job, outcome scheduler.Outcome, code int) (*job.Job, error) {
	cur := h.get(j.ID)
	return h.s.JobFinished(h.ctx, cur.Worker, scheduler.Finish{JobID: cur.ID, Attempt: cur.Attempt, Outcome: outcome, ExitCode: code})
}

// countingStore counts Apply calls, to show that a pass commits once.
type countingStore struct {
	*memstore.Store
	mu      sync.Mutex
	applies int
}

func (c *countingStore) Apply(ctx context.Context, u []job.Update) ([]error, error) {
	c.mu.Lock()
	c.applies++
	c.mu.Unlock()
	return c.Store.Apply(ctx, u)
}

func (c *countingStore) applyCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applies
}

// recorder is a Dispatcher that records orders per worker.
type recorder struct {
	mu      sync.Mutex
	assigns []assigned
	cancels []CancelOrder
}

type assigned struct {
	worker string
	job    *job.Job
}

func (r *recorder) Assign(workerID string, j *job.Job) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.assigns = append(r.assigns, assigned{workerID, j})
	return true
}

func (r *recorder) Cancel(workerID string, c CancelOrder) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancels = append(r.cancels, c)
	return true
}

func (r *recorder) takeAssigns() []assigned {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.assigns
	r.assigns = nil
	return a
}

func (r *recorder) takeCancels() []CancelOrder {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.cancels
	r.cancels = nil
	return c
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func pendingJob(i int, tenant string, slots int64) *job.Job {
	return &job.Job{
		ID:      fmt.Sprintf("J%025d", i),
		Spec:    job.Spec{Tenant: tenant, Priority: job.DefaultPriority, Resources: job.Resources{Slots: slots}},
		State:   job.Pending,
		Attempt: 1,
	}
}
