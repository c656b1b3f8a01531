package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

func TestLogs(t *testing.T) {
	// Terminal escapes, CRLF, NUL, invalid UTF-8 and a chunk boundary inside
	// a multi-byte rune and inside an OSC: --raw keeps every byte; without
	// it, colours and text pass, the rest is dropped or replaced.
	chunks := [][]byte{
		[]byte("\x1b[31mred\x1b[0m\r\n"),
		{0x00, 0xff, 0xfe, 'a', 0xe2, 0x82},
		{0xac, '\n', 0x1b, ']', '0', ';'},
		[]byte("title\x07"),
		bytes.Repeat([]byte("x"), 1<<16),
		[]byte("no newline at the end"),
	}
	raw := string(bytes.Join(chunks, nil))
	filtered := "\x1b[31mred\x1b[0m\r\n\uFFFD\uFFFDa€\n" + strings.Repeat("x", 1<<16) + "no newline at the end"
	for _, tc := range []struct {
		name string
		args []string
		want *hodeipb.LogsRequest
		out  string
	}{
		{"All", []string{"logs", "01JAAAAAAAAAAAAAAAAAAAAAA1"}, &hodeipb.LogsRequest{Id: "01JAAAAAAAAAAAAAAAAAAAAAA1"}, filtered},
		// A follow pins the current attempt (2) first, and follows later ones.
		{"Follow", []string{"logs", "-f", "01JAAAAAAAAAAAAAAAAAAAAAA1"}, &hodeipb.LogsRequest{Id: "01JAAAAAAAAAAAAAAAAAAAAAA1", Attempt: 2, Follow: true, LaterAttempts: true}, filtered},
		{"Attempt", []string{"logs", "--follow", "--attempt", "2", "01JAAAAAAAAAAAAAAAAAAAAAA1"}, &hodeipb.LogsRequest{Id: "01JAAAAAAAAAAAAAAAAAAAAAA1", Attempt: 2, Follow: true}, filtered},
		{"Raw", []string{"logs", "--raw", "01JAAAAAAAAAAAAAAAAAAAAAA1"}, &hodeipb.LogsRequest{Id: "01JAAAAAAAAAAAAAAAAAAAAAA1"}, raw},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.jobs.logChunks = chunks
			h.jobs.jobs = []*hodeipb.Job{{Id: "01JAAAAAAAAAAAAAAAAAAAAAA1", Attempt: 2, State: hodeipb.JobState_JOB_STATE_RUNNING}}
			r := h.run(t, tc.args...)
			r.wantOK(t)
			if r.stdout != tc.out {
				t.Errorf("stdout differs: got %d bytes %q…, want %d bytes %q…", len(r.stdout), r.stdout[:min(len(r.stdout), 40)], len(tc.out), tc.out[:40])
			}
			h.jobs.mu.Lock()
			defer h.jobs.mu.Unlock()
			if len(h.jobs.logReqs) != 1 || !proto.Equal(h.jobs.logReqs[0], tc.want) {
				t.Errorf("requests = %v, want [%v]", h.jobs.logReqs, tc.want)
			}
		})
	}

	t.Run("NotFound", func(t *testing.T) {
		h := newHarness(t)
		h.jobs.setErr(status.Error(codes.NotFound, "job 01JX not found"))
		r := h.run(t, "logs", "01JX")
		if r.code != 1 || r.stderr != "hodei: job 01JX not found\n" {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("NegativeAttempt", func(t *testing.T) {
		h := newHarness(t)
		r := h.run(t, "logs", "--attempt", "-1", "01JX")
		if r.code != 2 || !strings.Contains(r.stderr, "--attempt") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

func testWorkers() []*hodeipb.Worker {
	return []*hodeipb.Worker{
		{
			Id: "w-1", Name: "builder", Hostname: "build-01.lab", State: hodeipb.WorkerState_WORKER_STATE_READY,
			Labels:     map[string]string{"zone": "eu", "arch": "amd64"},
			Capacity:   &hodeipb.Resources{CpuMillis: 16000, MemoryMib: 65536, Slots: 8},
			Allocated:  &hodeipb.Resources{CpuMillis: 2000, MemoryMib: 4096, Slots: 3},
			CpuPercent: 37.25, MemoryUsedMib: 12800, Running: []string{"01JAAAAAAAAAAAAAAAAAAAAAA2"},
			LastHeartbeatUnixNano: testNow.Add(-3 * time.Second).UnixNano(), Version: "v0.1.0",
		},
		{
			Id: "w-2", Hostname: "pi", State: hodeipb.WorkerState_WORKER_STATE_DOWN,
			Capacity:              &hodeipb.Resources{MemoryMib: 512, Slots: 1},
			LastHeartbeatUnixNano: testNow.Add(-3 * time.Hour).UnixNano(),
		},
	}
}

func TestWorkers(t *testing.T) {
	h := newHarness(t)
	h.admin.workers = testWorkers()

	t.Run("LsTable", func(t *testing.T) {
		r := h.run(t, "workers", "ls")
		r.wantOK(t)
		checkGolden(t, "workers-ls", r.stdout)
	})
	t.Run("LsJSON", func(t *testing.T) {
		r := h.run(t, "workers", "ls", "-o", "json")
		r.wantOK(t)
		var got []map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("%v\n%s", err, r.stdout)
		}
		if len(got) != 2 {
			t.Fatalf("got %d workers, want 2", len(got))
		}
		w := got[0]
		for _, k := range []string{"id", "name", "hostname", "state", "labels", "capacity", "allocated", "cpu_percent", "memory_used_mib", "running", "last_seen"} {
			if _, ok := w[k]; !ok {
				t.Errorf("no key %q: %v", k, w)
			}
		}
		if w["state"] != "READY" || fmt.Sprint(w["allocated"]) != "map[cpu_millis:2000 memory_mib:4096 slots:3]" {
			t.Errorf("worker = %v", w)
		}
	})
	t.Run("Drain", func(t *testing.T) {
		r := h.run(t, "workers", "drain", "-o", "json", "w-1")
		r.wantOK(t)
		var got workerView
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.ID != "w-1" || got.State != "DRAINING" {
			t.Errorf("stdout = %s (%v), want w-1 DRAINING", r.stdout, err)
		}
		h.admin.mu.Lock()
		drained := slices.Clone(h.admin.drained)
		h.admin.mu.Unlock()
		if !slices.Equal(drained, []string{"w-1"}) {
			t.Errorf("drained = %v, want [w-1]", drained)
		}
	})
	t.Run("DrainUnknown", func(t *testing.T) {
		r := h.run(t, "workers", "drain", "w-9")
		if r.code != 1 || r.stderr != "hodei: w-9 not found\n" {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

func TestSnapshotSave(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		h := newHarness(t)
		h.admin.snapshot = [][]byte{bytes.Repeat([]byte{0xbb}, 4096), []byte("bolt\x00tail")}
		dir := t.TempDir()
		path := filepath.Join(dir, "backup.db")
		if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := h.run(t, "snapshot", "save", path)
		r.wantOK(t)
		if want := fmt.Sprintf("4105 bytes saved to %s\n", path); r.stdout != want {
			t.Errorf("stdout = %q, want %q", r.stdout, want)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, bytes.Join(h.admin.snapshot, nil)) {
			t.Errorf("file holds %d bytes (%v), want the snapshot", len(got), err)
		}
		wantOnly(t, dir, "backup.db")

		r = h.run(t, "-o", "json", "snapshot", "save", path)
		r.wantOK(t)
		if want := fmt.Sprintf("{\n  \"file\": %q,\n  \"bytes\": 4105\n}\n", path); r.stdout != want {
			t.Errorf("json = %q, want %q", r.stdout, want)
		}
	})
	t.Run("ServerError", func(t *testing.T) {
		h := newHarness(t)
		h.admin.snapshot = [][]byte{[]byte("partial")}
		h.admin.snapshotErr = status.Error(codes.Internal, "read transaction failed")
		dir := t.TempDir()
		path := filepath.Join(dir, "backup.db")
		if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		r := h.run(t, "snapshot", "save", path)
		if r.code != 1 || r.stderr != "hodei: read transaction failed\n" {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
		if got, _ := os.ReadFile(path); string(got) != "old" {
			t.Errorf("file = %q, want the old content untouched", got)
		}
		wantOnly(t, dir, "backup.db")
	})
	t.Run("NoDir", func(t *testing.T) {
		h := newHarness(t)
		r := h.run(t, "snapshot", "save", filepath.Join(t.TempDir(), "missing", "backup.db"))
		if r.code != 1 || !strings.Contains(r.stderr, "create snapshot file") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("MissingFile", func(t *testing.T) {
		r := runApp(t, "snapshot", "save")
		if r.code != 2 || !strings.Contains(r.stderr, "missing FILE") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

// wantOnly fails unless dir holds exactly the named files (no temp files).
func wantOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, names) {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}
