package server

import (
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestRestartedAgentUnstartedJob restarts an agent process (its first
// Hello says restarted) while a job assigned to it never started there:
// with its supervisors intact the job is assigned again on the same
// attempt, and without them it is lost.
func TestRestartedAgentUnstartedJob(t *testing.T) {
	for _, intact := range []bool{true, false} {
		t.Run(map[bool]string{true: "SupervisorsIntact", false: "SupervisorLost"}[intact], func(t *testing.T) {
			s := setup(t)
			a := connectAgent(t, s, hello("w1", 1))
			id := s.submit(t, &pb.JobSpec{Command: []string{"true"}})
			if got := a.recv().GetAssign().GetJob().GetId(); got != id {
				t.Fatalf("assigned %q, want %s", got, id)
			}
			a.close() // the agent process goes before starting it

			h := hello("w1", 1)
			h.Restarted, h.SupervisorsIntact = true, intact
			b := connectAgent(t, s, h)
			if !intact {
				j := s.waitJob(t, id, func(j *pb.Job) bool { return j.GetState() == pb.JobState_JOB_STATE_FAILED })
				if j.GetReason() != "worker lost" {
					t.Fatalf("reason %q, want worker lost", j.GetReason())
				}
				return
			}
			as := b.recvWithin(10 * time.Second).GetAssign()
			if as.GetJob().GetId() != id || as.GetJob().GetAttempt() != 1 {
				t.Fatalf("after the restart: assign %v, want %s attempt 1 again", as, id)
			}
			if j := s.waitJob(t, id, func(*pb.Job) bool { return true }); j.GetState() != pb.JobState_JOB_STATE_SCHEDULED {
				t.Fatalf("job %s, want SCHEDULED", j.GetState())
			}
		})
	}
}

// recvWithin is recv, failing the test when nothing comes within d.
func (a *scriptedAgent) recvWithin(d time.Duration) *pb.ServerMessage {
	a.t.Helper()
	got := make(chan *pb.ServerMessage, 1)
	go func() {
		m, err := a.stream.Recv()
		if err != nil {
			m = nil
		}
		got <- m
	}()
	select {
	case m := <-got:
		if m == nil {
			a.t.Fatal("agent recv: the stream ended")
		}
		return m
	case <-time.After(d):
		a.cancel() // ends the Recv above
		<-got
		a.t.Fatalf("agent recv: nothing within %v", d)
		return nil
	}
}
