package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
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
	cmd    *exec.Cmd
	id     string
	stderr *lockedBuffer
	done   chan struct{}
}

// startAgent runs `hodei agent` against addr and waits until it printed its
// worker id. It is killed in t.Cleanup if still running.
func startAgent(t *testing.T, addr, dataDir string, extra ...string) *agentProc {
	t.Helper()
	args := append([]string{"agent", "--server", addr, "--data-dir", dataDir, "--log-level", "warn"}, extra...)
	cmd := exec.Command(hodeiBin, args...)
	p := &agentProc{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "hodei:" && f[1] == "agent" {
				ready <- f[2]
			}
		}
		close(ready)
	}()
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	select {
	case id, ok := <-ready:
		if !ok {
			t.Fatalf("hodei agent exited:\n%s", p.stderr)
		}
		p.id = id
	case <-time.After(30 * time.Second):
		t.Fatalf("hodei agent not ready:\n%s", p.stderr)
	}
	return p
}

func (p *agentProc) kill() {
	p.cmd.Process.Kill()
	<-p.done
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
