package agent

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	go func() { done <- runSupervisor(dir, "test", slog.New(slog.DiscardHandler), w) }()
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
