package cluster

import (
	"fmt"
	"slices"
	"testing"

	"github.com/hodei-jobs/hodei/job"
)

func TestWorkerPage(t *testing.T) {
	h := newHarness(t)
	var ids []string
	for i := range 10 {
		id := fmt.Sprintf("w%02d", i*2) // room for ids between them
		h.worker(id, 2, nil)
		ids = append(ids, id)
	}
	j := h.submit(job.Spec{Command: []string{"true"}})
	h.pass()
	running := h.wantState(j.ID, job.Scheduled)

	pageAll := func(limit int, between func()) []WorkerInfo {
		t.Helper()
		var out []WorkerInfo
		after := ""
		for {
			page, next := h.s.WorkerPage(after, limit)
			if len(page) > limit {
				t.Fatalf("page of %d, limit %d", len(page), limit)
			}
			out = append(out, page...)
			if next == "" {
				return out
			}
			if len(page) != limit || next != page[len(page)-1].Worker.ID {
				t.Fatalf("page of %d with next %q: want a full page ending at it", len(page), next)
			}
			after = next
			if between != nil {
				between()
			}
		}
	}
	idsOf := func(ws []WorkerInfo) []string {
		var out []string
		for _, w := range ws {
			out = append(out, w.Worker.ID)
		}
		return out
	}

	t.Run("AsWorkersListsThem", func(t *testing.T) {
		all := h.s.Workers()
		for _, limit := range []int{1, 3, 10, 1000} {
			got := pageAll(limit, nil)
			if !slices.Equal(idsOf(got), ids) {
				t.Fatalf("limit %d: %v, want %v", limit, idsOf(got), ids)
			}
			for i := range got {
				if got[i].Allocated != all[i].Allocated || !slices.Equal(got[i].Running, all[i].Running) {
					t.Errorf("limit %d: worker %s holds %v %v, Workers says %v %v", limit, got[i].Worker.ID,
						got[i].Allocated, got[i].Running, all[i].Allocated, all[i].Running)
				}
			}
		}
		w, ok := h.s.Worker(running.Worker)
		if !ok || !slices.Equal(w.Running, []string{j.ID}) || w.Allocated.Slots != 1 {
			t.Errorf("worker %s: %+v %v; want it running %s", running.Worker, w, ok, j.ID)
		}
	})
	t.Run("JoinAndLeaveWhilePaging", func(t *testing.T) {
		// Workers that join after the page read are listed when their id
		// is past it; none is listed twice, none that stayed is missed.
		joined := []string{"w01", "w19", "w99"}
		left := "w18"
		if running.Worker == left {
			left = "w16"
		}
		n := 0
		got := idsOf(pageAll(4, func() {
			if n == 0 {
				for _, id := range joined {
					h.worker(id, 1, nil)
				}
				h.s.WorkerGone(left)
				if err := h.s.RemoveWorker(h.ctx, left, nil); err != nil {
					t.Fatalf("remove %s: %v", left, err)
				}
			}
			n++
		}))
		// The first page was w00…w06: w01 joined before it, the others after.
		want := append(slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == left }), "w19", "w99")
		if !slices.Equal(got, want) {
			t.Errorf("got %v\nwant %v", got, want)
		}
		if got := idsOf(pageAll(1000, nil)); !slices.Equal(got, idsOf(h.s.Workers())) {
			t.Errorf("after: pages %v, Workers %v", got, idsOf(h.s.Workers()))
		}
	})
}

// BenchmarkWorkerPage times a page of 50 workers from the middle of
// 10,000, each running one job, against the whole list (Workers, what
// ListWorkers without page_size answers). It reports ms/op. Run it by
// name:
//
//	go test -run '^$' -bench WorkerPage -benchtime 200x ./cluster
func BenchmarkWorkerPage(b *testing.B) {
	const n = 10_000
	h := newHarness(b)
	h.busyWorkers(n)
	b.Run(fmt.Sprintf("workers=%d/page", n), func(b *testing.B) {
		for b.Loop() {
			if ws, next := h.s.WorkerPage("w05000", 50); len(ws) != 50 || next == "" || len(ws[0].Running) != 1 {
				b.Fatalf("%d workers, next %q", len(ws), next)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
	})
	b.Run(fmt.Sprintf("workers=%d/all", n), func(b *testing.B) {
		for b.Loop() {
			if ws := h.s.Workers(); len(ws) != n {
				b.Fatalf("%d workers", len(ws))
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
	})
}

// CountWorkers counts what Workers lists: states, with a leaving worker
// apart from the drained, and the slots of the workers not down.
func TestCountWorkers(t *testing.T) {
	h := newHarness(t)
	h.worker("w1", 4, nil)
	h.worker("w2", 2, nil)
	h.worker("w3", 1, nil)
	if _, err := h.s.Drain(h.ctx, "w2"); err != nil {
		t.Fatal(err)
	}
	j := h.submit(job.Spec{})
	h.pass()
	if len(h.disp.takeAssigns()) != 1 {
		t.Fatal("the job was not dispatched")
	}
	c := h.s.CountWorkers()
	var want WorkerCounts
	for _, w := range h.s.Workers() {
		switch {
		case w.State == job.WorkerReady:
			want.Ready++
		case w.State == job.WorkerDraining && w.Leaving:
			want.Leaving++
		case w.State == job.WorkerDraining:
			want.Draining++
		case w.State == job.WorkerDown:
			want.Down++
		default:
			want.Unknown++
		}
		if w.State != job.WorkerDown && w.State != job.WorkerUnknown {
			want.Slots += w.Worker.Capacity.Slots
			want.SlotsUsed += w.Allocated.Slots
		}
	}
	if c != want || c.Ready != 2 || c.Draining != 1 || c.Slots != 7 || c.SlotsUsed != j.Spec.Resources.Slots {
		t.Fatalf("counts %+v, want %+v (2 ready, 1 draining, 7 slots, %d used)", c, want, j.Spec.Resources.Slots)
	}
}
