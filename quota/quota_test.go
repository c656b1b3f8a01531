package quota

import (
	"testing"

	"github.com/hodei-jobs/hodei/job"
)

func TestLimits(t *testing.T) {
	one := job.Resources{Slots: 1, CPUMillis: 500}
	tests := []struct {
		name    string
		l       Limits
		running job.Resources
		run     bool
		queued  int
		queue   bool
	}{
		{"Unlimited", Limits{}, job.Resources{Slots: 100}, true, 1000, true},
		{"UnderSlots", Limits{MaxRunning: job.Resources{Slots: 2}}, job.Resources{Slots: 1}, true, 0, true},
		{"AtSlots", Limits{MaxRunning: job.Resources{Slots: 2}}, job.Resources{Slots: 2}, false, 0, true},
		{"OverCPU", Limits{MaxRunning: job.Resources{CPUMillis: 800}}, job.Resources{CPUMillis: 400}, false, 0, true},
		{"QueueFull", Limits{MaxQueued: 3}, job.Resources{}, true, 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.l.CanRun(tt.running, one); got != tt.run {
				t.Errorf("CanRun = %v, want %v", got, tt.run)
			}
			if got := tt.l.CanQueue(tt.queued, 1); got != tt.queue {
				t.Errorf("CanQueue = %v, want %v", got, tt.queue)
			}
		})
	}
}
