package server

import (
	"context"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestStreamsPerToken: a token may hold MaxStreamsPerToken streams that
// follow jobs (logs -f, attach, watch) open at once; one more is
// ResourceExhausted naming the flag, other tokens are not affected, and
// an ended stream frees its place.
func TestStreamsPerToken(t *testing.T) {
	s := setup(t, func(c *Config) { c.MaxStreamsPerToken = 3 })
	id := runningJobWithOutput(t, s, 1)
	viewer, _ := s.createToken(t, "viewer")
	jobs := pb.NewJobServiceClient(s.dialToken(t, viewer))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// One of each kind, each answered (so open on the server).
	logs, err := jobs.Logs(ctx, &pb.LogsRequest{Id: id, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := logs.Header(); err != nil {
		t.Fatal(err)
	}
	att, err := jobs.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := att.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Open{Open: &pb.AttachOpen{JobId: id, Output: true, ReadOnly: true}}}); err != nil {
		t.Fatal(err)
	}
	if m, err := att.Recv(); err != nil || m.GetAttached() == nil {
		t.Fatalf("attach: %v, %v", m, err)
	}
	watchCtx, endWatch := context.WithCancel(ctx)
	watch, err := jobs.Watch(watchCtx, &pb.WatchRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}

	refused := func(t *testing.T, recv func() error) {
		t.Helper()
		err := recv()
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-streams-per-token 3") {
			t.Fatalf("stream past the limit: %v; want ResourceExhausted naming --max-streams-per-token", err)
		}
	}
	t.Run("Logs", func(t *testing.T) {
		st, err := jobs.Logs(ctx, &pb.LogsRequest{Id: id, Follow: true})
		if err != nil {
			t.Fatal(err)
		}
		refused(t, func() error { _, err := st.Recv(); return err })
	})
	t.Run("Attach", func(t *testing.T) {
		st, err := jobs.Attach(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Open{Open: &pb.AttachOpen{JobId: id, Output: true, ReadOnly: true}}}); err != nil {
			t.Fatal(err)
		}
		refused(t, func() error { _, err := st.Recv(); return err })
	})
	t.Run("Watch", func(t *testing.T) {
		st, err := jobs.Watch(ctx, &pb.WatchRequest{JobId: id})
		if err != nil {
			t.Fatal(err)
		}
		refused(t, func() error { _, err := st.Recv(); return err })
	})
	t.Run("LogsWithoutFollow", func(t *testing.T) {
		st, err := jobs.Logs(ctx, &pb.LogsRequest{Id: id})
		if err != nil {
			t.Fatal(err)
		}
		if m, err := st.Recv(); err != nil || len(m.GetData()) == 0 {
			t.Fatalf("logs without follow: %v, %v", m, err)
		}
	})
	t.Run("OtherToken", func(t *testing.T) {
		st, err := s.jobs.Logs(ctx, &pb.LogsRequest{Id: id, Follow: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Header(); err != nil {
			t.Fatal(err)
		}
		if m, err := st.Recv(); err != nil || len(m.GetData()) == 0 {
			t.Fatalf("another token's follow: %v, %v", m, err)
		}
	})
	t.Run("Freed", func(t *testing.T) {
		endWatch()
		// The watch's place comes back once its handler has returned:
		// a new follow is refused until then, and then served.
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case <-deadline:
				t.Fatal("the ended watch's place did not come back")
			case <-tick.C:
			}
			st, err := jobs.Logs(ctx, &pb.LogsRequest{Id: id, Follow: true})
			if err != nil {
				t.Fatal(err)
			}
			m, err := st.Recv()
			if err == nil && len(m.GetData()) > 0 {
				return
			}
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("after a stream ended: %v, %v", m, err)
			}
		}
	})
}

// TestAttachEndsAfterEnded: once AttachEnded is sent the server ends the
// stream itself (status OK), whether or not the client half-closes.
func TestAttachEndsAfterEnded(t *testing.T) {
	s := setup(t)
	a := connectAgent(t, s, hello("w1", 2))
	id := runningJob(t, s, a, &pb.JobSpec{Command: []string{"sh"}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s.jobs.Attach(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&pb.AttachRequest{Msg: &pb.AttachRequest_Open{Open: &pb.AttachOpen{JobId: id, Output: true, Claim: true}}}); err != nil {
		t.Fatal(err)
	}
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Log{Log: &pb.LogChunk{JobId: id, Attempt: 1, Data: []byte("bye\r\n")}}})
	a.recvAck()
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Finished{Finished: &pb.JobFinished{JobId: id, Attempt: 1,
		Outcome: pb.Outcome_OUTCOME_EXITED, LogSize: 5}}})
	var out []byte
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("attach ended with %v before AttachEnded", err)
		}
		out = append(out, m.GetOutput().GetData()...)
		if m.GetEnded() != nil {
			break
		}
	}
	if string(out) != "bye\r\n" {
		t.Errorf("output %q", out)
	}
	if m, err := st.Recv(); err != io.EOF {
		t.Fatalf("after AttachEnded: %v, %v; want the end of the stream (io.EOF) without a half-close", m, err)
	}
}

// TestLogChunkFitsAPoolTier: the largest output message, a LogData of
// logChunk bytes at the largest attempt and offset, alone (Logs) or in an
// AttachResponse, fits grpc-go's 16 KiB buffer tier: one more byte takes
// a buffer of the next tier, 32 KiB, and past that 1 MiB, held per
// message queued for a client that does not read.
func TestLogChunkFitsAPoolTier(t *testing.T) {
	d := &pb.LogData{Attempt: math.MaxInt32, Offset: math.MaxInt64, Data: make([]byte, logChunk)}
	for _, m := range []proto.Message{d, &pb.AttachResponse{Msg: &pb.AttachResponse_Output{Output: d}}} {
		if n := proto.Size(m); n > 16<<10 {
			t.Errorf("%T of %d bytes of output: %d bytes, more than 16 KiB", m, logChunk, n)
		}
	}
}
