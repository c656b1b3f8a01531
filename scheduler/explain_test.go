package scheduler

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/quota"
)

// worker is a registered worker of slots with 1,000 CPU millis and 1,024
// MiB per slot, ready unless st says otherwise.
func worker(slots int64, labels map[string]string, st ...job.WorkerState) WorkerStatus {
	w := WorkerStatus{Labels: labels, Capacity: job.Resources{Slots: slots, CPUMillis: slots * 1000, MemoryMiB: slots * 1024},
		State: job.WorkerReady, Connected: true}
	if len(st) > 0 {
		w.State = st[0]
		w.Connected = st[0] != job.WorkerDown && st[0] != job.WorkerUnknown
	}
	return w
}

func TestUnfit(t *testing.T) {
	zoneA := map[string]string{"zone": "a"}
	big := WorkerStatus{Labels: zoneA, Capacity: job.Resources{Slots: 2, CPUMillis: 16000, MemoryMiB: 15890}, State: job.WorkerReady, Connected: true}
	three := []WorkerStatus{worker(2, zoneA), worker(1, map[string]string{"zone": "b"}), worker(1, zoneA)}
	for _, tt := range []struct {
		name    string
		req     job.Resources
		sel     map[string]string
		workers []WorkerStatus
		kind    WhyKind
		text    string
	}{
		{"Fits", job.Resources{Slots: 2}, zoneA, three, WhyNone, ""},
		{"NoWorkers", job.Resources{}, nil, nil, WhyNoWorkers, "no worker has registered; start one with 'hodei agent'"},
		{"Label", job.Resources{}, map[string]string{"zone": "c"}, three, WhyLabels, "no ready worker has label zone=c (0 of 3)"},
		{"LabelNamesTheMissingOne", job.Resources{}, map[string]string{"zone": "a", "gpu": "yes"}, three, WhyLabels, "no ready worker has label gpu=yes (0 of 3)"},
		{"LabelsTogether", job.Resources{}, map[string]string{"zone": "a", "disk": "ssd"},
			[]WorkerStatus{worker(1, zoneA), worker(1, map[string]string{"zone": "b", "disk": "ssd"})},
			WhyLabels, "no ready worker has labels disk=ssd,zone=a together (0 of 2)"},
		{"Slots", job.Resources{Slots: 5}, nil, three, WhySlots, "needs 5 slots; the largest worker has 2"},
		{"SlotsWithSelector", job.Resources{Slots: 2}, map[string]string{"zone": "b"}, three, WhySlots, "needs 2 slots; the largest worker with zone=b has 1"},
		{"Memory", job.Resources{MemoryMiB: 999999}, nil, []WorkerStatus{big, worker(1, nil)}, WhyMemory, "needs 999,999 MiB; the largest worker has 15,890 MiB"},
		{"CPU", job.Resources{CPUMillis: 64000}, nil, []WorkerStatus{big}, WhyCPU, "needs 64,000 CPU millis; the largest worker has 16,000 CPU millis"},
		{"NotAtOnce", job.Resources{Slots: 2, CPUMillis: 4000}, nil,
			[]WorkerStatus{worker(2, nil), {Capacity: job.Resources{Slots: 1, CPUMillis: 8000, MemoryMiB: 1024}, State: job.WorkerReady, Connected: true}},
			WhyResources, "no ready worker has 2 slots, 4,000 CPU millis and 0 MiB at once (0 of 2)"},
		{"Draining", job.Resources{}, map[string]string{"zone": "b"},
			[]WorkerStatus{worker(2, zoneA), worker(1, map[string]string{"zone": "b"}, job.WorkerDraining)},
			WhyDraining, "all matching workers draining (1 of 2 workers match)"},
		{"DrainingOrDown", job.Resources{Slots: 2}, nil,
			[]WorkerStatus{worker(1, nil), worker(2, nil, job.WorkerDraining), worker(4, nil, job.WorkerDown)},
			WhyDraining, "all matching workers draining or down (1 draining, 1 down)"},
		{"Down", job.Resources{Slots: 2}, nil,
			[]WorkerStatus{worker(1, nil), worker(2, nil, job.WorkerUnknown)},
			WhyDown, "all matching workers down or disconnected (1 of 2 workers match)"},
		{"NoneReadyExplainsAgainstAll", job.Resources{}, map[string]string{"zone": "c"},
			[]WorkerStatus{worker(1, zoneA, job.WorkerDown), worker(1, zoneA, job.WorkerDraining)},
			WhyLabels, "no registered worker has label zone=c (0 of 2)"},
		{"ZeroSlotsTakeOne", job.Resources{}, nil, []WorkerStatus{worker(0, nil)}, WhySlots, "needs 1 slot; the largest worker has 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			why := Unfit(tt.req, tt.sel, tt.workers)
			if why.Kind != tt.kind || why.String() != tt.text {
				t.Fatalf("Unfit = %s %q, want %s %q", why.Kind, why, tt.kind, tt.text)
			}
			if why.Unplaceable() != (tt.kind != WhyNone) {
				t.Fatalf("Unplaceable = %v for %s", why.Unplaceable(), why.Kind)
			}
			// The workers' order does not matter.
			for range 5 {
				ws := append([]WorkerStatus(nil), tt.workers...)
				rand.Shuffle(len(ws), func(i, j int) { ws[i], ws[j] = ws[j], ws[i] })
				if got := Unfit(tt.req, tt.sel, ws); got != why {
					t.Fatalf("shuffled workers: %q, want %q", got, why)
				}
			}
		})
	}
}

