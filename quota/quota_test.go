package quota

import (
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

func TestAdmitWithoutBurst(t *testing.T) {
	one := job.Resources{Slots: 1, CPUMillis: 500}
	for _, tt := range []struct {
		name    string
		l       Limits
		running job.Resources
		want    bool
	}{
		{"Unlimited", Limits{}, job.Resources{Slots: 100}, true},
		{"UnderSlots", Limits{MaxRunning: job.Resources{Slots: 2}}, job.Resources{Slots: 1}, true},
		{"AtSlots", Limits{MaxRunning: job.Resources{Slots: 2}}, job.Resources{Slots: 2}, false},
		{"OverCPU", Limits{MaxRunning: job.Resources{CPUMillis: 800}}, job.Resources{CPUMillis: 400}, false},
		{"Memory", Limits{MaxRunning: job.Resources{MemoryMiB: 100}}, job.Resources{MemoryMiB: 100}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, got := tt.l.Admit(Burst{}, tt.running, one, time.Time{}); got != tt.want {
				t.Errorf("Admit = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBurstCycle(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := Limits{MaxRunning: job.Resources{Slots: 4}, Burst: 1.5, BurstFor: time.Minute, Cooldown: 5 * time.Minute}
	slot := job.Resources{Slots: 1}
	four := job.Resources{Slots: 4}

	b, ok := l.Admit(Burst{}, job.Resources{Slots: 3}, slot, t0)
	if !ok || b.Phase != Steady {
		t.Fatalf("within the limit: Admit = %+v, %v; want Steady, true", b, ok)
	}
	b, ok = l.Admit(Burst{}, four, slot, t0)
	if !ok || b.Phase != Bursting || !b.Until.Equal(t0.Add(time.Minute)) {
		t.Fatalf("past the limit: Admit = %+v, %v; want a burst until t0+1m", b, ok)
	}
	if _, ok := l.Admit(b, job.Resources{Slots: 6}, slot, t0); ok {
		t.Fatal("Admit let a burst pass 1.5 × 4 = 6 slots")
	}
	if c := l.Cap(b); c.Slots != 6 {
		t.Fatalf("Cap while bursting = %d slots, want 6", c.Slots)
	}
	mid, ended := l.At(b, t0.Add(30*time.Second))
	if ended || mid != b {
		t.Fatalf("At mid-burst = %+v, %v; want unchanged", mid, ended)
	}
	cool, ended := l.At(b, t0.Add(time.Minute))
	if !ended || cool.Phase != Cooling || !cool.Until.Equal(t0.Add(6*time.Minute)) {
		t.Fatalf("At burst end = %+v, %v; want a cooldown until t0+6m, ended", cool, ended)
	}
	if !l.Over(cool, job.Resources{Slots: 5}) {
		t.Fatal("5 slots during the cooldown are not over the limit of 4")
	}
	if _, ok := l.Admit(cool, four, slot, t0.Add(2*time.Minute)); ok {
		t.Fatal("Admit started a burst during the cooldown")
	}
	steady, _ := l.At(cool, t0.Add(6*time.Minute))
	if steady.Phase != Steady {
		t.Fatalf("At after the cooldown = %+v, want Steady", steady)
	}
	if _, ok := (Limits{MaxRunning: four}).Admit(Burst{}, four, slot, t0); ok {
		t.Fatal("a tenant without burst passed its limit")
	}
}
