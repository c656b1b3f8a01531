package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// agentProc is a `hodei agent` process started by a test.
type agentProc struct {
	*proc
	id string
}

// startAgent runs `hodei agent` against addr and waits until it printed its
// worker id.
func startAgent(t *testing.T, addr, dataDir string, extra ...string) *agentProc {
	t.Helper()
	args := append([]string{"agent", "--server", addr, "--data-dir", dataDir, "--log-level", "warn"}, extra...)
	args = append(args, joinArgs(t, addr, dataDir, extra)...)
	p, line := startProc(t, "hodei: agent ", args...)
	id, _, _ := strings.Cut(line, " ")
	return &agentProc{proc: p, id: id}
}

// restartable is a server and an agent whose server a test can SIGKILL and
// start again on the same data dir and address.
type restartable struct {
	dataDir, addr string
	args          []string
	srv           *serverProc
}

// startRestartable starts a server on a fixed address, with a lease long
// enough that its agent keeps its jobs across a restart, and an agent.
func startRestartable(t *testing.T) *restartable {
	t.Helper()
	r := &restartable{dataDir: t.TempDir(), addr: freeAddr(t)}
	r.args = []string{"--heartbeat", "200ms", "--lease", "60s", "--grpc-addr", r.addr}
	r.srv = startServer(t, r.dataDir, r.args...)
	agent := startAgent(t, r.addr, t.TempDir())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the server's stderr:\n%s\nthe agent's stderr:\n%s", r.srv.stderr, agent.stderr)
		}
	})
	return r
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, for a server that must come back on the same address.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// eventually polls cond every 20 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

// waitJob waits until the job is in a terminal state and returns it.
func waitJob(t *testing.T, jobs pb.JobServiceClient, id string, timeout time.Duration) *pb.Job {
	t.Helper()
	var j *pb.Job
	eventually(t, timeout, "job "+id+" to end", func() bool {
		var err error
		j, err = jobs.Get(context.Background(), &pb.GetJobRequest{Id: id})
		s := j.GetState()
		return err == nil && (s == pb.JobState_JOB_STATE_COMPLETED || s == pb.JobState_JOB_STATE_FAILED || s == pb.JobState_JOB_STATE_CANCELLED)
	})
	return j
}

// waitFile waits until path exists and returns its trimmed content.
func waitFile(t *testing.T, path string, timeout time.Duration) string {
	t.Helper()
	var b []byte
	eventually(t, timeout, path, func() bool {
		var err error
		b, err = os.ReadFile(path)
		return err == nil && len(b) > 0 && b[len(b)-1] == '\n'
	})
	return strings.TrimSpace(string(b))
}

// groupGone reports whether no live process is left in process group pgid.
// Zombies do not count: they are dead, waiting for init to reap them.
func groupGone(pgid int) bool {
	if syscall.Kill(-pgid, 0) == syscall.ESRCH {
		return true
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp …; comm may hold spaces, so cut after ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 3 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" {
			return false
		}
	}
	return true
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// joinArgs returns the flags an agent needs to reach the server at addr:
// none when it joined before or the caller passed its own, --insecure-no-auth
// for a server without authentication, else a fresh join token and the
// CA's fingerprint.
func joinArgs(t *testing.T, addr, dataDir string, extra []string) []string {
	t.Helper()
	for _, a := range extra {
		if a == "--join" || a == "--insecure-no-auth" {
			return nil
		}
	}
	cr := credsFor(addr)
	if cr.token == "" {
		return []string{"--insecure-no-auth"}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "tls", "agent.pem")); err == nil {
		return nil
	}
	resp, err := dial(t, addr).Admin().CreateToken(context.Background(), &pb.CreateTokenRequest{Role: "agent", Name: "test-agent"})
	if err != nil {
		t.Fatal(err)
	}
	return []string{"--join", resp.GetToken(), "--ca-fingerprint", resp.GetCaFingerprint()}
}
