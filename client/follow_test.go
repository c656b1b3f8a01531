package client_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/client"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

func TestLogCursor(t *testing.T) {
	data := func(attempt int32, off int64, s string) *hodeipb.LogData {
		return &hodeipb.LogData{Attempt: attempt, Offset: off, Data: []byte(s)}
	}
	for _, tc := range []struct {
		name    string
		cur     client.LogCursor
		msg     *hodeipb.LogData
		want    string
		wantErr bool
		after   client.LogCursor
	}{
		{"Next", client.LogCursor{Attempt: 1, Offset: 4}, data(1, 4, "abc"), "abc", false, client.LogCursor{Attempt: 1, Offset: 7}},
		{"Overlap", client.LogCursor{Attempt: 1, Offset: 4}, data(1, 2, "abcde"), "cde", false, client.LogCursor{Attempt: 1, Offset: 7}},
		{"AllSeen", client.LogCursor{Attempt: 1, Offset: 4}, data(1, 0, "abcd"), "", false, client.LogCursor{Attempt: 1, Offset: 4}},
		{"Empty", client.LogCursor{Attempt: 1, Offset: 4}, data(1, 4, ""), "", false, client.LogCursor{Attempt: 1, Offset: 4}},
		{"Gap", client.LogCursor{Attempt: 1, Offset: 4}, data(1, 5, "x"), "", true, client.LogCursor{Attempt: 1, Offset: 4}},
		{"FirstOfCurrent", client.LogCursor{}, data(3, 0, "ab"), "ab", false, client.LogCursor{Attempt: 3, Offset: 2}},
		{"CurrentFromOffset", client.LogCursor{Offset: 2}, data(3, 2, "ab"), "ab", false, client.LogCursor{Attempt: 3, Offset: 4}},
		{"LaterAttempt", client.LogCursor{Attempt: 1, Offset: 9, Later: true}, data(2, 0, "ab"), "ab", false,
			client.LogCursor{Attempt: 2, Offset: 2, Later: true}},
		{"SkipsAnAttemptWithoutOutput", client.LogCursor{Attempt: 1, Offset: 9, Later: true}, data(3, 0, "ab"), "ab", false,
			client.LogCursor{Attempt: 3, Offset: 2, Later: true}},
		{"LaterAttemptWithAGap", client.LogCursor{Attempt: 1, Offset: 9, Later: true}, data(2, 1, "b"), "", true,
			client.LogCursor{Attempt: 1, Offset: 9, Later: true}},
		{"LaterAttemptNotFollowed", client.LogCursor{Attempt: 1, Offset: 9}, data(2, 0, "ab"), "", true,
			client.LogCursor{Attempt: 1, Offset: 9}},
		{"EarlierAttempt", client.LogCursor{Attempt: 2, Offset: 0, Later: true}, data(1, 0, "ab"), "", true,
			client.LogCursor{Attempt: 2, Later: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := tc.cur
			got, err := cur.Take(tc.msg)
			if (err != nil) != tc.wantErr || string(got) != tc.want || cur != tc.after {
				t.Errorf("Take = %q, %v; cursor %+v; want %q, error %v, cursor %+v", got, err, cur, tc.want, tc.wantErr, tc.after)
			}
		})
	}
}

func TestLogCursorRequest(t *testing.T) {
	base := &hodeipb.LogsRequest{Id: "j", Follow: true, Stream: hodeipb.LogStream_LOG_STREAM_STDERR}
	cur := client.CursorOf(base)
	if want := (client.LogCursor{Later: true}); cur != want {
		t.Fatalf("CursorOf a follow of attempt 0 = %+v, want %+v", cur, want)
	}
	if got := cur.Request(base); !proto.Equal(got, base) {
		t.Errorf("request before any output = %v, want %v", got, base)
	}
	if _, err := cur.Take(&hodeipb.LogData{Attempt: 2, Data: []byte("abc")}); err != nil {
		t.Fatal(err)
	}
	want := &hodeipb.LogsRequest{Id: "j", Attempt: 2, Offset: 3, Follow: true, LaterAttempts: true, Stream: hodeipb.LogStream_LOG_STREAM_STDERR}
	if got := cur.Request(base); !proto.Equal(got, want) {
		t.Errorf("resume request = %v, want %v", got, want)
	}
	fixed := &hodeipb.LogsRequest{Id: "j", Attempt: 2, Offset: 5, Follow: true}
	if got := client.CursorOf(fixed); got != (client.LogCursor{Attempt: 2, Offset: 5}) {
		t.Errorf("CursorOf a follow of attempt 2 = %+v: it must not move on", got)
	}
}

