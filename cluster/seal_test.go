package cluster

import (
	"testing"

	"github.com/hodei-jobs/hodei/job"
)

// TestSealSecrets checks that every new job reaches the store and memory
// with its secret env sealed for its own id, whichever call made it.
func TestSealSecrets(t *testing.T) {
	fakeSeal := func(j *job.Job) {
		m := make(map[string]string, len(j.Spec.SecretEnv))
		for k, v := range j.Spec.SecretEnv {
			m[k] = "sealed/" + j.ID + "/" + v
		}
		j.Spec.SecretEnv = m
	}
	secrets := func() map[string]string { return map[string]string{"TOKEN": "plain-value"} }
	for _, tc := range []struct {
		name   string
		sealed int // jobs with secrets
		submit func(h *harness) []*job.Job
	}{
		{"Submit", 1, func(h *harness) []*job.Job {
			return []*job.Job{h.submit(job.Spec{SecretEnv: secrets()})}
		}},
		{"RunPipeline", 3, func(h *harness) []*job.Job {
			_, jobs, err := h.s.RunPipeline(h.ctx, job.PipelineSpec{Name: "p", Steps: []job.Step{
				{Name: "a", Spec: job.Spec{Command: []string{"true"}, SecretEnv: secrets()},
					Matrix: []job.MatrixAxis{{Key: "X", Values: []string{"1", "2"}}}},
				{Name: "b", Spec: job.Spec{Command: []string{"true"}, SecretEnv: secrets()}, Needs: []string{"a"}},
				{Name: "c", Spec: job.Spec{Command: []string{"true"}}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			return jobs
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.SealSecrets = fakeSeal })
			jobs := tc.submit(h)
			sealed := 0
			for _, j := range jobs {
				if len(j.Spec.SecretEnv) == 0 {
					continue
				}
				sealed++
				want := "sealed/" + j.ID + "/plain-value"
				stored, err := h.store.Get(h.ctx, j.ID)
				if err != nil {
					t.Fatal(err)
				}
				for where, got := range map[string]*job.Job{"returned": j, "stored": stored, "in memory": h.get(j.ID)} {
					if v := got.Spec.SecretEnv["TOKEN"]; v != want {
						t.Errorf("%s job %s: TOKEN = %q, want %q", where, j.ID, v, want)
					}
				}
			}
			if sealed != tc.sealed {
				t.Fatalf("%d jobs have secrets, want %d", sealed, tc.sealed)
			}
		})
	}
}

// The tasks of an array share the values sealed with the array's id; a
// task becomes a stored job when it is dispatched.
func TestSealArrayOnce(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.SealSecrets = func(j *job.Job) {
			m := make(map[string]string, len(j.Spec.SecretEnv))
			for k, v := range j.Spec.SecretEnv {
				m[k] = "sealed/" + j.ID + "/" + v
			}
			j.Spec.SecretEnv = m
		}
	})
	a, err := h.s.SubmitArray(h.ctx, job.Spec{Command: []string{"true"}, SecretEnv: map[string]string{"TOKEN": "plain-value"}}, job.ArraySpec{First: 1, Last: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := "sealed/" + a.ID + "/plain-value"
	stored, err := h.store.Arrays(h.ctx)
	if err != nil || len(stored) != 1 || stored[0].Spec.SecretEnv["TOKEN"] != want {
		t.Fatalf("stored arrays %v (%v), want one with TOKEN %q", stored, err, want)
	}
	h.worker("w", 4, nil)
	h.pass()
	for p := range 3 {
		j, err := h.store.Get(h.ctx, job.TaskID(a.ID, p))
		if err != nil || j.Spec.SecretEnv["TOKEN"] != want {
			t.Fatalf("task %d: %v, TOKEN %q; want %q", p, err, j.Spec.SecretEnv["TOKEN"], want)
		}
	}
}
