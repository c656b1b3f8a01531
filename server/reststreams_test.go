package server

import (
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// The long HTTP streams open connections of their own as they fill up,
// up to maxRESTStreams in all; one more is refused at once, and a
// stream that ends makes room.
func TestRESTStreamConns(t *testing.T) {
	dials := 0
	p := &streamConns{dial: func() (*grpc.ClientConn, error) {
		dials++
		return grpc.NewClient("passthrough:///unused", grpc.WithTransportCredentials(insecure.NewCredentials()))
	}}
	defer p.close()
	releases := make([]func(), 0, maxRESTStreams)
	perConn := map[*streamConn]int{}
	for range maxRESTStreams {
		c, release, err := p.acquire()
		if err != nil {
			t.Fatalf("stream %d: %v", len(releases)+1, err)
		}
		perConn[c]++
		releases = append(releases, release)
	}
	if want := (maxRESTStreams + restStreamsPerConn - 1) / restStreamsPerConn; dials != want {
		t.Errorf("%d connections for %d streams, want %d", dials, maxRESTStreams, want)
	}
	for _, n := range perConn {
		if n > restStreamsPerConn {
			t.Errorf("a connection holds %d streams, more than %d", n, restStreamsPerConn)
		}
	}
	if _, _, err := p.acquire(); status.Code(err) != codes.Unavailable {
		t.Fatalf("stream %d: %v, want Unavailable", maxRESTStreams+1, err)
	}
	releases[0]()
	releases[0]() // twice: gives back one
	if _, release, err := p.acquire(); err != nil {
		t.Fatalf("after one ended: %v", err)
	} else {
		release()
	}
	if _, _, err := p.acquire(); err != nil {
		t.Fatalf("room for one: %v", err)
	}
	if _, _, err := p.acquire(); status.Code(err) != codes.Unavailable {
		t.Fatalf("full again: %v, want Unavailable", err)
	}
	if dials != (maxRESTStreams+restStreamsPerConn-1)/restStreamsPerConn {
		t.Errorf("%d connections after the streams came and went", dials)
	}
}
