package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// notifySocket is a fake systemd: a unixgram socket that collects what a
// process started with NOTIFY_SOCKET pointing at it sends.
type notifySocket struct {
	path string
	msgs chan string
}

// listenNotify makes a notify socket in a temporary dir; it is closed in
// t.Cleanup, which ends its reader.
func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "sd") // short: sun_path holds 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{path: path, msgs: make(chan string, 4096)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			for line := range strings.Lines(string(buf[:k])) {
				n.msgs <- strings.TrimSpace(line)
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return n
}

// next returns the next message, failing the test after 30 s.
func (n *notifySocket) next(t *testing.T, p *proc) string {
	t.Helper()
	select {
	case m := <-n.msgs:
		return m
	case <-time.After(30 * time.Second):
		t.Fatalf("no message from hodei after 30s:\n%s", p.stderr)
	}
	return ""
}

// expectUntil reads messages until want comes and fails on any message
// not in allowed meanwhile; it returns how many of each it read.
func (n *notifySocket) expectUntil(t *testing.T, p *proc, want string, allowed ...string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for {
		m := n.next(t, p)
		seen[m]++
		if m == want {
			return seen
		}
		ok := false
		for _, a := range allowed {
			ok = ok || m == a
		}
		if !ok {
			t.Fatalf("got %q while waiting for %q (after %v)", m, want, seen)
		}
	}
}

// underSystemd puts NOTIFY_SOCKET and a 200 ms WatchdogSec in the
// environment of the processes the test starts from now on.
func underSystemd(t *testing.T) *notifySocket {
	n := listenNotify(t)
	t.Setenv("NOTIFY_SOCKET", n.path)
	t.Setenv("WATCHDOG_USEC", "200000")
	os.Unsetenv("WATCHDOG_PID") // any process: the one started
	return n
}

// stopAndCheck sends SIGTERM to p and checks that STOPPING=1 comes (and
// nothing but watchdog pings before it), then that p exits 0.
func stopAndCheck(t *testing.T, n *notifySocket, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	n.expectUntil(t, p, "STOPPING=1", "WATCHDOG=1")
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("hodei still runs 30s after SIGTERM:\n%s", p.stderr)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGTERM:\n%s", code, p.stderr)
	}
	select {
	case m := <-n.msgs:
		t.Errorf("%q after STOPPING=1", m)
	default:
	}
}

// TestSystemdNotifyServer runs the real server as systemd would, with its
// settings in a config file: READY=1 once it serves, WATCHDOG=1 pings, and
// STOPPING=1 after SIGTERM, in this order.
func TestSystemdNotifyServer(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "serve.yaml")
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(cfg, []byte("data-dir: "+data+"\ngrpc-addr: 127.0.0.1:0\nhttp-addr: 127.0.0.1:0\nlog-level: warn\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n := underSystemd(t)
	p, line := startProc(t, "hodei: serving ", "serve", "--config", cfg)
	if !strings.HasSuffix(line, "data="+data) {
		t.Errorf("serving line %q: want the data dir of the config file, %s", line, data)
	}
	if m := n.next(t, p); m != "READY=1" {
		t.Fatalf("first message %q, want READY=1", m)
	}
	if seen := n.expectUntil(t, p, "WATCHDOG=1"); len(seen) != 1 {
		t.Fatalf("between READY=1 and the first WATCHDOG=1: %v", seen)
	}
	n.expectUntil(t, p, "WATCHDOG=1") // and again: pings go on
	stopAndCheck(t, n, p)
}

// TestSystemdNotifyAgent runs the real agent as systemd would, its
// settings (server, data dir, join token, CA fingerprint) in a config
// file: READY=1 once the server registered it, WATCHDOG=1 pings, and
// STOPPING=1 after SIGTERM.
func TestSystemdNotifyAgent(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--heartbeat", "5s")
	resp, err := dial(t, srv.grpcAddr).Admin().CreateToken(context.Background(), &pb.CreateTokenRequest{Role: "agent", Name: "sd"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	yaml := "server: " + srv.grpcAddr + "\ndata-dir: " + filepath.Join(dir, "data") + "\njoin: " + resp.GetToken() +
		"\nca-fingerprint: " + resp.GetCaFingerprint() + "\nlabels:\n  rack: r1\nlog-level: warn\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// config print shows the file's settings, the token hidden.
	out, err := exec.Command(hodeiBin, "config", "print", "agent", "--config", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "***") || strings.Contains(string(out), resp.GetToken()) ||
		!strings.Contains(string(out), cfg+":1") {
		t.Errorf("config print agent: %v\n%s", err, out)
	}

	n := underSystemd(t)
	p, lines := startLines(t, "agent", "--config", cfg)
	if m := n.next(t, p); m != "READY=1" {
		t.Fatalf("first message %q, want READY=1", m)
	}
	connected := false
	for !connected {
		select {
		case l := <-lines:
			connected = strings.Contains(l, " connected to "+srv.grpcAddr) && strings.Contains(l, "rack=r1")
		case <-time.After(30 * time.Second):
			t.Fatalf("no 'connected' line with the file's labels:\n%s", p.stderr)
		}
	}
	n.expectUntil(t, p, "WATCHDOG=1")
	// The agent the file configured runs a real job, placed by its label.
	if out, errOut, code := hodei(t, srv.grpcAddr, "run", "--selector", "rack=r1", "--", "echo", "from-config"); code != 0 ||
		!strings.Contains(out, "from-config") {
		t.Fatalf("run on the agent: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	n.expectUntil(t, p, "WATCHDOG=1")
	stopAndCheck(t, n, p)
}
