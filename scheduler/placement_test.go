package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/hodei-jobs/hodei/job"
)

// scanPlace is the reference the placer must agree with: every feasible
// worker ranked by free slots (fewest for bin-pack, most for spread), then id.
func scanPlace(ws []WorkerView, j *job.Job, p Placement) int {
	best := -1
	for i := range ws {
		w := &ws[i]
		if !w.Free.Covers(j.Spec.Resources) || !job.LabelsMatch(w.Labels, j.Spec.Selector) {
			continue
		}
		if best < 0 {
			best = i
			continue
		}
		b := &ws[best]
		switch {
		case w.Free.Slots != b.Free.Slots && p == Spread:
			if w.Free.Slots > b.Free.Slots {
				best = i
			}
		case w.Free.Slots != b.Free.Slots:
			if w.Free.Slots < b.Free.Slots {
				best = i
			}
		case w.ID < b.ID:
			best = i
		}
	}
	return best
}

func TestPlacerAgreesWithAFullScan(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	zones := []string{"a", "b", "c"}
	for round := range 200 {
		var ws []WorkerView
		for i := range 1 + rng.IntN(30) {
			ws = append(ws, WorkerView{
				ID:     fmt.Sprintf("w%03d", rng.IntN(1000)*100+i), // unique, shuffled ids
				Labels: map[string]string{"zone": zones[rng.IntN(3)]},
				Free:   job.Resources{Slots: int64(1 + rng.IntN(8)), CPUMillis: int64(rng.IntN(8000)), MemoryMiB: int64(rng.IntN(8192))},
			})
		}
		for _, p := range []Placement{BinPack, Spread} {
			ref := append([]WorkerView(nil), ws...)
			pl := newPlacer(ws, p)
			for n := range 60 {
				j := &job.Job{ID: fmt.Sprint(n), Spec: job.Spec{Resources: job.Resources{
					Slots: int64(1 + rng.IntN(3)), CPUMillis: int64(rng.IntN(2000)), MemoryMiB: int64(rng.IntN(2048)),
				}}}
				if rng.IntN(3) == 0 {
					j.Spec.Selector = map[string]string{"zone": zones[rng.IntN(3)]}
				}
				want, got := scanPlace(ref, j, p), pl.place(WaitingOf(j, t0, 0))
				wantID, gotID := "", ""
				if want >= 0 {
					wantID = ref[want].ID
					ref[want].Free = ref[want].Free.Sub(j.Spec.Resources)
				}
				if got >= 0 {
					gotID = pl.id(got)
					pl.take(got, j.Spec.Resources)
				}
				if wantID != gotID {
					t.Fatalf("round %d placement %d job %d: placer chose %q, a full scan %q", round, p, n, gotID, wantID)
				}
			}
		}
	}
}

func TestPlacerWithAHugeWorker(t *testing.T) {
	pl := newPlacer([]WorkerView{{ID: "big", Free: job.Resources{Slots: 1 << 40}}, {ID: "small", Free: job.Resources{Slots: 2}}}, Spread)
	j := &job.Job{Spec: job.Spec{Resources: job.Resources{Slots: 1}}}
	if i := pl.place(WaitingOf(j, t0, 0)); i < 0 || pl.id(i) != "big" {
		t.Fatalf("spread chose %d", i)
	}
}
