package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSupFrameRoundTrip encodes and decodes every kind of field a frame
// carries, and refuses frames too large or not a message.
func TestSupFrameRoundTrip(t *testing.T) {
	in := &supMsg{Op: opStart, Job: "j1", Attempt: 2, Spec: &wireSpec{Argv: []string{"sh", "-c", "echo"}, Env: map[string]string{"A": "1"},
		NoPTY: true, Stdin: 2, Rows: 30, Cols: 100, Timeout: int64(time.Second), User: &wireUser{Name: "nobody", UID: 65534, GID: 65534}},
		Input: &wireInput{Offset: 5, Data: []byte{0, 1, 2, 255}, EOF: true}, Exit: toWireExit(exit{Outcome: killed, ExitCode: -1, Signal: 15,
			Reason: "stopped", CPUTime: time.Millisecond, Finished: time.Unix(0, 12345)})}
	buf, err := appendFrame(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	var out supMsg
	if _, err := readFrame(bytes.NewReader(buf), nil, &out); err != nil {
		t.Fatal(err)
	}
	if out.Spec.User.UID != 65534 || !bytes.Equal(out.Input.Data, in.Input.Data) || out.Exit.exit() != in.Exit.exit() || out.Spec.Argv[2] != "echo" {
		t.Fatalf("round trip changed the message: %+v", out)
	}
	for name, frame := range map[string][]byte{
		"TooLarge": binary.BigEndian.AppendUint32(nil, maxSupFrame+1),
		"NotJSON":  append(binary.BigEndian.AppendUint32(nil, 3), "abc"...),
		"NoOp":     append(binary.BigEndian.AppendUint32(nil, 2), "{}"...),
		"Short":    append(binary.BigEndian.AppendUint32(nil, 10), "{}"...),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := readFrame(bytes.NewReader(frame), nil, &out); err == nil {
				t.Fatal("read a bad frame without an error")
			}
		})
	}
}

// startTestSupervisor runs a supervisor for dir in this process and
// returns its socket; it is stopped (its jobs killed) in t.Cleanup.
func startTestSupervisor(t *testing.T, dir string) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- runSupervisor(dir, "test", slog.New(slog.DiscardHandler), w, false) }()
	line, err := io.ReadAll(r)
	r.Close()
	if err != nil || strings.TrimSpace(string(line)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("supervisor ready line %q, %v", line, err)
	}
	t.Cleanup(func() {
		// An agent that says goodbye with exit_idle and releases what it
		// holds lets the supervisor exit.
		sock := filepath.Join(dir, supDir, strconv.Itoa(os.Getpid())+".sock")
		if sc, err := dialSupervisor(sock, "test", filepath.Join(dir, "spool"), slog.New(slog.DiscardHandler), nil); err == nil {
			for _, ra := range sc.adopt() {
				ra.Close()
				ra.release()
			}
			sc.leave(true)
		} // else it exited already: nothing held, no agent

		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(30 * time.Second):
			t.Error("supervisor did not exit")
		}
	})
	return filepath.Join(dir, supDir, strconv.Itoa(os.Getpid())+".sock")
}

