package server

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/hodei-jobs/hodei/proto"
)

func TestRetentionDeletesOldFinishedJobsAndLogs(t *testing.T) {
	var offset atomic.Int64 // how far the fake clock is ahead of the real one
	s := setup(t, func(c *Config) {
		c.Retention = time.Hour
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	a := connectAgent(t, s, hello("w1", 1))
	done := s.submit(t, &pb.JobSpec{Command: []string{"true"}})
	a.recv() // Assign
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Log{Log: &pb.LogChunk{JobId: done, Attempt: 1, Data: []byte("out")}}})
	a.recvAck()
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Finished{Finished: &pb.JobFinished{JobId: done, Attempt: 1, Outcome: pb.Outcome_OUTCOME_EXITED, LogSize: 3}}})
	a.recvAck()
	waiting := s.submit(t, &pb.JobSpec{Command: []string{"true"}, Selector: map[string]string{"never": "matches"}})
	logDir := filepath.Join(s.dir, "logs", done)
	if _, err := os.Stat(logDir); err != nil {
		t.Fatalf("no log dir before retention: %v", err)
	}

	offset.Store(int64(30 * time.Minute))
	s.srv.sweep(context.Background())
	if _, err := s.jobs.Get(context.Background(), &pb.GetJobRequest{Id: done}); err != nil {
		t.Fatalf("job deleted before its retention ran out: %v", err)
	}
	offset.Store(int64(61 * time.Minute))
	s.srv.sweep(context.Background())
	if _, err := s.jobs.Get(context.Background(), &pb.GetJobRequest{Id: done}); status.Code(err) != codes.NotFound {
		t.Fatalf("finished job after retention: %v, want NotFound", err)
	}
	if _, err := os.Stat(logDir); !os.IsNotExist(err) {
		t.Fatalf("log dir after retention: %v, want gone", err)
	}
	resp, err := s.jobs.List(context.Background(), &pb.ListJobsRequest{})
	if err != nil || len(resp.GetJobs()) != 1 || resp.GetJobs()[0].GetId() != waiting {
		t.Fatalf("List after retention = %v, %v; want only the pending job", resp.GetJobs(), err)
	}
}
