package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/pki"
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
	// The CLI's stored logins (hodei login, serve --dev) go here, never to
	// the user's own config dir.
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	build, err := makefileBuild("-o", hodeiBin, ".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "build hodei:", err)
		os.Exit(1)
	}
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build hodei:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// makefileBuild returns `go build args…` as `make build` runs it: with the
// Makefile's build tags (TAGS) and environment (BUILD_ENV, CGO_ENABLED=0),
// so that the tests run the binary users get even under a plain `go test`.
func makefileBuild(args ...string) (*exec.Cmd, error) {
	mk, err := os.ReadFile("Makefile")
	if err != nil {
		return nil, err
	}
	var tags, env []string
	for line := range strings.Lines(string(mk)) {
		if v, ok := strings.CutPrefix(line, "TAGS := "); ok {
			tags = []string{"-tags", strings.TrimSpace(v)}
		}
		if v, ok := strings.CutPrefix(line, "BUILD_ENV := "); ok {
			env = strings.Fields(v)
		}
	}
	if tags == nil || env == nil {
		return nil, fmt.Errorf("no TAGS := or BUILD_ENV := line in the Makefile")
	}
	cmd := exec.Command("go", append(append([]string{"build"}, tags...), args...)...)
	cmd.Env = append(os.Environ(), env...)
	return cmd, nil
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
	p, lines := startLines(t, args...)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("hodei %s exited before it was ready:\n%s", args[0], p.stderr)
			}
			if rest, ok := strings.CutPrefix(line, ready); ok {
				return p, rest
			}
		case <-deadline:
			t.Fatalf("hodei %s not ready after 30s:\n%s", args[0], p.stderr)
		}
	}
}

// startLines runs hodei with args and returns the process and its stdout,
// line by line. The process is killed in t.Cleanup; the reader ends with
// its stdout.
func startLines(t *testing.T, args ...string) (*proc, <-chan string) {
	t.Helper()
	return startLinesOf(t, hodeiBin, args...)
}

// startLinesOf is startLines with another build of hodei.
func startLinesOf(t *testing.T, bin string, args ...string) (*proc, <-chan string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	p := &proc{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody reads that far: never block the reader
			}
		}
		io.Copy(io.Discard, out) // past a line too long: never block the process
	}()
	go func() { <-read; cmd.Wait(); close(p.done) }()
	for i, a := range args {
		if a == "--data-dir" && i+1 < len(args) {
			dir := args[i+1]
			t.Cleanup(func() { stopSupervisors(t, dir) }) // after the kill below, before the dir goes
		}
	}
	t.Cleanup(p.kill)
	return p, lines
}

// stopSupervisors ends the job supervisors an agent (or serve --dev) left
// in dataDir, which outlive it by design: SIGTERM, which stops their jobs,
// then it waits for them to be gone.
func stopSupervisors(t *testing.T, dataDir string) {
	socks, _ := filepath.Glob(filepath.Join(dataDir, "supervisor", "*.sock"))
	more, _ := filepath.Glob(filepath.Join(dataDir, "*", "supervisor", "*.sock"))
	for _, sock := range append(socks, more...) {
		pid, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(sock), ".sock"))
		if err != nil || syscall.Kill(pid, syscall.SIGTERM) != nil {
			continue
		}
		deadline := time.After(30 * time.Second)
		tick := time.NewTicker(10 * time.Millisecond) // not our child: nothing to wait on but its pid
	poll:
		for !processGone(pid) {
			select {
			case <-deadline:
				break poll
			case <-tick.C:
			}
		}
		tick.Stop()
		if !processGone(pid) {
			t.Errorf("supervisor pid %d of %s still running 30 s after SIGTERM", pid, dataDir)
		}
	}
}

// processGone reports whether pid has exited (a zombie counts as gone).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] == "Z"
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
	creds := credsOf(t, dataDir)
	credsMu.Lock()
	credsByAddr[srv.grpcAddr] = creds
	credsMu.Unlock()
	return srv
}

// serverCreds is how tests reach a server: its admin token and CA file,
// both empty for a server run with --insecure-no-auth.
type serverCreds struct {
	token  string
	caFile string
	caPEM  []byte
}

var (
	credsMu     sync.Mutex
	credsByAddr = map[string]serverCreds{} // by gRPC address
)

// credsOf reads the credentials a server wrote in its data dir.
func credsOf(t *testing.T, dataDir string) serverCreds {
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		return serverCreds{} // --insecure-no-auth
	}
	caFile := filepath.Join(dataDir, "tls", "ca.pem")
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	return serverCreds{token: strings.TrimSpace(string(tok)), caFile: caFile, caPEM: caPEM}
}

// credsFor returns the credentials of the server at addr.
func credsFor(addr string) serverCreds {
	credsMu.Lock()
	defer credsMu.Unlock()
	return credsByAddr[addr]
}

// cliCmd is the CLI against addr with the server's admin credentials in
// its environment (HODEI_TOKEN, HODEI_CA_FILE).
func cliCmd(addr string, args ...string) *exec.Cmd {
	cmd := exec.Command(hodeiBin, append([]string{"--addr", addr}, args...)...)
	c := credsFor(addr)
	cmd.Env = append(os.Environ(), "HODEI_TOKEN="+c.token, "HODEI_CA_FILE="+c.caFile)
	return cmd
}

// hodei runs the CLI against addr and returns stdout, stderr and the exit code.
func hodei(t *testing.T, addr string, args ...string) (string, string, int) {
	t.Helper()
	return runCmd(t, cliCmd(addr, args...))
}

// runCmd runs cmd and returns stdout, stderr and the exit code.
func runCmd(t *testing.T, cmd *exec.Cmd) (string, string, int) {
	t.Helper()
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

func dial(t testing.TB, addr string) *client.Client {
	t.Helper()
	var opts []client.Option
	if cr := credsFor(addr); cr.token != "" {
		cfg, err := pki.ClientConfig(cr.caPEM, nil, pki.ServerName(addr))
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, client.WithTLS(cfg), client.WithToken(cr.token))
	}
	c, err := client.Dial(context.Background(), addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wantRefused runs the CLI and fails unless it exits non-zero with an
// error on stderr that contains want (the field and its rule).
func wantRefused(t *testing.T, addr, want string, args ...string) {
	t.Helper()
	out, errOut, code := hodei(t, addr, args...)
	if code == 0 {
		t.Fatalf("exit 0 (stdout %q), want non-zero", out)
	}
	if !strings.HasPrefix(errOut, "hodei: ") || !strings.Contains(errOut, want) {
		t.Fatalf("stderr %q, want …%s…", errOut, want)
	}
}

// wantNoJobs fails unless the server holds no job: refused requests wrote
// nothing.
func wantNoJobs(t *testing.T, addr string) {
	t.Helper()
	out, errOut, code := hodei(t, addr, "jobs", "ls", "--output", "json")
	var jobs []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &jobs) != nil || len(jobs) != 0 {
		t.Fatalf("jobs ls after refused requests: exit %d, %q %q; want an empty JSON array", code, out, errOut)
	}
}
