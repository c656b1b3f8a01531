package agent

import (
	"runtime"
	"runtime/metrics"
	"testing"

	pb "github.com/hodei-jobs/hodei/proto"
)

// liveHeap returns the bytes of heap the garbage collector found live, after
// collecting twice so that what sync.Pools dropped is gone too.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// TestAgentForgetsAcknowledgedTasks runs jobs through the agent against a
// fake server and checks that, once the server has acknowledged every
// result, the agent holds nothing of them: no task, no pump, no journaled
// result, no spool file. With drops the server ends the stream instead of
// taking some results, and the agent delivers them again after reconnecting.
func TestAgentForgetsAcknowledgedTasks(t *testing.T) {
	for _, tc := range []struct {
		name      string
		dropEvery int
	}{
		{"OK", 0},
		{"Reconnects", 120},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeServer{parallel: 8, dropEvery: tc.dropEvery}
			a := startFake(t, f)
			f.run(t, 300)
			waitForgotten(t, a)
			f.mu.Lock()
			defer f.mu.Unlock()
			if tc.dropEvery > 0 && f.drops < 2 {
				t.Fatalf("the server dropped %d streams, want at least 2", f.drops)
			}
		})
	}
}

// TestAgentForgetsRunningTask has the server end each job when its first
// output arrives, as for a job cancelled at the server: the agent kills the
// attempt and forgets it, and sends no result for it, and the result that
// its end produces does not stay in the journal.
func TestAgentForgetsRunningTask(t *testing.T) {
	f := &fakeServer{parallel: 4, endOnOutput: true, kinds: []fakeKind{
		{spec: &pb.JobSpec{Command: []string{"/bin/sh", "-c", "echo ok; exec sleep 60"}}},
	}}
	a := startFake(t, f)
	f.run(t, 20)
	waitForgotten(t, a)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stale != 0 {
		t.Fatalf("the agent sent %d results of jobs it was told to forget, want 0", f.stale)
	}
}

// TestAgentHeapFlat checks that the agent's live heap does not grow with
// the number of jobs it has run: after 20,000 jobs it is within 1 MB of what
// it was after 1,000.
func TestAgentHeapFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 20,000 jobs; TestAgentForgetsAcknowledgedTasks checks the same in short")
	}
	const slack = 1 << 20
	f := &fakeServer{parallel: 16}
	a := startFake(t, f)
	f.run(t, 1000)
	waitForgotten(t, a)
	early := liveHeap()
	f.run(t, 19000)
	waitForgotten(t, a)
	late := liveHeap()
	t.Logf("live heap after 1,000 jobs: %d B; after 20,000: %d B (%+d B, %+.1f B/job)",
		early, late, late-early, float64(late-early)/19000)
	if late-early > slack {
		t.Fatalf("live heap grew by %d B over 19,000 jobs, want at most %d", late-early, slack)
	}
}

// BenchmarkAgentHeap runs b.N trivial jobs (half in a PTY, half with
// pipes and stderr) through the agent against a fake server, 16 at a time,
// and reports how much the agent's live heap grew per job, once the server
// acknowledged them all: near 0 when the agent forgets what it delivered.
func BenchmarkAgentHeap(b *testing.B) {
	f := &fakeServer{parallel: 16}
	a := startFake(b, f)
	f.run(b, 500) // warm up: pools, maps and buffers at their working size
	waitForgotten(b, a)
	before := liveHeap()
	b.ResetTimer()
	f.run(b, b.N)
	waitForgotten(b, a)
	b.StopTimer()
	after := liveHeap()
	b.ReportMetric(float64(after-before)/float64(b.N), "heap-B/job")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	b.ReportMetric(0, "ns/op")
}