func dialTest(t *testing.T, sock string) *supClient {
	t.Helper()
	sc, err := dialSupervisor(sock, "test", filepath.Join(filepath.Dir(filepath.Dir(sock)), "spool"), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// TestSupervisorKeepsJobsAcrossAgents starts a job through one connection,
// drops it (the agent went away), and reattaches from a second: the job
// ran on meanwhile, its output is in the spool file at the sizes the
// supervisor reports, and its result comes once it ends.
func TestSupervisorKeepsJobsAcrossAgents(t *testing.T) {
	dir := t.TempDir()
	sock := startTestSupervisor(t, dir)
	gate := filepath.Join(t.TempDir(), "gate")
	sc := dialTest(t, sock)
	sc.adopt()
	ra := sc.start(ref{"j1", 1}, &wireSpec{Argv: []string{"/bin/sh", "-c", "echo one; while [ ! -e " + gate + " ]; do sleep 0.02; done; echo two; exit 3"}})
	if _, _, ok := ra.Started(); !ok {
		t.Fatalf("not started: %+v", ra.Exit())
	}
	data, _, err := ra.Output().Read(t.Context(), 0, 0)
	if err != nil || string(data) != "one\r\n" {
		t.Fatalf("first output %q, %v", data, err)
	}
	sc.leave(false) // the agent goes; the job stays
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	sc2 := dialTest(t, sock)
	held := sc2.adopt()
	if len(held) != 1 || held[0].ref != (ref{"j1", 1}) {
		t.Fatalf("second connection holds %d attempts, want j1/1", len(held))
	}
	ra2 := held[0]
	<-ra2.Done()
	var all []byte
	for off := int64(0); ; {
		data, eof, err := ra2.Output().Read(t.Context(), off, 0)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, data...)
		off += int64(len(data))
		if eof {
			break
		}
	}
	if e := ra2.Exit(); e.ExitCode != 3 || string(all) != "one\r\ntwo\r\n" {
		t.Fatalf("exit %+v, output %q; want 3 and both lines", e, all)
	}
	ra2.release()
	sc2.leave(false)
}

// TestSupervisorRoguePeers connects peers that do not speak the protocol
// (garbage, an oversized frame, a frame that is not a hello) while a job
// runs: each is cut off, and the job and the agent's connection are
// untouched.
func TestSupervisorRoguePeers(t *testing.T) {
	dir := t.TempDir()
	sock := startTestSupervisor(t, dir)
	gate := filepath.Join(t.TempDir(), "gate")
	sc := dialTest(t, sock)
	sc.adopt()
	ra := sc.start(ref{"j1", 1}, &wireSpec{Argv: []string{"/bin/sh", "-c", "while [ ! -e " + gate + " ]; do sleep 0.02; done; echo done"}})
	if _, _, ok := ra.Started(); !ok {
		t.Fatalf("not started: %+v", ra.Exit())
	}
	for name, frame := range map[string][]byte{
		"Garbage":  []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"Oversize": append(binary.BigEndian.AppendUint32(nil, 1<<30), "{"...),
		"NotHello": mustFrame(t, &supMsg{Op: opKill, Job: "j1", Attempt: 1}),
		"BadJSON":  append(binary.BigEndian.AppendUint32(nil, 5), "{nope"...),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(frame)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			// Cut off: EOF, or a reset when it closed with bytes unread.
			if n, err := c.Read(make([]byte, 1)); n > 0 || err == nil || os.IsTimeout(err) {
				t.Fatalf("rogue peer read %d bytes, %v; want to be cut off", n, err)
			}
		})
	}
	if !sc.alive() || ra.isDone() {
		t.Fatal("a rogue peer harmed the agent's connection or the job")
	}
	os.WriteFile(gate, nil, 0o644)
	<-ra.Done()
	if e := ra.Exit(); e.Outcome != exited || e.ExitCode != 0 {
		t.Fatalf("job ended %+v, want a clean exit", e)
	}
	ra.release()
	sc.leave(false)
}

