package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stop sends SIGTERM and waits for the process to be gone.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("hodei did not stop after SIGTERM:\n%s", p.stderr)
	}
}

// serveRefused runs `hodei serve` on dataDir and wants it to exit 1 at once
// with every text of want in its stderr, and no sign of a crash.
func serveRefused(t *testing.T, dataDir string, want []string, extra ...string) string {
	t.Helper()
	args := append([]string{"serve", "--data-dir", dataDir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "-", "--log-level", "warn"}, extra...)
	out, errOut, code := runCmdWithin(t, exec.Command(hodeiBin, args...), 60*time.Second)
	if code != 1 || strings.Contains(out, "hodei: serving") {
		t.Fatalf("serve on a damaged data dir: exit %d, want 1\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	wantNoCrash(t, errOut)
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	}
	return errOut
}

// wantNoCrash fails when text shows a Go panic, fault or stack dump.
func wantNoCrash(t *testing.T, text string) {
	t.Helper()
	for _, sign := range []string{"panic:", "fatal error", "SIGBUS", "SIGSEGV", "goroutine ", "unexpected fault address"} {
		if strings.Contains(text, sign) {
			t.Fatalf("hodei crashed (%q):\n%s", sign, text)
		}
	}
}

// damagedDataDir is a server's data dir, with jobs, after a clean stop.
func damagedDataDir(t *testing.T) (dir string, jobs []string) {
	t.Helper()
	dir = t.TempDir()
	srv := startServer(t, dir)
	for i := range 10 {
		jobs = append(jobs, strings.TrimSpace(mustRun(t, srv.grpcAddr, "submit", "--name", "damage-"+string(rune('a'+i)), "--", "true")))
	}
	srv.stop(t)
	return dir, jobs
}

// TestDamagedDatabaseThroughTheBinary starts the real server on damaged
// data dirs: each is refused with a clear error naming the file (exit 1),
// or recovers as documented; none crashes or starts empty.
func TestDamagedDatabaseThroughTheBinary(t *testing.T) {
	base, jobs := damagedDataDir(t)
	db := func(dir string) string { return filepath.Join(dir, "hodei.db") }
	pageSize := int64(os.Getpagesize())
	if pageSize != 4096 {
		t.Skipf("the cases assume 4 KiB pages, this machine has %d", pageSize)
	}
	overwrite := func(t *testing.T, path string, off int64, b []byte) {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		check  bool     // serve --check
		want   []string // refused with these; nil: serves
	}{
		{"EmptyWithIdentity", func(t *testing.T, dir string) { os.Truncate(db(dir), 0) },
			false, []string{"hodei.db is empty (0 bytes)", "hodei.identity", "hodei snapshot restore FILE --data-dir"}},
		{"EmptyWithoutIdentity", func(t *testing.T, dir string) {
			os.Truncate(db(dir), 0)
			os.Remove(filepath.Join(dir, "hodei.identity"))
		}, false, []string{"hodei.db is empty (0 bytes)", "hodei snapshot restore"}},
		{"Missing", func(t *testing.T, dir string) { os.Remove(db(dir)) },
			false, []string{"hodei.db is missing", "hodei snapshot restore"}},
		{"CutTo8KiB", func(t *testing.T, dir string) { os.Truncate(db(dir), 8<<10) },
			false, []string{"hodei.db", "is 8192 bytes", "cut short"}},
		{"CutTo12KiB", func(t *testing.T, dir string) { os.Truncate(db(dir), 12<<10) },
			false, []string{"hodei.db", "is 12288 bytes", "cut short"}},
		{"ZeroedPages", func(t *testing.T, dir string) {
			overwrite(t, db(dir), 2*pageSize, make([]byte, 16*pageSize))
		}, false, []string{"hodei.db", "database file is damaged"}},
		{"RandomPages", func(t *testing.T, dir string) {
			b := make([]byte, 16*pageSize)
			for i := range b {
				b[i] = byte(i*7919 + i>>8)
			}
			overwrite(t, db(dir), 2*pageSize, b)
		}, false, []string{"hodei.db", "database file is damaged"}},
		{"DamagedKeyWithCheck", func(t *testing.T, dir string) {
			// Damage inside pages whose headers are intact (a job's key):
			// the open does not notice, --check (bbolt's check and the
			// store's, in a child process) refuses it.
			b, err := os.ReadFile(db(dir))
			if err != nil {
				t.Fatal(err)
			}
			// Every copy of a job's id: the one that is a key of the jobs
			// bucket then sorts after the ids stored after it.
			n := 0
			for i := bytes.Index(b, []byte(jobs[4])); i >= 0; n++ {
				overwrite(t, db(dir), int64(i), []byte{0xff})
				b[i] = 0xff
				i = bytes.Index(b, []byte(jobs[4]))
			}
			if n == 0 {
				t.Fatal("job id not found in the file")
			}
		}, true, []string{"--check: refusing to serve", "hodei.db", "hodei snapshot restore"}},
		{"LeafKeysOutOfOrder", func(t *testing.T, dir string) {
			// Sound meta pages, a leaf page's keys out of order: bbolt's
			// rebuild of the free list at the first commit panics in a
			// goroutine of its own. serve tries that in a child first.
			gz, err := os.Open("testdata/damaged/leaf-keys-out-of-order.db.gz")
			if err != nil {
				t.Fatal(err)
			}
			defer gz.Close()
			zr, err := gzip.NewReader(gz)
			if err != nil {
				t.Fatal(err)
			}
			out, err := os.Create(db(dir))
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			if _, err := io.Copy(out, zr); err != nil {
				t.Fatal(err)
			}
			os.Remove(filepath.Join(dir, "hodei.identity")) // another cluster's file
		}, false, []string{"refusing to serve", "hodei.db", "damaged", "hodei snapshot restore"}},
		{"BothMetasDamaged", func(t *testing.T, dir string) {
			overwrite(t, db(dir), 16+20, []byte("damage"))
			overwrite(t, db(dir), pageSize+16+20, []byte("damage"))
		}, false, []string{"hodei.db", "both meta pages are unreadable"}},
		{"FirstMetaDamaged", func(t *testing.T, dir string) {
			overwrite(t, db(dir), 16, make([]byte, 64))
		}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if out, err := exec.Command("cp", "-a", base+"/.", dir).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v %s", err, out)
			}
			tc.damage(t, dir)
			var extra []string
			if tc.check {
				extra = append(extra, "--check")
			}
			if tc.want != nil {
				before, _ := os.Stat(db(dir))
				errOut := serveRefused(t, dir, tc.want, extra...)
				t.Logf("%s", errOut)
				if after, _ := os.Stat(db(dir)); before != nil && (after == nil || after.Size() != before.Size()) {
					t.Errorf("the damaged file changed: %v → %v", before.Size(), after)
				}
				return
			}
			// bbolt falls back to the other meta page: the server starts
			// with the commit before (here every job: the last commit of the
			// clean stop was no job's).
			srv := startServer(t, dir, extra...)
			out := mustRun(t, srv.grpcAddr, "jobs", "ls", "-o", "json")
			for _, id := range jobs {
				if !strings.Contains(out, id) {
					t.Errorf("job %s lost after a fallback to the other meta page", id)
				}
			}
		})
	}
}

