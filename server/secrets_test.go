package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/seal"
	"github.com/hodei-jobs/hodei/store"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger
// and the reads of a test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// debugLogger logs everything, debug included, to buf.
func debugLogger(buf io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startAgent runs a real agent against addr until the test ends.
func startAgent(t *testing.T, s *sut, dir string, log *slog.Logger) {
	t.Helper()
	join, err := s.srv.IssueToken(context.Background(), auth.Agent, "test-agent")
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{Server: s.srv.GRPCAddr(), DataDir: dir, Name: "test", Slots: 4, KillGrace: time.Second, Logger: log,
		Join: join, CAFingerprint: s.srv.CAFingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// newSecret returns a random value that cannot occur anywhere by chance.
func newSecret(t *testing.T, label string) string {
	t.Helper()
	return fmt.Sprintf("hs-%s-%s", label, rand.Text())
}

// checkSpec is a job that exits 0 only when its env S holds want. The job
// gets want as two halves in plain env, so that want itself appears
// nowhere but in the secret.
func checkSpec(want string) *pb.JobSpec {
	return &pb.JobSpec{
		Script:    `test "$S" = "$H1$H2" && echo ok`,
		Env:       map[string]string{"H1": want[:len(want)/2], "H2": want[len(want)/2:]},
		SecretEnv: map[string]string{"S": want},
	}
}

// leaks returns, for each secret, where it (plain, base64 or hex) occurs in
// the named blobs.
func leaks(secrets []string, blobs map[string][]byte) []string {
	var out []string
	for _, s := range secrets {
		forms := []string{s, base64.StdEncoding.EncodeToString([]byte(s)), hex.EncodeToString([]byte(s))}
		for name, b := range blobs {
			for _, f := range forms {
				if n := bytes.Count(b, []byte(f)); n > 0 {
					out = append(out, fmt.Sprintf("%s: %d × %q", name, n, f))
				}
			}
		}
	}
	return out
}

// dirFiles reads every file under dir but skip, keyed by its path.
func dirFiles(t *testing.T, dir string, skip ...string) map[string][]byte {
	t.Helper()
	out := make(map[string][]byte)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !d.Type().IsRegular() {
			return nil // a supervisor's socket holds nothing at rest
		}
		for _, s := range skip {
			if path == s {
				return nil
			}
		}
		b, err := os.ReadFile(path)
		out[path] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (s *sut) snapshot(t *testing.T) []byte {
	t.Helper()
	st, err := s.admin.Snapshot(context.Background(), &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return collect(t, st.Recv, (*pb.SnapshotChunk).GetData)
}

func (s *sut) waitDone(t *testing.T, id string) *pb.Job {
	t.Helper()
	j := s.waitJob(t, id, func(j *pb.Job) bool { return job.State(j.GetState()).Terminal() })
	if j.GetState() != pb.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("job %s ended %s (%q): its process did not get the secret", id, j.GetState(), j.GetReason())
	}
	return j
}

// TestSecretsSealedAtRest submits jobs with secrets (single, array,
// pipeline), runs them on a real agent, and finds no secret value in the
// data dir, a snapshot, the server's and the agent's debug logs, /metrics
// or the API's answers, while each job's process got its value.
func TestSecretsSealedAtRest(t *testing.T) {
	var srvLog, agentLog syncBuffer
	s := setup(t, func(c *Config) { c.Logger = debugLogger(&srvLog) })
	startAgent(t, s, filepath.Join(s.dir, "agent"), debugLogger(&agentLog))
	ctx := context.Background()

	var secrets, ids []string
	// One job.
	one := newSecret(t, "one")
	secrets = append(secrets, one)
	ids = append(ids, s.submit(t, checkSpec(one)))
	// An array of three.
	arr := newSecret(t, "array")
	secrets = append(secrets, arr)
	ar, err := s.jobs.Submit(ctx, &pb.SubmitRequest{Spec: checkSpec(arr), Array: "1-3"})
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, ar.GetIds()...)
	// A pipeline: a matrix step and one that needs it.
	build, deploy := newSecret(t, "build"), newSecret(t, "deploy")
	secrets = append(secrets, build, deploy)
	ps, err := s.jobs.RunPipeline(ctx, &pb.RunPipelineRequest{Spec: &pb.PipelineSpec{Name: "p", Steps: []*pb.PipelineStepSpec{
		{Name: "build", Spec: checkSpec(build), Matrix: []*pb.MatrixAxis{{Key: "os", Values: []string{"a", "b"}}}},
		{Name: "deploy", Spec: checkSpec(deploy), Needs: []string{"build"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range ps.GetPipeline().GetSteps() {
		ids = append(ids, st.GetJobs()...)
	}
	// One that is never run: still pending when the files are read.
	pending := newSecret(t, "pending")
	secrets = append(secrets, pending)
	spec := checkSpec(pending)
	spec.Selector = map[string]string{"no-such": "worker"}
	pendingID := s.submit(t, spec)
	if len(ids) != 7 {
		t.Fatalf("%d jobs, want 7", len(ids))
	}

	blobs := make(map[string][]byte)
	for _, id := range append(ids, pendingID) {
		var j *pb.Job
		if id == pendingID {
			j, err = s.jobs.Get(ctx, &pb.GetJobRequest{Id: id})
			if err != nil {
				t.Fatal(err)
			}
		} else {
			j = s.waitDone(t, id)
		}
		blobs["answer "+id] = []byte(prototext.Format(j))
		// Memory holds the sealed value only.
		mem, err := s.srv.Scheduler().Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if v := mem.Spec.SecretEnv["S"]; !seal.IsSealed(v) {
			t.Errorf("job %s holds %q in memory, want a sealed value", id, v)
		}
	}
	list, err := s.jobs.List(ctx, &pb.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	blobs["list"] = []byte(prototext.Format(list))
	var out bytes.Buffer
	logs, err := s.jobs.Logs(ctx, &pb.LogsRequest{Id: ids[0]})
	if err != nil {
		t.Fatal(err)
	}
	for {
		d, err := logs.Recv()
		if err != nil {
			break
		}
		out.Write(d.GetData())
	}
	if !strings.Contains(out.String(), "ok") {
		t.Errorf("job output = %q, want ok", out.String())
	}

	blobs["snapshot"] = s.snapshot(t)
	blobs["/metrics"] = []byte(s.httpGet(t, "/metrics"))
	for path, b := range dirFiles(t, s.dir, filepath.Join(s.dir, SecretsKeyName)) {
		blobs[path] = b
	}
	blobs["server log"] = srvLog.Bytes()
	blobs["agent log"] = agentLog.Bytes()
	if len(blobs["server log"]) == 0 || len(blobs["agent log"]) == 0 {
		t.Fatal("a logger wrote nothing: the test would prove nothing")
	}
	if !bytes.Contains(blobs["snapshot"], []byte(seal.Prefix)) {
		t.Fatal("the snapshot holds no sealed value: the test would prove nothing")
	}
	for _, l := range leaks(secrets, blobs) {
		t.Error("secret found in", l)
	}
}

// TestSecretsKeyFile checks the key file's life: created 0600 on the first
// start, required by every later one, and refused when it is another key.
func TestSecretsKeyFile(t *testing.T) {
	open := func(t *testing.T, cfg Config) error {
		t.Helper()
		srv, err := New(context.Background(), cfg)
		if err == nil {
			srv.Close()
		}
		return err
	}
	first := func(t *testing.T) Config {
		t.Helper()
		cfg := Config{DataDir: t.TempDir()}
		if err := open(t, cfg); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	keyPath := func(cfg Config) string { return filepath.Join(cfg.DataDir, SecretsKeyName) }

	t.Run("OK", func(t *testing.T) {
		cfg := first(t)
		st, err := os.Stat(keyPath(cfg))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 || st.Size() != seal.KeySize {
			t.Fatalf("key file: mode %v, %d bytes", st.Mode(), st.Size())
		}
		if err := open(t, cfg); err != nil {
			t.Fatalf("second start: %v", err)
		}
	})
	t.Run("ErrKeyMissing", func(t *testing.T) {
		cfg := first(t)
		os.Remove(keyPath(cfg))
		err := open(t, cfg)
		if !errors.Is(err, seal.ErrKeyMissing) || !strings.Contains(err.Error(), keyPath(cfg)) {
			t.Fatalf("err = %v, want ErrKeyMissing naming %s", err, keyPath(cfg))
		}
		if _, err := os.Stat(keyPath(cfg)); err == nil {
			t.Fatal("a new key file was created")
		}
	})
	t.Run("ErrKeyMismatch", func(t *testing.T) {
		cfg := first(t)
		if err := os.WriteFile(keyPath(cfg), seal.GenerateKey(), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := open(t, cfg); !errors.Is(err, seal.ErrKeyMismatch) || !strings.Contains(err.Error(), keyPath(cfg)) {
			t.Fatalf("err = %v, want ErrKeyMismatch naming the file", err)
		}
	})
	t.Run("KeyFileElsewhere", func(t *testing.T) {
		elsewhere := filepath.Join(t.TempDir(), "keys", "hodei.key")
		cfg := Config{DataDir: t.TempDir(), SecretsKeyFile: elsewhere}
		if err := open(t, cfg); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(elsewhere); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(keyPath(cfg)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("a key file was made in the data dir too: %v", err)
		}
	})
}

// TestSecretsMigration starts the server on a database from before sealing,
// whose jobs hold plain secret values: it seals them in place, compacts the
// file so that no freed page keeps them, and the job still gets its value.
// A second start changes nothing.
func TestSecretsMigration(t *testing.T) {
	dir := t.TempDir()
	secret := newSecret(t, "old")
	db, err := store.Open(filepath.Join(dir, "hodei.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	spec := checkSpec(secret).ToSpec()
	spec.Normalize()
	old := &job.Job{ID: "01J000000000000000000000AB", Spec: spec, State: job.Pending, Attempt: 1, CreatedAt: time.Now()}
	if err := db.Insert(context.Background(), []*job.Job{old}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(dir, "hodei.db")
	if raw, _ := os.ReadFile(dbPath); !bytes.Contains(raw, []byte(secret)) {
		t.Fatal("the old database does not hold the plain value: the test would prove nothing")
	}

	var srvLog syncBuffer
	s := setup(t, func(c *Config) { c.DataDir = dir; c.Logger = debugLogger(&srvLog) })
	raw, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if l := leaks([]string{secret}, map[string][]byte{"migrated db": raw, "snapshot": s.snapshot(t)}); l != nil {
		t.Fatalf("plain value left after the migration: %v", l)
	}
	if !bytes.Contains(srvLog.Bytes(), []byte("sealed secret env values stored in plain text")) {
		t.Errorf("the migration was not logged:\n%s", srvLog.Bytes())
	}
	startAgent(t, s, filepath.Join(dir, "agent"), nil)
	s.waitDone(t, old.ID)
}

// TestSecretsMigrationOnce checks that a second start after the migration
// finds nothing to seal.
func TestSecretsMigrationOnce(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "hodei.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	spec := checkSpec(newSecret(t, "old")).ToSpec()
	spec.Normalize()
	old := &job.Job{ID: "01J000000000000000000000AB", Spec: spec, State: job.Pending, Attempt: 1, CreatedAt: time.Now()}
	if err := db.Insert(context.Background(), []*job.Job{old}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	var sealedValues []string
	for i, want := range []bool{true, false} {
		var log syncBuffer
		srv, err := New(context.Background(), Config{DataDir: dir, Logger: debugLogger(&log)})
		if err != nil {
			t.Fatal(err)
		}
		j, err := srv.Scheduler().Get(t.Context(), old.ID)
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		sealedValues = append(sealedValues, j.Spec.SecretEnv["S"])
		if got := bytes.Contains(log.Bytes(), []byte("sealed secret env values")); got != want {
			t.Errorf("start %d: logged a migration = %v, want %v", i+1, got, want)
		}
	}
	if sealedValues[0] != sealedValues[1] || !seal.IsSealed(sealedValues[0]) {
		t.Errorf("sealed value changed between starts: %.30q → %.30q", sealedValues[0], sealedValues[1])
	}
}
