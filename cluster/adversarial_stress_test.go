package cluster

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
	"github.com/hodei-jobs/hodei/store/memstore"
)

// Submits, array submits, cancels of jobs, tasks and arrays, agent reports
// and passes, all at once; then the tenant's figures must match what a
// restart recounts from the store, and no task may be stored twice.
func TestAdversarialStress(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	st := memstore.New()
	disp := &recorder{}
	cfg := Config{Store: st, Dispatcher: disp, Now: now,
		Settings: Settings{Heartbeat: time.Second, Lease: time.Hour, KillGrace: 2 * time.Second}}
	s := New(cfg)
	ctx := context.Background()
	if err := s.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WorkerHello(ctx, Hello{Worker: &job.Worker{ID: "w1", Name: "w1", Capacity: job.Resources{Slots: 8, CPUMillis: 8000, MemoryMiB: 8192}}}); err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		ids    []string
		arrays []string
	)
	pick := func(r *rand.Rand, xs *[]string) string {
		mu.Lock()
		defer mu.Unlock()
		if len(*xs) == 0 {
			return ""
		}
		return (*xs)[r.IntN(len(*xs))]
	}
	// The writers do a fixed number of operations, yielding between them
	// so that the others interleave; the agent and the passes run until
	// the writers are done.
	stop := make(chan struct{})
	var wg, writers sync.WaitGroup
	loop := func(n int, f func(r *rand.Rand)) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 1))
		for i := 0; n < 0 || i < n; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f(r)
			runtime.Gosched()
		}
	}
	write := func(n int, f func(r *rand.Rand)) {
		writers.Add(1)
		go func() { defer writers.Done(); loop(n, f) }()
	}
	run := func(f func(r *rand.Rand)) {
		wg.Add(1)
		go func() { defer wg.Done(); loop(-1, f) }()
	}
	write(1500, func(r *rand.Rand) { // submitter
		j, err := s.Submit(ctx, job.Spec{Command: []string{"true"}, Priority: 500, Retries: r.IntN(2)})
		if err == nil {
			mu.Lock()
			ids = append(ids, j.ID)
			mu.Unlock()
		}
	})
	write(300, func(r *rand.Rand) { // arrays
		spec := job.Spec{Command: []string{"true"}, Priority: 500}
		if r.IntN(2) == 0 {
			spec.Deadline = now().Add(time.Hour)
		}
		a, err := s.SubmitArray(ctx, spec, job.ArraySpec{First: 0, Last: r.IntN(20), Limit: r.IntN(3)})
		if err == nil {
			mu.Lock()
			arrays = append(arrays, a.ID)
			for p := range a.Len() {
				ids = append(ids, job.TaskID(a.ID, p))
			}
			mu.Unlock()
		}
	})
	write(3000, func(r *rand.Rand) { // cancels
		if r.IntN(4) == 0 {
			if a := pick(r, &arrays); a != "" {
				s.CancelArray(ctx, a, "")
			}
		} else if id := pick(r, &ids); id != "" {
			s.Cancel(ctx, id, "")
		}
	})
	run(func(r *rand.Rand) { // agent
		for _, a := range disp.takeAssigns() {
			s.JobStarted(ctx, a.worker, Ref{a.job.ID, a.job.Attempt}, now())
			out := scheduler.Exited
			code := 0
			if r.IntN(3) == 0 {
				code = 1
			}
			s.JobFinished(ctx, a.worker, scheduler.Finish{JobID: a.job.ID, Attempt: a.job.Attempt, Outcome: out, ExitCode: code})
		}
		for _, c := range disp.takeCancels() {
			if j, err := s.Get(ctx, c.JobID); err == nil && j.State == job.Running {
				s.JobFinished(ctx, j.Worker, scheduler.Finish{JobID: j.ID, Attempt: j.Attempt, Outcome: scheduler.Killed, ExitCode: -1})
			}
		}
		s.Heartbeat("w1", nil)
	})
	run(func(r *rand.Rand) { // passes and the clock
		clock.Add(int64(300 * time.Millisecond))
		s.Pass(ctx)
	})
	writers.Wait()
	close(stop)
	wg.Wait()
	before, err := s.Tenant(job.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int{}
	st.Scan(ctx, func(j *job.Job) error { stored[j.ID]++; return nil })
	s2 := New(cfg)
	if err := s2.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := s2.Tenant(job.DefaultTenant)
	t.Logf("%d ids, %d arrays, %d jobs stored; before restart %+v; after %+v", len(ids), len(arrays), len(stored),
		[3]int{before.PendingJobs, before.Scheduled, before.RunningJobs}, [3]int{after.PendingJobs, after.Scheduled, after.RunningJobs})
	if before.PendingJobs != after.PendingJobs || before.Scheduled != after.Scheduled || before.RunningJobs != after.RunningJobs {
		t.Errorf("figures drifted: before restart pending %d scheduled %d running %d; recounted pending %d scheduled %d running %d",
			before.PendingJobs, before.Scheduled, before.RunningJobs, after.PendingJobs, after.Scheduled, after.RunningJobs)
	}
	// Every task of a cancelled array is terminal or stopping.
	for _, a := range arrays {
		st := s.arrays[a]
		if st == nil || !st.rec.Cancelled {
			continue
		}
		for p := range st.rec.Len() {
			j, err := s.Get(ctx, job.TaskID(a, p))
			if err != nil {
				continue
			}
			if !j.State.Terminal() && j.Stop == job.NoStop {
				t.Errorf("task %s of cancelled array %s is %s with no stop", j.ID, a, j.State)
			}
		}
	}
}