// TestSnapshotRestoreRoundTrip: a cluster's database is lost; the last
// snapshot, restored into the data dir (keys and logs/ still there), gives
// back its tenants, jobs, pipeline, logs, tokens and sealed secrets.
func TestSnapshotRestoreRoundTrip(t *testing.T) {
	r := startRestartable(t)
	addr := r.addr
	mustRun(t, addr, "tenants", "set", "team-a", "--weight", "3")
	mustRun(t, addr, "run", "--", "sh", "-c", "echo hello from one")
	mustRun(t, addr, "run", "--tenant", "team-a", "--", "sh", "-c", "seq 1 500; echo two done")
	pipe := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(pipe, []byte("name: rt\nsteps:\n  - name: a\n    command: [echo, step-a]\n  - name: b\n    needs: [a]\n    command: [echo, step-b]\n"), 0o600)
	var pl struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, addr, "pipeline", "run", pipe, "--wait", "-o", "json")), &pl); err != nil || pl.ID == "" {
		t.Fatalf("pipeline run: %v %+v", err, pl)
	}
	token := strings.TrimSpace(mustRun(t, addr, "token", "create", "--role", "viewer", "--name", "rt-viewer"))
	// A job with a sealed secret that no worker can run yet: after the
	// restore a worker with its label runs it.
	const secret = "s3cret-value-rt"
	secretJob := strings.TrimSpace(mustRun(t, addr, "submit", "--selector", "role=later", "--secret-env", "S="+secret, "--",
		"sh", "-c", `echo "secret is $S"`))

	listings := func() map[string]string {
		m := map[string]string{}
		m["tenants"] = mustRun(t, addr, "tenants", "ls", "-o", "json")
		m["pipeline"] = mustRun(t, addr, "pipeline", "get", pl.ID, "-o", "json")
		var jobs []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		}
		out := mustRun(t, addr, "jobs", "ls", "--all", "-o", "json")
		if err := json.Unmarshal([]byte(out), &jobs); err != nil {
			t.Fatalf("jobs ls: %v\n%s", err, out)
		}
		// A waiting job's effective priority grows with its age, and why
		// it waits follows the workers connected right now.
		m["jobs"] = regexp.MustCompile(`"(effective_priority|pending_reason)": ("[^"]*"|[0-9.]+)`).ReplaceAllString(out, "")
		for _, j := range jobs {
			if j.State == "COMPLETED" {
				m["logs "+j.ID] = mustRun(t, addr, "logs", "--raw", j.ID)
			}
		}
		var toks []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}
		json.Unmarshal([]byte(mustRun(t, addr, "token", "ls", "-o", "json")), &toks)
		b, _ := json.Marshal(toks)
		m["tokens"] = string(b)
		return m
	}
	before := listings()
	if len(before) < 8 {
		t.Fatalf("too little to compare: %v", before)
	}
	snap := filepath.Join(t.TempDir(), "backup.db")
	mustRun(t, addr, "snapshot", "save", snap)

	// The database is lost.
	r.srv.stop(t)
	os.Remove(filepath.Join(r.dataDir, "hodei.db"))
	serveRefused(t, r.dataDir, []string{"hodei.db is missing", "hodei snapshot restore FILE --data-dir " + r.dataDir})

	out, errOut, code := runCmd(t, exec.Command(hodeiBin, "snapshot", "restore", snap, "--data-dir", r.dataDir))
	if code != 0 || !strings.Contains(out, "sound; cluster ") || !strings.Contains(out, "restored "+filepath.Join(r.dataDir, "hodei.db")) {
		t.Fatalf("restore: exit %d\n%s%s", code, out, errOut)
	}
	if errOut != "" {
		t.Errorf("restore warned: %s", errOut)
	}
	r.srv = startServer(t, r.dataDir, r.args...)
	after := listings()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s differs after the restore:\nbefore: %s\nafter:  %s", k, v, after[k])
		}
	}
	// The viewer token still authenticates.
	cmd := exec.Command(hodeiBin, "--addr", addr, "jobs", "ls")
	cmd.Env = append(os.Environ(), "HODEI_TOKEN="+token, "HODEI_CA_FILE="+credsFor(addr).caFile)
	if out, errOut, code := runCmd(t, cmd); code != 0 {
		t.Fatalf("the token from before the restore: exit %d %s %s", code, out, errOut)
	}
	// The sealed secret opens with the kept key and is masked in output.
	startAgent(t, addr, t.TempDir(), "--labels", "role=later")
	eventually(t, 60*time.Second, "the secret job completes", func() bool {
		return strings.Contains(mustRun(t, addr, "jobs", "get", secretJob, "-o", "json"), `"COMPLETED"`)
	})
	logs := mustRun(t, addr, "logs", "--raw", secretJob)
	if !strings.Contains(logs, "secret is ***") || strings.Contains(logs, secret) {
		t.Fatalf("the restored secret job printed %q; want it masked", logs)
	}

	// A restore is refused while the server runs, and changes nothing.
	out, errOut, code = runCmd(t, exec.Command(hodeiBin, "snapshot", "restore", snap, "--data-dir", r.dataDir))
	if code != 1 || !strings.Contains(errOut, "locked") {
		t.Fatalf("restore under a running server: exit %d\n%s%s", code, out, errOut)
	}
}

