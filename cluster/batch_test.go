package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hodei-jobs/hodei/job"
)

// batchSpecs returns n valid specs of tenant, named b0, b1, ….
func batchSpecs(n int, tenant string) []job.Spec {
	specs := make([]job.Spec, n)
	for i := range specs {
		specs[i] = job.Spec{Name: "b" + strings.Repeat("x", i%3), Tenant: tenant, Command: []string{"true"}, Priority: job.DefaultPriority}
	}
	return specs
}

// storedJobs counts the jobs in h's store and in its memory.
func (h *harness) storedJobs() (stored, inMemory int) {
	h.t.Helper()
	if err := h.store.Scan(h.ctx, func(*job.Job) error { stored++; return nil }); err != nil {
		h.t.Fatal(err)
	}
	for _, t := range h.s.Tenants() {
		inMemory += t.Queued
	}
	return stored, inMemory
}

func (h *harness) wantNothingStored() {
	h.t.Helper()
	if stored, mem := h.storedJobs(); stored != 0 || mem != 0 {
		h.t.Fatalf("after a refused batch: %d jobs stored, %d in memory; want none", stored, mem)
	}
}

func TestSubmitBatch(t *testing.T) {
	h := newHarness(t)
	specs := batchSpecs(5, "")
	specs[2].SecretEnv = map[string]string{"TOKEN": "plain-value"}
	jobs, err := h.s.SubmitBatch(h.ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != len(specs) {
		t.Fatalf("%d jobs for %d specs", len(jobs), len(specs))
	}
	for i, j := range jobs {
		if j.Spec.Name != specs[i].Name || j.Spec.Tenant != job.DefaultTenant {
			t.Errorf("job %d = %s/%q, want spec %d's name in the default tenant", i, j.Spec.Tenant, j.Spec.Name, i)
		}
		if i > 0 && j.ID <= jobs[i-1].ID {
			t.Errorf("ids out of order: %s after %s", j.ID, jobs[i-1].ID)
		}
		h.wantState(j.ID, job.Pending)
	}
	if stored, mem := h.storedJobs(); stored != 5 || mem != 5 {
		t.Fatalf("%d stored, %d in memory; want 5", stored, mem)
	}
	// Jobs of a batch are dispatched like any other.
	h.worker("w1", 8, nil)
	h.pass()
	for _, j := range jobs {
		h.wantState(j.ID, job.Scheduled)
	}
}

func TestSubmitBatchDependsOnStoredJobs(t *testing.T) {
	h := newHarness(t)
	dep := h.submit(job.Spec{})
	specs := batchSpecs(2, "")
	specs[1].DependsOn = []string{dep.ID}
	jobs, err := h.s.SubmitBatch(h.ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	h.worker("w1", 8, nil)
	h.pass()
	h.wantState(jobs[0].ID, job.Scheduled)
	h.wantState(jobs[1].ID, job.Pending) // waits for dep
}

func TestSubmitBatchSealsEachJob(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.SealSecrets = func(j *job.Job) {
			j.Spec.SecretEnv = map[string]string{"TOKEN": "sealed/" + j.ID}
		}
	})
	specs := batchSpecs(3, "")
	for i := range specs {
		specs[i].SecretEnv = map[string]string{"TOKEN": "plain-value"}
	}
	jobs, err := h.s.SubmitBatch(h.ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		stored, err := h.store.Get(h.ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got := stored.Spec.SecretEnv["TOKEN"]; got != "sealed/"+j.ID {
			t.Errorf("stored job %s: TOKEN = %q, want it sealed for its own id", j.ID, got)
		}
	}
}

// TestSubmitBatchAllOrNothing checks that one refused spec, wherever it
// is, fails the whole batch with its index in the error and stores nothing.
func TestSubmitBatchAllOrNothing(t *testing.T) {
	obs := &countingObserver{}
	h := newHarness(t, func(c *Config) { c.Observer = obs })
	if _, err := h.s.SetTenant(h.ctx, "small", func(tn *job.Tenant) {
		tn.MaxQueued = 5
		tn.MaxRunning = job.Resources{Slots: 2}
	}); err != nil {
		t.Fatal(err)
	}
	bad := func(i int, f func(*job.Spec)) []job.Spec {
		specs := batchSpecs(4, "")
		f(&specs[i])
		return specs
	}
	for _, tt := range []struct {
		name  string
		specs []job.Spec
		field string // of the *job.FieldError; "" for another error
		is    error
		text  string
	}{
		{"Empty", nil, "specs", job.ErrInvalid, "must not be empty"},
		{"OverMaxBatch", batchSpecs(job.MaxBatch+1, ""), "specs", job.ErrInvalid, "10001 specs are more than the limit of 10000"},
		{"OverMaxBytes", func() []job.Spec {
			specs := batchSpecs(4, "")
			for i := range specs {
				specs[i].Script = strings.Repeat("x", job.MaxSpecBytes-100)
				specs[i].Command = nil
			}
			return specs
		}(), "specs", job.ErrInvalid, "more than 3 MiB together (at spec 3)"},
		{"EmptyCommand", bad(3, func(s *job.Spec) { s.Command = nil }), "specs[3].command", job.ErrInvalid, "must not be empty"},
		{"Priority", bad(0, func(s *job.Spec) { s.Priority = 1001 }), "specs[0].priority", job.ErrInvalid, "between 0 and 1000"},
		{"Deadline", bad(1, func(s *job.Spec) { s.Deadline = h.now.Add(-1) }), "specs[1].deadline", job.ErrInvalid, "not in the future"},
		{"UnknownDependency", bad(2, func(s *job.Spec) { s.DependsOn = []string{"01ARZ3NDEKTSV4RRFFQ69G5FAV"} }),
			"specs[2].after", job.ErrInvalid, "is not a known job"},
		{"AboveTenantRunningLimit", bad(1, func(s *job.Spec) { s.Tenant, s.Resources.Slots = "small", 3 }),
			"specs[1].resources.slots", job.ErrInvalid, `running limit of tenant "small"`},
		{"UnknownTenant", bad(2, func(s *job.Spec) { s.Tenant = "nope" }), "", job.ErrNotFound, `specs[2]: tenant "nope" does not exist`},
		{"OverQueued", batchSpecs(6, "small"), "", job.ErrExhausted, `tenant "small" is at its max-queued limit of 5 (0 jobs queued, 6 more asked for)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			jobs, err := h.s.SubmitBatch(h.ctx, tt.specs)
			if err == nil {
				t.Fatalf("stored %d jobs, want the batch refused", len(jobs))
			}
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.is, tt.text)
			}
			fe, isField := errors.AsType[*job.FieldError](err)
			switch {
			case tt.field != "" && (!isField || fe.Field != tt.field):
				t.Fatalf("err = %#v, want a FieldError on %s", err, tt.field)
			case tt.field == "" && isField:
				t.Fatalf("err = %#v, want no FieldError", err)
			}
			if be, ok := errors.AsType[*job.BatchError](err); ok && be.Index != 2 {
				t.Fatalf("BatchError index %d, want 2", be.Index)
			}
			h.wantNothingStored()
		})
	}
	if obs.refused["small"] != 1 {
		t.Fatalf("refusals of small = %d, want 1 (the over-quota batch)", obs.refused["small"])
	}
	// At the limit the same tenant takes a whole batch.
	if _, err := h.s.SubmitBatch(h.ctx, batchSpecs(5, "small")); err != nil {
		t.Fatalf("a batch up to the limit: %v", err)
	}
	if _, err := h.s.SubmitBatch(h.ctx, batchSpecs(1, "small")); !errors.Is(err, job.ErrExhausted) {
		t.Fatalf("one more: %v, want ErrExhausted", err)
	}
}

func TestSubmitBatchOfMaxBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 jobs")
	}
	h := newHarness(t)
	jobs, err := h.s.SubmitBatch(h.ctx, batchSpecs(job.MaxBatch, ""))
	if err != nil || len(jobs) != job.MaxBatch {
		t.Fatalf("%d jobs, %v; want %d", len(jobs), err, job.MaxBatch)
	}
}

// insertHook is a Store that calls after once a new batch is stored, before
// Insert returns: what another client does between a submit's commit and
// its publishing.
type insertHook struct {
	Store
	after func([]*job.Job)
}

func (s *insertHook) Insert(ctx context.Context, jobs []*job.Job) error {
	if err := s.Store.Insert(ctx, jobs); err != nil {
		return err
	}
	s.after(jobs)
	return nil
}

// TestCancelBeforePublish cancels new jobs after their commit and before
// the submit files them: the submit must not file them again as pending
// (they would run, and count as queued, though cancelled).
func TestCancelBeforePublish(t *testing.T) {
	hook := &insertHook{}
	h := newHarness(t, func(c *Config) { hook.Store = c.Store; c.Store = hook })
	cancelAll := func(jobs []*job.Job) {
		for _, j := range jobs {
			if _, err := h.s.Cancel(h.ctx, j.ID, "changed my mind"); err != nil {
				t.Errorf("cancel %s: %v", j.ID, err)
			}
		}
	}
	hook.after = cancelAll
	one := h.submit(job.Spec{})
	batch, err := h.s.SubmitBatch(h.ctx, []job.Spec{{Command: []string{"true"}}, {Command: []string{"true"}}})
	require.NoError(t, err)
	hook.after = func([]*job.Job) {}
	other := h.submit(job.Spec{}) // not cancelled: filed
	h.worker("w", 8, nil)
	h.pass()
	for _, j := range append(batch, one) {
		h.wantState(j.ID, job.Cancelled)
	}
	h.wantState(other.ID, job.Scheduled)
	for _, ts := range h.s.Tenants() {
		require.Zero(t, ts.PendingJobs, "tenant %s", ts.Tenant.Name)
	}
}
