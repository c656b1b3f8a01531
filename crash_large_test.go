package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/store"
)

// TestCrashDuringLargeWrites SIGKILLs the server while clients submit
// batches of thousands of jobs (their index chunks made before the commit)
// and cancel large arrays some of whose tasks were cancelled one by one,
// then checks the file (indexes and counts included) before restarting on
// it, and that every acknowledged job is there in its state.
func TestCrashDuringLargeWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("several server restarts")
	}
	dir := t.TempDir()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	want := map[string]pb.JobState{}
	var mu sync.Mutex
	for round := range 4 {
		srv := startServer(t, dir)
		c := dial(t, srv.grpcAddr)
		checkJobs(t, c.Jobs(), want, round)
		ctx := context.Background()
		var (
			wg     sync.WaitGroup
			calls  atomic.Int64
			once   sync.Once
			killed = make(chan struct{})
		)
		killAfter := int64(2 + rng.IntN(12)) // acknowledged calls before the kill
		for g := range 3 {
			wg.Go(func() {
				for i := 0; ; i++ {
					acks, err := func() (map[string]pb.JobState, error) {
						if g < 2 {
							req := &pb.SubmitBatchRequest{}
							n := []int{300, 1000, 4000, 10000}[(i+g)%4]
							for k := range n {
								req.Specs = append(req.Specs, &pb.JobSpec{Name: fmt.Sprintf("r%d-g%d-%d", round, g, i), Command: []string{"true"},
									Labels: map[string]string{"k": fmt.Sprint(k % 3)}})
							}
							resp, err := c.Jobs().SubmitBatch(ctx, req)
							if err != nil {
								return nil, err
							}
							out := map[string]pb.JobState{}
							for _, id := range resp.GetIds() {
								out[id] = pb.JobState_JOB_STATE_PENDING
							}
							return out, nil
						}
						const tasks = 3000
						resp, err := c.Jobs().Submit(ctx, &pb.SubmitRequest{Spec: &pb.JobSpec{Name: fmt.Sprintf("r%d-a%d", round, i), Command: []string{"true"}},
							Array: fmt.Sprintf("0-%d", tasks-1)})
						if err != nil {
							return nil, err
						}
						out := map[string]pb.JobState{}
						for p := range tasks {
							out[job.TaskID(resp.GetId(), p)] = pb.JobState_JOB_STATE_PENDING
						}
						for p := 0; p < tasks; p += 97 {
							id := job.TaskID(resp.GetId(), p)
							if _, err := c.Jobs().Cancel(ctx, &pb.CancelJobRequest{Id: id}); err != nil {
								return out, err
							}
							out[id] = pb.JobState_JOB_STATE_CANCELLED
						}
						if _, err := c.Jobs().CancelArray(ctx, &pb.CancelArrayRequest{Id: resp.GetId()}); err != nil {
							return out, err
						}
						for id := range out {
							out[id] = pb.JobState_JOB_STATE_CANCELLED
						}
						return out, nil
					}()
					mu.Lock()
					for id, st := range acks {
						if old, ok := want[id]; !ok || old == pb.JobState_JOB_STATE_PENDING {
							want[id] = st
						}
					}
					mu.Unlock()
					if err != nil {
						// The server is gone (or failed: end the round).
						once.Do(func() { srv.kill(); close(killed) })
						return
					}
					if calls.Add(1) == killAfter {
						once.Do(func() { srv.kill(); close(killed) })
					}
				}
			})
		}
		<-killed
		wg.Wait()
		copyPath := filepath.Join(t.TempDir(), "hodei.db")
		copyFile(t, filepath.Join(dir, "hodei.db"), copyPath)
		if err := store.CheckFile(copyPath); err != nil {
			t.Fatalf("round %d: the file after SIGKILL: %v", round, err)
		}
		t.Logf("round %d: %d jobs acknowledged", round, len(want))
	}
	srv := startServer(t, dir)
	checkJobs(t, dial(t, srv.grpcAddr).Jobs(), want, 4)
}
