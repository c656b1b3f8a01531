package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRESTLogsFollowAcrossRestart follows a job's output over HTTP (GET
// /v1/jobs/{id}/logs?follow=1, SSE) with a client that reconnects with
// Last-Event-ID, on the real binaries; the server is SIGKILLed while the
// job prints and started again on the same addresses. What the client
// received is byte for byte what the job wrote (sha256 of both; the job
// tees its stdout to a file).
func TestRESTLogsFollowAcrossRestart(t *testing.T) {
	dataDir, grpcAddr, httpAddr, tmp := t.TempDir(), freeAddr(t), freeAddr(t), jobDir(t)
	args := []string{"--heartbeat", "200ms", "--lease", "60s", "--grpc-addr", grpcAddr, "--http-addr", httpAddr}
	srv := startServer(t, dataDir, args...)
	startAgent(t, grpcAddr, t.TempDir())
	token := credsFor(grpcAddr).token
	base := "http://" + httpAddr

	// Three parts: the first streams when the server is killed, the
	// second is printed while it is down, the third once it is back.
	script := fmt.Sprintf(`part() { awk -v a=$1 -v b=$2 'BEGIN { for (i = a; i < b; i++) printf "line %%06d of the job\n", i }' | tee -a %[1]s/out; }
part 0 20000; touch %[1]s/p1; while [ ! -e %[1]s/f1 ]; do sleep 0.02; done
part 20000 40000; touch %[1]s/p2; while [ ! -e %[1]s/f2 ]; do sleep 0.02; done
part 40000 60000`, tmp)
	body, _ := json.Marshal(map[string]any{"spec": map[string]any{"script": script, "noPty": true}})
	req, _ := http.NewRequest("POST", base+"/v1/jobs", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sub struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&sub)
	resp.Body.Close()
	if resp.StatusCode != 200 || sub.ID == "" {
		t.Fatalf("submit: %s", resp.Status)
	}

	f := &sseFollower{url: base + "/v1/jobs/" + sub.ID + "/logs?follow=1", token: token, ended: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFile0(t, filepath.Join(tmp, "p1"), 60*time.Second)
	eventually(t, 30*time.Second, "the follower to receive output", func() bool { return f.size() > 0 })
	srv.kill()
	os.WriteFile(filepath.Join(tmp, "f1"), nil, 0o644)
	waitFile0(t, filepath.Join(tmp, "p2"), 60*time.Second)
	startServer(t, dataDir, args...)
	os.WriteFile(filepath.Join(tmp, "f2"), nil, 0o644)
	select {
	case <-f.ended:
	case <-time.After(120 * time.Second):
		t.Fatalf("the follow did not end; %d bytes, %d connections", f.size(), f.conns())
	}
	want, err := os.ReadFile(filepath.Join(tmp, "out"))
	if err != nil {
		t.Fatal(err)
	}
	got := f.bytes()
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("followed %d bytes over %d connections, the job wrote %d; first difference at %d", len(got), f.conns(), len(want), firstDiff(got, want))
	}
	if f.conns() < 2 {
		t.Errorf("the follow used %d connection(s): the restart did not cut it", f.conns())
	}
	t.Logf("%d bytes over %d connections, sha256 equal", len(got), f.conns())
}

// sseFollower follows a log over SSE as a browser's EventSource does:
// reconnecting with Last-Event-ID until the "end" event.
type sseFollower struct {
	url, token string
	ended      chan struct{}

	mu     sync.Mutex
	out    []byte // guarded by mu
	lastID string // guarded by mu
	n      int    // guarded by mu: connections made
}

func (f *sseFollower) run(ctx context.Context) {
	tick := time.NewTicker(50 * time.Millisecond) // the reconnect delay
	defer tick.Stop()
	for ctx.Err() == nil {
		if f.once(ctx) {
			close(f.ended)
			return
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// once reads one connection; it reports whether the log ended.
func (f *sseFollower) once(ctx context.Context) bool {
	req, _ := http.NewRequestWithContext(ctx, "GET", f.url, nil)
	req.Header.Set("Authorization", "Bearer "+f.token)
	f.mu.Lock()
	if f.lastID != "" {
		req.Header.Set("Last-Event-ID", f.lastID)
	}
	f.mu.Unlock()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false // the server is down
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		io.Copy(io.Discard, resp.Body)
		return false // starting, or not serving yet
	}
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var id, event, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if event == "end" {
				return true
			}
			if event == "output" {
				b, err := base64.StdEncoding.DecodeString(data)
				if err != nil {
					panic(errors.Join(errors.New("bad base64"), err))
				}
				f.mu.Lock()
				f.out, f.lastID = append(f.out, b...), id
				f.mu.Unlock()
			}
			id, event, data = "", "", ""
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data += line[6:]
		}
	}
	return false
}

func (f *sseFollower) size() int     { f.mu.Lock(); defer f.mu.Unlock(); return len(f.out) }
func (f *sseFollower) conns() int    { f.mu.Lock(); defer f.mu.Unlock(); return f.n }
func (f *sseFollower) bytes() []byte { f.mu.Lock(); defer f.mu.Unlock(); return bytes.Clone(f.out) }
