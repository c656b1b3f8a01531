package server

import (
	"bytes"
	"context"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestLogsResumeAcrossAttempts checks how a client resumes a broken
// follow: from (attempt, offset) with later_attempts it gets the rest of
// that attempt and then the later ones; without, that attempt only. The
// header of a follow comes before any output.
func TestLogsResumeAcrossAttempts(t *testing.T) {
	s := setup(t)
	a := connectAgent(t, s, hello("w1", 1))
	id := s.submit(t, &pb.JobSpec{Command: []string{"true"}, Retries: 1, BackoffMs: 1})

	// A follow of a job that has printed nothing yet is answered at once.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	early, err := s.jobs.Logs(ctx, &pb.LogsRequest{Id: id, Attempt: 1, Follow: true, LaterAttempts: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := early.Header(); err != nil {
		t.Fatalf("header of a follow before any output: %v", err)
	}

	run := func(attempt int32, out string, exit int32) {
		t.Helper()
		if got := a.recv().GetAssign().GetJob(); got.GetId() != id || got.GetAttempt() != attempt {
			t.Fatalf("assign %v, want attempt %d of %s", got, attempt, id)
		}
		a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Started{Started: &pb.JobStarted{JobId: id, Attempt: attempt}}})
		a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Log{Log: &pb.LogChunk{JobId: id, Attempt: attempt, Data: []byte(out)}}})
		a.recvAck()
		a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Finished{Finished: &pb.JobFinished{JobId: id, Attempt: attempt,
			Outcome: pb.Outcome_OUTCOME_EXITED, ExitCode: exit, LogSize: int64(len(out))}}})
		a.recvAck()
	}
	run(1, "first\n", 1)
	run(2, "second\n", 0)
	s.waitJob(t, id, func(j *pb.Job) bool { return j.GetState() == pb.JobState_JOB_STATE_COMPLETED })

	if got := collect(t, early.Recv, (*pb.LogData).GetData); string(got) != "first\nsecond\n" {
		t.Errorf("follow from attempt 1 with later attempts = %q", got)
	}
	for _, tc := range []struct {
		name string
		req  *pb.LogsRequest
		want string
	}{
		{"LaterAttempts", &pb.LogsRequest{Id: id, Attempt: 1, Offset: 3, Follow: true, LaterAttempts: true}, "st\nsecond\n"},
		{"AttemptOnly", &pb.LogsRequest{Id: id, Attempt: 1, Offset: 3, Follow: true}, "st\n"},
		{"AtTheEnd", &pb.LogsRequest{Id: id, Attempt: 1, Offset: 6, Follow: true, LaterAttempts: true}, "second\n"},
		{"LastAttempt", &pb.LogsRequest{Id: id, Attempt: 2, Offset: 7, Follow: true, LaterAttempts: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream, err := s.jobs.Logs(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := collect(t, stream.Recv, (*pb.LogData).GetData); !bytes.Equal(got, []byte(tc.want)) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