func TestNeverFits(t *testing.T) {
	ws := []WorkerStatus{worker(2, map[string]string{"zone": "a"}, job.WorkerDraining), worker(1, nil, job.WorkerDown)}
	for _, tt := range []struct {
		name string
		req  job.Resources
		sel  map[string]string
		ws   []WorkerStatus
		text string
	}{
		{"DrainingCounts", job.Resources{Slots: 2}, map[string]string{"zone": "a"}, ws, ""},
		{"DownCounts", job.Resources{Slots: 1}, nil, ws, ""},
		{"Label", job.Resources{}, map[string]string{"zone": "c"}, ws, "no registered worker has label zone=c (0 of 2)"},
		{"Slots", job.Resources{Slots: 3}, nil, ws, "needs 3 slots; the largest registered worker has 2"},
		{"None", job.Resources{}, nil, nil, "no worker has registered; start one with 'hodei agent'"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := NeverFits(tt.req, tt.sel, tt.ws).String(); got != tt.text {
				t.Fatalf("NeverFits = %q, want %q", got, tt.text)
			}
		})
	}
}

func TestTenantLimit(t *testing.T) {
	eight := quota.Limits{MaxRunning: job.Resources{Slots: 8}}
	burst := quota.Limits{MaxRunning: job.Resources{Slots: 8}, Burst: 1.5, BurstFor: time.Minute}
	for _, tt := range []struct {
		name  string
		l     quota.Limits
		b     quota.Burst
		held  job.Resources
		req   job.Resources
		text  string
		admit bool
	}{
		{"Under", eight, quota.Burst{}, job.Resources{Slots: 7}, job.Resources{Slots: 1}, "", true},
		{"At", eight, quota.Burst{}, job.Resources{Slots: 8}, job.Resources{Slots: 1}, "tenant prod at its max-running limit (8 of 8)", false},
		{"Near", eight, quota.Burst{}, job.Resources{Slots: 6}, job.Resources{Slots: 4}, "tenant prod near its max-running limit (6 of 8 held; the job needs 4)", false},
		{"Never", eight, quota.Burst{}, job.Resources{}, job.Resources{Slots: 10}, "needs 10 slots; tenant prod's max-running limit is 8", false},
		{"CPU", quota.Limits{MaxRunning: job.Resources{CPUMillis: 8000}}, quota.Burst{}, job.Resources{CPUMillis: 8000}, job.Resources{CPUMillis: 500},
			"tenant prod at its cpu limit (8,000 of 8,000 CPU millis)", false},
		{"BurstLeft", burst, quota.Burst{}, job.Resources{Slots: 8}, job.Resources{Slots: 1}, "", true},
		{"BurstUsed", burst, quota.Burst{Phase: quota.Bursting, Until: t0.Add(time.Minute)}, job.Resources{Slots: 12}, job.Resources{Slots: 1},
			"tenant prod at its max-running limit (12 of 12)", false},
		{"Cooling", burst, quota.Burst{Phase: quota.Cooling, Until: t0.Add(time.Minute)}, job.Resources{Slots: 8}, job.Resources{Slots: 1},
			"tenant prod at its max-running limit (8 of 8)", false},
		{"Unlimited", quota.Limits{}, quota.Burst{}, job.Resources{Slots: 1000}, job.Resources{Slots: 1}, "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			why := TenantLimit("prod", tt.l, tt.b, tt.held, tt.req, t0)
			if why.String() != tt.text {
				t.Fatalf("TenantLimit = %q, want %q", why, tt.text)
			}
			if _, ok := tt.l.Admit(tt.b, tt.held, tt.req, t0); ok != tt.admit || (why.Kind == WhyNone) != ok {
				t.Fatalf("Admit = %v, Why %s; want admit %v", ok, why.Kind, tt.admit)
			}
		})
	}
}

