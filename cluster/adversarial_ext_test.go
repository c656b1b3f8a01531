package cluster_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
	"github.com/hodei-jobs/hodei/store"
)

type disp struct {
	mu sync.Mutex
	as []*job.Job
}

func (d *disp) Assign(w string, j *job.Job) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.as = append(d.as, j)
	return true
}
func (d *disp) Cancel(string, cluster.CancelOrder) bool { return true }
func (d *disp) take() []*job.Job {
	d.mu.Lock()
	defer d.mu.Unlock()
	a := d.as
	d.as = nil
	return a
}

type bolted struct {
	t    *testing.T
	ctx  context.Context
	path string
	db   *store.DB
	s    *cluster.Cluster
	d    *disp
	now  time.Time
}

func newBolted(t *testing.T) *bolted {
	b := &bolted{t: t, ctx: context.Background(), path: filepath.Join(t.TempDir(), "hodei.db"), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	b.open()
	t.Cleanup(func() { b.db.Close() })
	return b
}

func (b *bolted) open() {
	db, err := store.Open(b.path, store.Options{NoSync: true})
	if err != nil {
		b.t.Fatal(err)
	}
	b.db, b.d = db, &disp{}
	b.s = cluster.New(cluster.Config{Store: db, Dispatcher: b.d, Now: func() time.Time { return b.now },
		Settings: cluster.Settings{Heartbeat: time.Second, Lease: 5 * time.Second, KillGrace: 2 * time.Second}})
	if err := b.s.Recover(b.ctx); err != nil {
		b.t.Fatal(err)
	}
}

func (b *bolted) restart() {
	b.db.Close()
	b.open()
}

func (b *bolted) worker(id string, slots int64) {
	if _, err := b.s.WorkerHello(b.ctx, cluster.Hello{Worker: &job.Worker{ID: id, Name: id, Capacity: job.Resources{Slots: slots, CPUMillis: slots * 1000, MemoryMiB: slots * 1024}}}); err != nil {
		b.t.Fatal(err)
	}
}

func (b *bolted) runAll() []*job.Job {
	b.s.Pass(b.ctx)
	as := b.d.take()
	for _, j := range as {
		if err := b.s.JobStarted(b.ctx, j.Worker, cluster.Ref{j.ID, j.Attempt}, b.now); err != nil {
			b.t.Fatal(err)
		}
		if _, err := b.s.JobFinished(b.ctx, j.Worker, scheduler.Finish{JobID: j.ID, Attempt: j.Attempt, Outcome: scheduler.Exited}); err != nil {
			b.t.Fatal(err)
		}
	}
	return as
}

func (b *bolted) retention(keep time.Duration) {
	before := b.now.Add(-keep)
	ids, err := b.db.DeleteFinished(b.ctx, before, 1000, b.s.Retain(b.ctx, before))
	if err != nil {
		b.t.Fatal(err)
	}
	b.s.Forget(b.ctx, ids)
}

func (b *bolted) check() {
	b.t.Helper()
	b.db.Close()
	if err := store.CheckFile(b.path); err != nil {
		b.t.Errorf("CheckFile: %v", err)
	}
	b.open()
}

// Cancelling an array after retention deleted one of its finished tasks:
// the store counts the deleted task as not materialized and takes one too
// many off the tenant's queued count; with nothing else queued the cancel
// fails for good.
func TestAdversarialCancelArrayAfterRetention(t *testing.T) {
	b := newBolted(t)
	b.worker("w1", 1)
	a, err := b.s.SubmitArray(b.ctx, job.Spec{Command: []string{"true"}}, job.ArraySpec{First: 0, Last: 2})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(b.runAll()); n != 1 {
		t.Fatalf("ran %d", n)
	}
	b.now = b.now.Add(time.Hour)
	b.retention(time.Minute)
	_, n, err := b.s.CancelArray(b.ctx, a.ID, "")
	if err != nil {
		t.Fatalf("cancel array after retention took a finished task: %v", err)
	}
	if n != 2 {
		t.Errorf("cancelled %d, want 2", n)
	}
	b.check()
}
