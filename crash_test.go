package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

var crashRounds = flag.Int("crash.rounds", 5, "SIGKILL/restart rounds of TestCrashKeepsAcknowledgedJobs")

// TestCrashKeepsAcknowledgedJobs submits and cancels jobs from several
// goroutines — single jobs, arrays (one record for all their tasks) and
// batches — while the server is SIGKILLed at a random moment, restarts it on
// the same data dir, and checks that every acknowledged job is there with the
// state it was acknowledged in.
func TestCrashKeepsAcknowledgedJobs(t *testing.T) {
	dir := t.TempDir()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	want := map[string]pb.JobState{} // every acknowledged job → its acknowledged state
	for round := range *crashRounds {
		srv := startServer(t, dir)
		c := dial(t, srv.grpcAddr)
		checkJobs(t, c.Jobs(), want, round)

		killAfter := int64(50 + rng.IntN(1500)) // acknowledgements before the kill
		var (
			mu    sync.Mutex
			acked atomic.Int64
			wg    sync.WaitGroup
		)
		killed := make(chan struct{})
		var once sync.Once
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					var acks map[string]pb.JobState
					var err error
					switch g {
					case 6:
						acks, err = submitArray(c.Jobs(), round, i)
					case 7:
						acks, err = submitBatch(c.Jobs(), round, i)
					}
					if g >= 6 {
						if err != nil {
							return // the server is gone
						}
						mu.Lock()
						for id, st := range acks {
							if _, ok := want[id]; ok {
								t.Errorf("id %s acknowledged twice", id)
							}
							want[id] = st
						}
						mu.Unlock()
						if acked.Add(1) == killAfter {
							once.Do(func() { srv.kill(); close(killed) })
						}
						continue
					}
					spec := &pb.JobSpec{Name: fmt.Sprintf("r%d-g%d-%d", round, g, i), Command: []string{"true"}, Labels: map[string]string{"round": fmt.Sprint(round)}}
					resp, err := c.Jobs().Submit(context.Background(), &pb.SubmitRequest{Spec: spec})
					if err != nil {
						return // the server is gone
					}
					state := pb.JobState_JOB_STATE_PENDING
					if i%5 == 0 { // some jobs are cancelled, and that too must survive
						if _, err := c.Jobs().Cancel(context.Background(), &pb.CancelJobRequest{Id: resp.GetId()}); err == nil {
							state = pb.JobState_JOB_STATE_CANCELLED
						}
					}
					mu.Lock()
					if _, ok := want[resp.GetId()]; ok {
						t.Errorf("id %s acknowledged twice", resp.GetId())
					}
					want[resp.GetId()] = state
					mu.Unlock()
					if acked.Add(1) == killAfter {
						once.Do(func() { srv.kill(); close(killed) })
					}
				}
			}()
		}
		<-killed
		wg.Wait()
		t.Logf("round %d: killed after %d acknowledgements; %d jobs so far", round, acked.Load(), len(want))
	}
	srv := startServer(t, dir)
	checkJobs(t, dial(t, srv.grpcAddr).Jobs(), want, *crashRounds)
}

// checkJobs lists every stored job and compares it with want. A job the
// server stored but never acknowledged (killed before the answer) is fine;
// an acknowledged one that is missing or in another state is not. A job
// acknowledged as PENDING may have been cancelled in the moment of the kill
// (the cancel committed, its answer lost), so CANCELLED is accepted there.
func checkJobs(t *testing.T, jobs pb.JobServiceClient, want map[string]pb.JobState, round int) {
	t.Helper()
	got := map[string]pb.JobState{}
	req := &pb.ListJobsRequest{PageSize: 1000}
	for {
		resp, err := jobs.List(context.Background(), req)
		if err != nil {
			t.Fatalf("list after restart %d: %v", round, err)
		}
		for _, j := range resp.GetJobs() {
			got[j.GetId()] = j.GetState()
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	for id, st := range want {
		g, ok := got[id]
		switch {
		case !ok:
			t.Errorf("after restart %d: acknowledged job %s is missing", round, id)
		case g == st:
		case st == pb.JobState_JOB_STATE_PENDING && g == pb.JobState_JOB_STATE_CANCELLED:
			want[id] = g
		default:
			t.Errorf("after restart %d: job %s is %s, acknowledged as %s", round, id, g, st)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// submitArray submits an array of 20 tasks, cancels every third one, and
// returns its tasks with the states they were acknowledged in.
func submitArray(jobs pb.JobServiceClient, round, i int) (map[string]pb.JobState, error) {
	spec := &pb.JobSpec{Name: fmt.Sprintf("r%d-a%d", round, i), Command: []string{"true"}}
	resp, err := jobs.Submit(context.Background(), &pb.SubmitRequest{Spec: spec, Array: "0-19%5"})
	if err != nil {
		return nil, err
	}
	state := pb.JobState_JOB_STATE_PENDING
	if i%3 == 0 {
		if _, err := jobs.CancelArray(context.Background(), &pb.CancelArrayRequest{Id: resp.GetId()}); err == nil {
			state = pb.JobState_JOB_STATE_CANCELLED
		}
	}
	out := make(map[string]pb.JobState, 20)
	for p := range 20 {
		out[job.TaskID(resp.GetId(), p)] = state
	}
	return out, nil
}

// submitBatch submits 25 jobs in one SubmitBatch and returns their ids.
func submitBatch(jobs pb.JobServiceClient, round, i int) (map[string]pb.JobState, error) {
	req := &pb.SubmitBatchRequest{}
	for k := range 25 {
		req.Specs = append(req.Specs, &pb.JobSpec{Name: fmt.Sprintf("r%d-b%d-%d", round, i, k), Command: []string{"true"}})
	}
	resp, err := jobs.SubmitBatch(context.Background(), req)
	if err != nil {
		return nil, err
	}
	out := make(map[string]pb.JobState, len(resp.GetIds()))
	for _, id := range resp.GetIds() {
		out[id] = pb.JobState_JOB_STATE_PENDING
	}
	return out, nil
}
