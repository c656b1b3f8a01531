package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/client"
)

// hodeiBin is the binary built once for the end-to-end tests.
var hodeiBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hodei-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hodeiBin = filepath.Join(dir, "hodei")
	build := exec.Command("go", "build", "-o", hodeiBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build hodei:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a hodei process started by a test.
type proc struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProc runs hodei with args and waits for the first line of its
// stdout that starts with ready, which it returns without the prefix. The
// process is killed in t.Cleanup if still running.
func startProc(t *testing.T, ready string, args ...string) (*proc, string) {
	t.Helper()
	cmd := exec.Command(hodeiBin, args...)
	p := &proc{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		found := false
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), ready); ok && !found {
				found = true
				lines <- rest
			}
		}
		io.Copy(io.Discard, out)
		close(lines)
	}()
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	select {
	case line, ok := <-lines:
		if !ok {
			t.Fatalf("hodei %s exited before it was ready:\n%s", args[0], p.stderr)
		}
		return p, line
	case <-time.After(30 * time.Second):
		t.Fatalf("hodei %s not ready after 30s:\n%s", args[0], p.stderr)
	}
	return nil, ""
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// serverProc is a `hodei serve` process started by a test.
type serverProc struct {
	*proc
	grpcAddr string
	httpAddr string
}

// startServer runs `hodei serve` on 127.0.0.1:0 with dataDir and waits for
// its ready line.
func startServer(t *testing.T, dataDir string, extra ...string) *serverProc {
	t.Helper()
	args := append([]string{"serve", "--data-dir", dataDir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "warn"}, extra...)
	p, line := startProc(t, "hodei: serving ", args...)
	srv := &serverProc{proc: p}
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "grpc":
			srv.grpcAddr = v
		case "http":
			srv.httpAddr = v
		}
	}
	return srv
}

// hodei runs the CLI against addr and returns stdout, stderr and the exit code.
func hodei(t *testing.T, addr string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(hodeiBin, append([]string{"--addr", addr}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func dial(t *testing.T, addr string) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
