package server

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// An SSE client that takes nothing of its stream while events flow is
// cut after sseWriteTimeout, and what it held goes back: its place among
// the HTTP streams is free again.
func TestSSESilentClientIsCut(t *testing.T) {
	old := sseWriteTimeout
	sseWriteTimeout = 200 * time.Millisecond
	t.Cleanup(func() { sseWriteTimeout = old })
	s := setup(t)
	tok := s.adminToken(t)
	c, err := net.Dial("tcp", strings.TrimPrefix(s.srv.HTTPURL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", tok)
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 16), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %v %v", resp, err)
	}
	open := func() int {
		s.srv.rest.streams.mu.Lock()
		defer s.srv.rest.streams.mu.Unlock()
		return s.srv.rest.streams.open
	}
	if open() != 1 {
		t.Fatalf("%d streams open, want 1", open())
	}
	// Events, until the client's socket and the server's buffers are full
	// and a write waits past its deadline; the client reads nothing more.
	specs := make([]*pb.JobSpec, 500)
	for i := range specs {
		specs[i] = &pb.JobSpec{Name: strings.Repeat("x", 200), Command: []string{"true"}}
	}
	deadline := time.Now().Add(60 * time.Second)
	for open() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the silent client's stream is still open after 60 s of events")
		}
		if _, err := s.jobs.SubmitBatch(context.Background(), &pb.SubmitBatchRequest{Specs: specs}); err != nil {
			t.Fatal(err)
		}
	}
}