func TestWhyString(t *testing.T) {
	for _, tt := range []struct {
		why  Why
		text string
	}{
		{Why{Kind: WhyDependency, Dep: "01JABC", DepState: job.Running}, "waiting for 01JABC (RUNNING)"},
		{Why{Kind: WhyBackoff, Attempt: 2, Left: 2400 * time.Millisecond}, "attempt 2 waits out its retry backoff (2s left)"},
		{Why{Kind: WhyArrayLimit, Array: "01JARR", Running: 10, ArrayCap: 10}, "array 01JARR at its limit (10 of 10 running)"},
		{Why{Kind: WhyQueued, Tenant: "prod", Ahead: 1234}, "1,234 ahead in tenant prod"},
		{Why{Kind: WhyQueued, Tenant: "prod", Ahead: 1000, AtLeast: true}, "1,000+ ahead in tenant prod"},
		{Why{Kind: WhyQueued, Tenant: "prod"}, "next in tenant prod"},
		{Reserved(job.Resources{Slots: 2}, "w1", job.Resources{Slots: 1, CPUMillis: 8000}), "waits for 2 slots on w1; 1 free"},
		{Reserved(job.Resources{}, "w1", job.Resources{CPUMillis: 8000}), "waits for 1 slot on w1; 0 free"},
		{Reserved(job.Resources{CPUMillis: 4000}, "w1", job.Resources{Slots: 1, CPUMillis: 2000}), "waits for 4000 CPU millis on w1; 2,000 free"},
		{Reserved(job.Resources{MemoryMiB: 4096}, "w1", job.Resources{Slots: 1, CPUMillis: 2000, MemoryMiB: 1024}), "waits for 4096 MiB on w1; 1,024 free"},
		{HeldBack("01JBIG", Reserved(job.Resources{Slots: 2}, "w1", job.Resources{Slots: 1})), "behind 01JBIG (needs 2 slots on w1)"},
		{Why{}, ""},
	} {
		if got := tt.why.String(); got != tt.text {
			t.Errorf("%s: %q, want %q", tt.why.Kind, got, tt.text)
		}
	}
	if WhyHeldBack.String() != "held-back" || WhyTenantLimit.String() != "tenant-limit" || WhyKind(99).String() != "WhyKind(99)" {
		t.Errorf("kind names: %s, %s", WhyTenantLimit, WhyKind(99))
	}
}