func mustFrame(t *testing.T, m *supMsg) []byte {
	t.Helper()
	b, err := appendFrame(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// holdStarts makes the test supervisor of dir hold the start of every
// attempt of the jobs named until release is closed; entered gets each
// ref as its start is held.
func holdStarts(t *testing.T, dir string, jobs ...string) (entered chan ref, release chan struct{}) {
	t.Helper()
	entered, release = make(chan ref, len(jobs)), make(chan struct{})
	hook := func(d string, r ref) {
		if d == dir && slices.Contains(jobs, r.job) {
			entered <- r
			<-release
		}
	}
	supStartHook.Store(&hook)
	t.Cleanup(func() { supStartHook.Store(nil) })
	return entered, release
}

// TestSupervisorReattachWhileStarting is race.py made deterministic: the
// agent asks for two starts and goes before they finish (a start held in
// flight by a hook); the next agent's welcome lists both as starting; one
// started then reaches the new connection with its exit, the other, which
// the new agent stopped while it was being started, ends stopped; each ran
// once.
func TestSupervisorReattachWhileStarting(t *testing.T) {
	dir := t.TempDir()
	entered, release := holdStarts(t, dir, "j1", "j2")
	sock := startTestSupervisor(t, dir)
	ran := filepath.Join(t.TempDir(), "ran")
	gate := filepath.Join(t.TempDir(), "gate")
	sc := dialTest(t, sock)
	sc.adopt()
	for _, j := range []string{"j1", "j2"} {
		cmd := "echo $0 >> " + ran + "; while [ ! -e " + gate + " ]; do sleep 0.02; done; exit 7"
		if err := sc.send(&supMsg{Op: opStart, Job: j, Attempt: 1, Spec: &wireSpec{Argv: []string{"/bin/sh", "-c", cmd, j}}}); err != nil {
			t.Fatal(err)
		}
	}
	<-entered
	<-entered
	sc.leave(false) // the agent dies with both starts in flight

	sc2 := dialTest(t, sock)
	held := map[ref]*remoteAttempt{}
	for _, ra := range sc2.adopt() {
		held[ra.ref] = ra
	}
	ra1, ra2 := held[ref{"j1", 1}], held[ref{"j2", 1}]
	if len(held) != 2 || ra1 == nil || ra2 == nil {
		t.Fatalf("the new agent's welcome lists %v; want j1/1 and j2/1, being started", slices.Collect(maps.Keys(held)))
	}
	if _, _, ok := ra1.Started(); ok {
		t.Fatal("an attempt being started is listed as started")
	}
	ra2.Stop("cancelled while starting", 0) // kept until it started
	close(release)

	<-ra1.StartDone()
	if pid, _, ok := ra1.Started(); !ok || pid <= 0 {
		t.Fatalf("j1's started did not reach the new connection: pid %d, exit %+v", pid, ra1.Exit())
	}
	<-ra2.Done()
	if e := ra2.Exit(); e.Outcome != killed {
		t.Fatalf("j2 stopped while starting ended %+v, want stopped", e)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	<-ra1.Done()
	if e := ra1.Exit(); e.Outcome != exited || e.ExitCode != 7 {
		t.Fatalf("j1 ended %+v, want exit 7 reported to the new connection", e)
	}
	ra1.release()
	ra2.release()
	sc2.leave(false)
	// j2 may have been stopped before it wrote its line.
	if b, err := os.ReadFile(ran); err != nil || strings.Count(string(b), "j1") != 1 || strings.Count(string(b), "j2") > 1 {
		t.Fatalf("runs %q, %v; want j1 once and j2 at most once", b, err)
	}
}

// TestSupervisorRefusesSecondAgent is rogue.py: a second client says
// hello while the agent is connected and a job runs. It is refused with
// a reason; the agent's connection and the job are untouched. Once the
// agent has gone, the next one is welcomed and finds the job.
func TestSupervisorRefusesSecondAgent(t *testing.T) {
	dir := t.TempDir()
	sock := startTestSupervisor(t, dir)
	gate := filepath.Join(t.TempDir(), "gate")
	sc := dialTest(t, sock)
	sc.adopt()
	ra := sc.start(ref{"j1", 1}, &wireSpec{Argv: []string{"/bin/sh", "-c", "while [ ! -e " + gate + " ]; do sleep 0.02; done"}})
	if _, _, ok := ra.Started(); !ok {
		t.Fatalf("not started: %+v", ra.Exit())
	}
	_, err := dialSupervisor(sock, "rogue", filepath.Join(dir, "spool"), slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "another agent is connected") {
		t.Fatalf("second hello: %v; want refused, another agent is connected", err)
	}
	// The agent's connection still serves: an input credit round trip.
	if cr := ra.openInput(t.Context()); !cr.GetOpened() || !sc.alive() || ra.isDone() {
		t.Fatalf("after a second hello: connection alive %v, job done %v (%+v)", sc.alive(), ra.isDone(), ra.Exit())
	}
	sc.leave(false)

	sc2 := dialTest(t, sock) // the agent went: the next one is welcome
	held := sc2.adopt()
	if len(held) != 1 || held[0].ref != (ref{"j1", 1}) || held[0].isDone() {
		t.Fatalf("the next agent holds %d attempts, want j1/1 running", len(held))
	}
	os.WriteFile(gate, nil, 0o644)
	<-held[0].Done()
	if e := held[0].Exit(); e.Outcome != exited || e.ExitCode != 0 {
		t.Fatalf("job ended %+v, want a clean exit", e)
	}
	held[0].release()
	sc2.leave(false)
}

// TestSupClientReconnects: a supervisor that drops the agent's connection
// but lives on (as one of the previous binary did on a second hello) is
// dialled again, and its jobs are not declared lost: the result it lists
// in the new welcome is the job's.
func TestSupClientReconnects(t *testing.T) {
	ln, sock := listenFakeSupervisor(t)
	job := exec.Command("sleep", "60") // the job the supervisor holds
	job.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := job.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { job.Process.Kill(); job.Wait() }()
	held := supHeld{Job: "j1", Attempt: 1, Pid: job.Process.Pid, At: time.Now().UnixNano()}
	served := make(chan error, 1)
	go func() { // a fake supervisor: welcome, drop; welcome with the result, serve until goodbye
		served <- func() error {
			for i := range 2 {
				c, err := acceptHello(ln, i)
				if err != nil {
					return err
				}
				defer c.Close()
				var m supMsg
				w := &supMsg{Op: opWelcome, Proto: supProto, Version: "test", Pid: os.Getpid(), Attempts: []supHeld{held}}
				if i == 1 {
					w.Attempts[0].Exit = toWireExit(exit{Outcome: exited, ExitCode: 5, Finished: time.Now()})
				}
				if _, err := c.Write(mustFrame(t, w)); err != nil {
					return err
				}
				if i == 0 {
					c.Close() // dropped, not dead
					continue
				}
				for err == nil {
					_, err = readFrame(c, nil, &m)
				}
			}
			return nil
		}()
	}()
	sc := dialTest(t, sock)
	atts := sc.adopt()
	if len(atts) != 1 {
		t.Fatalf("adopted %d attempts, want 1", len(atts))
	}
	<-atts[0].Done()
	if e := atts[0].Exit(); e.ExitCode != 5 || !sc.alive() {
		t.Fatalf("after a dropped connection: exit %+v, connection alive %v; want the supervisor's exit 5 over a new connection", e, sc.alive())
	}
	if err := job.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the job's process was killed: %v", err)
	}
	sc.leave(false)
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// TestSupervisorHeldRelease releases an attempt with no other frame to
// carry the release: the held frame goes on its own within heldDelay, and
// the supervisor, holding nothing once the agent leaves, exits (it would
// keep the attempt, and run on, without the release).
func TestSupervisorHeldRelease(t *testing.T) {
	dir := t.TempDir()
	sock := startTestSupervisor(t, dir)
	sc := dialTest(t, sock)
	sc.adopt()
	ra := sc.start(ref{"j1", 1}, &wireSpec{Argv: []string{"/bin/true"}})
	<-ra.Done()
	ra.release()
	ra.Close()
	pollUntil(t, "the held release to be written", func() bool {
		sc.wmu.Lock()
		defer sc.wmu.Unlock()
		return len(sc.held) == 0
	})
	sc.leave(false)
	pollUntil(t, "the supervisor to exit", func() bool {
		_, err := os.Stat(sock)
		return errors.Is(err, os.ErrNotExist)
	})
}

// TestSupClientHeldFramesSurviveReconnect holds a release while the
// supervisor's end of the connection is gone: the write fails, the frame
// stays held, and it goes on the connection the reader makes next.
func TestSupClientHeldFramesSurviveReconnect(t *testing.T) {
	ln, sock := listenFakeSupervisor(t)
	dropped := make(chan struct{})
	released := make(chan error, 1)
	go func() { // a fake supervisor: welcome and drop; welcome and read until the release
		released <- func() error {
			for i := range 2 {
				c, err := acceptHello(ln, i)
				if err != nil {
					return err
				}
				defer c.Close()
				var m supMsg
				if _, err := c.Write(mustFrame(t, &supMsg{Op: opWelcome, Proto: supProto, Version: "test", Pid: os.Getpid()})); err != nil {
					return err
				}
				if i == 0 {
					c.Close()
					close(dropped)
					continue
				}
				for {
					if _, err := readFrame(c, nil, &m); err != nil {
						return fmt.Errorf("before the release: %w", err)
					}
					if m.Op == opRelease && m.Job == "j1" {
						return nil
					}
				}
			}
			return nil
		}()
	}()
	sc := dialTest(t, sock)
	<-dropped
	if err := sc.sendLater(&supMsg{Op: opRelease, Job: "j1", Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "a write to the dropped connection to fail", func() bool {
		sc.flushHeld()
		sc.wmu.Lock()
		defer sc.wmu.Unlock()
		_, err := sc.c.Write(nil) // zero bytes: whether the peer is gone
		return err != nil && len(sc.held) > 0
	})
	sc.adopt() // the reader finds the connection gone and makes a new one
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	sc.leave(false)
}

// listenFakeSupervisor listens where the supervisor of this process would,
// in a fresh data dir, for a test that plays the supervisor's part; the
// listener is closed when t ends.
func listenFakeSupervisor(t *testing.T) (net.Listener, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, supDir), 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, supDir, strconv.Itoa(os.Getpid())+".sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, sock
}

// acceptHello takes the next connection to a fake supervisor (the i-th)
// and reads its hello.
func acceptHello(ln net.Listener, i int) (net.Conn, error) {
	c, err := ln.Accept()
	if err != nil {
		return nil, err
	}
	var m supMsg
	if _, err := readFrame(c, nil, &m); err != nil || m.Op != opHello {
		c.Close()
		return nil, fmt.Errorf("connection %d: %q, %v; want hello", i, m.Op, err)
	}
	return c, nil
}

// TestReattachIntact checks what a starting agent says of its supervisors:
// intact with none, or with every one alive; not intact once a socket is
// found that nobody answers (a supervisor died, maybe with jobs).
func TestReattachIntact(t *testing.T) {
	dir := t.TempDir()
	a := &Agent{log: slog.New(slog.DiscardHandler)}
	ss := &supervisors{dataDir: dir, version: "test", spoolDir: filepath.Join(dir, "spool"), a: a}
	if _, _, intact, err := ss.reattach(); err != nil || !intact {
		t.Fatalf("no supervisor: intact %v, %v; want intact", intact, err)
	}
	ss.leave(false)
	startTestSupervisor(t, dir)
	if _, _, intact, err := ss.reattach(); err != nil || !intact {
		t.Fatalf("a live supervisor: intact %v, %v; want intact", intact, err)
	}
	ss.leave(false)
	// A socket left by a process that is gone: bound, then closed without
	// unlinking it.
	stale := filepath.Join(dir, supDir, "999999999.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, _, intact, err := ss.reattach(); err != nil || intact {
		t.Fatalf("a dead supervisor's socket: intact %v, %v; want not intact", intact, err)
	}
	ss.leave(false)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the stale socket is still there: %v", err)
	}
}
