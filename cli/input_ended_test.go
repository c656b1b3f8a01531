package cli

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/client"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// fakeEnded is a JobService whose job has ended: Attach refuses a new
// stream, as the server does, and Get returns the job.
type fakeEnded struct {
	hodeipb.UnimplementedJobServiceServer
	job *hodeipb.Job
}

func (f *fakeEnded) Attach(st hodeipb.JobService_AttachServer) error {
	if _, err := st.Recv(); err != nil {
		return err
	}
	return status.Errorf(codes.FailedPrecondition, "job %s has ended (COMPLETED): hodei logs %s shows its output", f.job.GetId(), f.job.GetId())
}

func (f *fakeEnded) Get(context.Context, *hodeipb.GetJobRequest) (*hodeipb.Job, error) {
	return f.job, nil
}

// TestRunInputOfEndedJob: a job that ends before hodei run's input stream
// opens (a fast one: the result of a job with no output needs no log
// first) has nothing to be sent; the pump returns the ended job, not an
// error that run would report as stdin "that could not all be sent".
func TestRunInputOfEndedJob(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hodeipb.RegisterJobServiceServer(srv, &fakeEnded{job: &hodeipb.Job{Id: "j", State: hodeipb.JobState_JOB_STATE_COMPLETED}})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	cl, err := client.Dial(context.Background(), lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cl.Close(); srv.Stop(); <-done }()

	var notes syncBuffer
	p := newPump(cl, pumpConfig{jobID: "j", src: strings.NewReader("input\n"), claim: true, notes: &notes})
	ended, err := p.run(context.Background(), nil)
	if err != nil || ended.GetState() != hodeipb.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("run = %v, %v; want the ended job and no error", ended, err)
	}
	if notes.String() != "" {
		t.Fatalf("notes %q, want none", notes.String())
	}
}