// flakyLogs serves the output of a job's attempts, but every stream
// breaks (codes.Unavailable, as when the server dies) after a random
// number of bytes; some calls fail at once, as against a server that is
// down, and some resend a little of what the client already has.
type flakyLogs struct {
	hodeipb.UnimplementedJobServiceServer
	attempts [][]byte // the output of attempt 1, 2 …

	mu    sync.Mutex // guards the fields below
	rng   *rand.Rand
	calls []*hodeipb.LogsRequest
}

func (f *flakyLogs) Get(context.Context, *hodeipb.GetJobRequest) (*hodeipb.Job, error) {
	return &hodeipb.Job{Id: "j", Attempt: 1}, nil
}

func (f *flakyLogs) Logs(req *hodeipb.LogsRequest, stream grpc.ServerStreamingServer[hodeipb.LogData]) error {
	f.mu.Lock()
	f.calls = append(f.calls, req)
	refuse := f.rng.IntN(4) == 0
	budget := f.rng.IntN(40 << 10)
	back := int64(f.rng.IntN(3) * f.rng.IntN(100)) // resent bytes, often 0
	sizes := make([]int, 64)
	for i := range sizes {
		sizes[i] = 1 + f.rng.IntN(8<<10)
	}
	f.mu.Unlock()
	if refuse {
		return status.Error(codes.Unavailable, "connection refused")
	}
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	a, off := int(req.GetAttempt()), max(req.GetOffset()-back, 0)
	for i := 0; ; i++ {
		out := f.attempts[a-1]
		if off >= int64(len(out)) {
			if !req.GetLaterAttempts() || a == len(f.attempts) {
				return nil
			}
			a, off = a+1, 0
			continue
		}
		n := min(int64(sizes[i%len(sizes)]), int64(len(out))-off)
		if err := stream.Send(&hodeipb.LogData{Attempt: int32(a), Offset: off, Data: out[off : off+n]}); err != nil {
			return err
		}
		off += n
		if budget -= int(n); budget < 0 {
			return status.Error(codes.Unavailable, "error reading from server: EOF")
		}
	}
}

// TestFollowLogsResumesExactly follows 600 kB of output over two attempts
// through a server whose streams keep breaking: the writer gets every byte
// once, in order.
func TestFollowLogsResumesExactly(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	attempts := make([][]byte, 2)
	for i := range attempts {
		var b bytes.Buffer
		for n := 0; b.Len() < 300<<10; n++ {
			fmt.Fprintf(&b, "attempt %d line %06d\r\n", i+1, n)
		}
		attempts[i] = b.Bytes()
	}
	srv := &flakyLogs{attempts: attempts, rng: rng}
	c := serveJobs(t, srv)

	var lost, back int
	r := &client.Reconnector{
		Backoff: client.Backoff{Base: time.Microsecond, Max: 10 * time.Microsecond},
		Client:  c,
		OnLost:  func(error) { lost++ },
		OnBack:  func(time.Duration) { back++ },
	}
	var got bytes.Buffer
	if err := c.FollowLogs(context.Background(), r, &hodeipb.LogsRequest{Id: "j", Follow: true}, &got); err != nil {
		t.Fatal(err)
	}
	if want := bytes.Join(attempts, nil); !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("got %d bytes, want %d identical (first difference at %d)", got.Len(), len(want), firstDiff(got.Bytes(), want))
	}
	srv.mu.Lock()
	calls := len(srv.calls)
	srv.mu.Unlock()
	if calls < 10 || lost == 0 || lost != back {
		t.Errorf("%d calls, %d outages reported, %d returns; want many calls and every outage ended", calls, lost, back)
	}
	t.Logf("%d calls, %d outages", calls, lost)
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// serveJobs serves srv over bufconn and returns a client dialled to it.
func serveJobs(t *testing.T, srv hodeipb.JobServiceServer) *client.Client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	hodeipb.RegisterJobServiceServer(gs, srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	dialer := grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) })
	c, err := client.Dial(context.Background(), "passthrough:///bufnet", client.WithDialOptions(dialer))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		gs.Stop()
		<-done
	})
	return c
}
