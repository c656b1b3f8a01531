package cluster

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// FuzzFairShare checks over random tenants, weights, job sizes and
// durations that every backlogged tenant's slot-time tracks its weight.
// `go test` runs the seeds below; `go test -fuzz FuzzFairShare` explores.
func FuzzFairShare(f *testing.F) {
	for _, seed := range []uint64{1, 2, 3, 42, 2026} {
		f.Add(seed)
	}
	if testing.Short() {
		f.Skip("long simulation")
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		s := newSim(t, 16, 4) // 64 slots
		weights := map[string]float64{}
		specs := map[string]job.Spec{}
		sizes := map[string]int64{}
		durations := map[string]time.Duration{}
		for i := range 2 + rng.IntN(4) {
			name := fmt.Sprintf("t%d", i)
			weights[name] = float64(1 + rng.IntN(8))
			sizes[name] = int64(1 + rng.IntN(2))
			durations[name] = time.Duration(5+rng.IntN(60)) * time.Second
			s.tenant(name, weights[name])
			specs[name] = job.Spec{Resources: job.Resources{Slots: sizes[name]}}
		}
		s.duration = func(j *job.Job) time.Duration {
			// Each tenant's jobs vary by ±50% around its mean.
			d := durations[j.Spec.Tenant]
			return d/2 + time.Duration(rng.Int64N(int64(d)))
		}
		warmup := s.h.now.Add(10 * time.Minute)
		end := warmup.Add(2 * time.Hour)
		reset := false
		for s.h.now.Before(end) {
			if !reset && !s.h.now.Before(warmup) {
				s.resetAccounts()
				reset = true
			}
			s.topUp(40, specs)
			s.step(time.Minute)
		}
		var sum float64
		for _, v := range s.slotTime {
			sum += v
		}
		for name := range weights {
			got, want := s.slotTime[name]/sum, weightShare(weights, name)
			if math.Abs(got-want) > 0.1*want+0.005 {
				t.Errorf("seed %d: %s (weight %.0f, %d-slot jobs of ~%s) held %.4f of the slot-time, want %.4f ±10%%",
					seed, name, weights[name], sizes[name], durations[name], got, want)
			}
		}
	})
}

// FuzzQuotaInvariants checks over random limits, bursts and arrivals that
// a tenant never runs past its limit outside a burst, nor past Burst × its
// limit, nor over it during a cooldown.
func FuzzQuotaInvariants(f *testing.F) {
	for _, seed := range []uint64{1, 7, 99, 2026} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, ^seed))
		s := newSim(t, 8, 4, func(c *Config) { c.Preemption = rng.IntN(2) == 0 }) // 32 slots
		var checks []func()
		specs := map[string]job.Spec{}
		for i := range 1 + rng.IntN(4) {
			name := fmt.Sprintf("q%d", i)
			s.tenant(name, float64(1+rng.IntN(4)), func(tn *job.Tenant) {
				tn.MaxRunning = job.Resources{Slots: int64(1 + rng.IntN(10))}
				if rng.IntN(3) > 0 {
					tn.Burst = 1 + float64(rng.IntN(30))/10
					tn.BurstFor = time.Duration(1+rng.IntN(300)) * time.Second
					tn.Cooldown = time.Duration(1+rng.IntN(600)) * time.Second
				}
				tn.Preemptible = rng.IntN(2) == 0
			})
			specs[name] = job.Spec{Resources: job.Resources{Slots: int64(1 + rng.IntN(2))}}
			checks = append(checks, burstCheck(s, name))
		}
		s.duration = func(*job.Job) time.Duration { return time.Duration(1+rng.IntN(600)) * time.Second }
		s.onStep = func() {
			for _, c := range checks {
				c()
			}
		}
		end := s.h.now.Add(2 * time.Hour)
		for s.h.now.Before(end) {
			if rng.IntN(3) == 0 { // arrivals come and go
				s.topUp(rng.IntN(30), specs)
			}
			s.step(time.Duration(1+rng.IntN(120)) * time.Second)
		}
	})
}