// TestScheduledSnapshots: serve --snapshot-every writes snapshots that
// verify, keeping the newest --snapshot-keep.
func TestScheduledSnapshots(t *testing.T) {
	dir := t.TempDir()
	snaps := filepath.Join(t.TempDir(), "snaps")
	srv := startServer(t, dir, "--snapshot-every", "1s", "--snapshot-keep", "2", "--snapshot-dir", snaps)
	mustRun(t, srv.grpcAddr, "submit", "--", "true")
	seen := map[string]bool{}
	eventually(t, 30*time.Second, "four scheduled snapshots", func() bool {
		entries, _ := os.ReadDir(snaps)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "hodei-") {
				seen[e.Name()] = true
			}
		}
		return len(seen) >= 4
	})
	srv.stop(t)
	entries, err := os.ReadDir(snaps)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("want the newest 2 kept, got %v", entries)
	}
	for _, e := range entries {
		out, errOut, code := runCmd(t, exec.Command(hodeiBin, "snapshot", "verify", filepath.Join(snaps, e.Name())))
		if code != 0 || !strings.Contains(out, "sound") || !strings.Contains(out, "1 job,") {
			t.Fatalf("verify %s: exit %d %s %s", e.Name(), code, out, errOut)
		}
	}
	_, errOut, code := runCmd(t, exec.Command(hodeiBin, "serve", "--data-dir", dir, "--snapshot-every", "10ms"))
	if code != 2 || !strings.Contains(errOut, "--snapshot-every") {
		t.Fatalf("--snapshot-every 10ms: exit %d %s", code, errOut)
	}
}

