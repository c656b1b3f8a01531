package cluster

import (
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// TestRestartedAgentHello reconciles a job assigned just before the agent
// process restarted, which the new process does not hold: with its
// supervisors intact it was never started, and it is assigned again on the
// same attempt; with a supervisor lost it may have run, and it is lost.
func TestRestartedAgentHello(t *testing.T) {
	for _, tc := range []struct {
		name   string
		intact bool
		want   job.State
	}{
		{name: "SupervisorsIntact", intact: true, want: job.Scheduled},
		{name: "SupervisorLost", intact: false, want: job.Failed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.worker("w1", 1, nil)
			j := h.submit(job.Spec{})
			h.pass()
			h.wantState(j.ID, job.Scheduled)
			h.disp.takeAssigns()
			h.advance(time.Second)
			rc, err := h.s.WorkerHello(h.ctx, Hello{
				Worker:    &job.Worker{ID: "w1", Name: "w1", Capacity: job.Resources{Slots: 1, CPUMillis: 1000, MemoryMiB: 1024}},
				Restarted: true, SupervisorsIntact: tc.intact, Since: h.now,
			})
			if err != nil {
				t.Fatal(err)
			}
			got := h.wantState(j.ID, tc.want)
			if tc.intact {
				if len(rc.Assign) != 1 || rc.Assign[0].ID != j.ID || got.Attempt != 1 {
					t.Fatalf("assign again: %d jobs, attempt %d; want %s on attempt 1", len(rc.Assign), got.Attempt, j.ID)
				}
				return
			}
			if len(rc.Assign) != 0 || got.Reason != scheduler.ReasonWorkerLost {
				t.Fatalf("assign %d, reason %q; want none and %q", len(rc.Assign), got.Reason, scheduler.ReasonWorkerLost)
			}
		})
	}
}