// TestRestoreRefusesAnotherClustersSnapshot: a snapshot restored into the
// data dir of another cluster, whose key files it does not match, is
// refused before anything changes (the server would refuse to start on
// it); restored into a new data dir it goes in, with a warning that the
// key files are missing.
func TestRestoreRefusesAnotherClustersSnapshot(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	srvA := startServer(t, dirA)
	snap := filepath.Join(t.TempDir(), "a.db")
	mustRun(t, srvA.grpcAddr, "snapshot", "save", snap)
	srvB := startServer(t, dirB)
	srvB.kill()
	before, err := os.ReadFile(filepath.Join(dirB, "hodei.db"))
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCmd(t, exec.Command(hodeiBin, "snapshot", "restore", snap, "--data-dir", dirB))
	if code != 1 || !strings.Contains(errOut, "restore refused, nothing changed") || !strings.Contains(errOut, "another cluster") {
		t.Fatalf("restore into another cluster's data dir: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if after, _ := os.ReadFile(filepath.Join(dirB, "hodei.db")); !bytes.Equal(before, after) {
		t.Error("the refused restore changed the database")
	}
	dirC := t.TempDir()
	out, errOut, code = runCmd(t, exec.Command(hodeiBin, "snapshot", "restore", snap, "--data-dir", dirC))
	if code != 0 || !strings.Contains(out+errOut, "secrets.key") {
		t.Fatalf("restore into a new data dir: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}
