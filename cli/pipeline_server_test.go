package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/server"
)

// startServer runs a real server in t.TempDir() on 127.0.0.1:0, with an
// in-process agent if withAgent, and stops them in t.Cleanup. It returns
// the gRPC address.
func startServer(t *testing.T, withAgent bool) string {
	t.Helper()
	dir := t.TempDir()
	srv, err := server.New(context.Background(), server.Config{DataDir: dir, GRPCAddr: "127.0.0.1:0", HTTPAddr: "-",
		Settings: cluster.Settings{Heartbeat: 100 * time.Millisecond, KillGrace: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		srv.Close()
		t.Fatal(err)
	}
	var newDev func() (*agent.Agent, error)
	if withAgent {
		newDev = func() (*agent.Agent, error) {
			join, err := srv.IssueToken(context.Background(), auth.Agent, "test-agent")
			if err != nil {
				return nil, err
			}
			return agent.New(agent.Config{Server: srv.GRPCAddr(), DataDir: filepath.Join(dir, "agent"), Name: "test", Slots: 4,
				KillGrace: time.Second, Join: join, CAFingerprint: srv.CAFingerprint()})
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveWith(ctx, srv, newDev) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Errorf("serve: %v", err)
		}
	})
	credsMu.Lock()
	credsDir[srv.GRPCAddr()] = dir
	credsMu.Unlock()
	return srv.GRPCAddr()
}

var (
	credsMu  sync.Mutex
	credsDir = map[string]string{} // server address → its data dir
)

// runAt runs `hodei --addr addr args…`, with the admin token and CA of a
// real server started by startServer.
func runAt(t *testing.T, addr string, args ...string) result {
	t.Helper()
	credsMu.Lock()
	dir, ok := credsDir[addr]
	credsMu.Unlock()
	pre := []string{"--addr", addr}
	if ok {
		tok, err := os.ReadFile(filepath.Join(dir, server.AdminTokenFile))
		if err != nil {
			t.Fatal(err)
		}
		pre = append(pre, "--token", strings.TrimSpace(string(tok)), "--ca-file", filepath.Join(dir, server.TLSDir, "ca.pem"))
	}
	return runApp(t, append(pre, args...)...)
}

// jsonOf runs a command that prints JSON and decodes it into v.
func jsonOf(t *testing.T, addr string, v any, args ...string) {
	t.Helper()
	r := runAt(t, addr, append([]string{"-o", "json"}, args...)...)
	r.wantOK(t)
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, r.stdout)
	}
}

func TestPipelinesAgainstServer(t *testing.T) {
	addr := startServer(t, false)

	t.Run("InvalidExamplesStoreNothing", func(t *testing.T) {
		for _, tc := range invalidExamples {
			r := runAt(t, addr, "pipeline", "run", example(tc.file))
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("%s: exit %d, stderr %q; want 1 and %q", tc.file, r.code, r.stderr, tc.want)
			}
		}
		var pipelines, jobs []map[string]any
		jsonOf(t, addr, &pipelines, "pipeline", "ls")
		jsonOf(t, addr, &jobs, "jobs", "ls")
		if len(pipelines) != 0 || len(jobs) != 0 {
			t.Errorf("after refused pipelines: %d pipelines, %d jobs; want none", len(pipelines), len(jobs))
		}
	})

	var diamond pipelineView
	t.Run("Diamond", func(t *testing.T) {
		r := runAt(t, addr, "pipeline", "run", example("diamond.yaml"))
		r.wantOK(t)
		id := strings.TrimSpace(r.stdout)
		jsonOf(t, addr, &diamond, "pipeline", "get", id)
		if diamond.ID != id || diamond.State != "PENDING" || len(diamond.Steps) != 4 {
			t.Fatalf("pipeline get = %+v", diamond)
		}
		publish := diamond.Steps[3]
		want := slices.Concat(diamond.Steps[1].JobIDs, diamond.Steps[2].JobIDs)
		if len(publish.Jobs) != 1 || !slices.Equal(publish.Jobs[0].DependsOn, want) || publish.Jobs[0].Name != "diamond/publish" {
			t.Errorf("publish job = %+v, want it to wait for %q", publish.Jobs, want)
		}
		var jobs []jobView
		jsonOf(t, addr, &jobs, "jobs", "ls", "--pipeline", id)
		if len(jobs) != 4 || jobs[0].Pipeline != id || jobs[0].Step != "build" {
			t.Errorf("jobs ls --pipeline = %+v", jobs)
		}
	})

	t.Run("Defaults", func(t *testing.T) {
		var v pipelineView
		jsonOf(t, addr, &v, "pipeline", "run", example("defaults.yaml"))
		if len(v.Steps) != 3 || len(v.Steps[1].Jobs) != 6 {
			t.Fatalf("pipeline run = %+v", v)
		}
		prio := map[string]int32{}
		for _, s := range v.Steps {
			prio[s.Name] = s.Jobs[0].Priority
		}
		if prio["build"] != 600 || prio["test"] != 0 || prio["publish"] != 600 {
			t.Errorf("priorities = %v, want the defaults' 600 but where a step sets its own", prio)
		}
		if j := v.Steps[1].Jobs[5]; j.Name != "release/test[os=bsd,go=1.26]" || j.Labels["team"] != "infra" {
			t.Errorf("last test job = %+v", j)
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		r := runAt(t, addr, "pipeline", "cancel", diamond.ID)
		r.wantOK(t)
		if !strings.Contains(r.stdout, "CANCELLED") {
			t.Errorf("stdout = %q, want CANCELLED", r.stdout)
		}
		r = runAt(t, addr, "pipeline", "cancel", diamond.ID)
		// An ended pipeline is left as it is, exit 0, as by jobs cancel.
		if r.code != 0 || !strings.Contains(r.stderr, "nothing to cancel: pipeline "+diamond.ID+" had ended (CANCELLED)") ||
			!strings.Contains(r.stdout, "CANCELLED") {
			t.Errorf("second cancel: exit %d, stderr %q", r.code, r.stderr)
		}
		r = runAt(t, addr, "pipeline", "ls")
		r.wantOK(t)
		if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 3 || !strings.Contains(lines[2], "CANCELLED") {
			t.Errorf("pipeline ls:\n%s\nwant 2 pipelines, the diamond CANCELLED", r.stdout)
		}
	})

	t.Run("Array", func(t *testing.T) {
		var sub struct {
			ID  string   `json:"id"`
			IDs []string `json:"ids"`
		}
		jsonOf(t, addr, &sub, "submit", "--array", "2-5%2", "--name", "part", "--", "true")
		var jobs []jobView
		jsonOf(t, addr, &jobs, "jobs", "ls", "--array", sub.ID)
		if len(jobs) != 4 || len(sub.IDs) != 4 {
			t.Fatalf("submitted %d, listed %d; want 4", len(sub.IDs), len(jobs))
		}
		for i, j := range jobs {
			if j.ID != sub.IDs[i] || j.Array != sub.ID || j.ArrayIndex == nil || *j.ArrayIndex != int32(2+i) {
				t.Errorf("job %d = %+v", i, j)
			}
		}
		r := runAt(t, addr, "jobs", "cancel", "--array", sub.ID)
		r.wantOK(t)
		if got := strings.Fields(r.stdout); !slices.Equal(got, sub.IDs) {
			t.Errorf("cancelled %q, want %q", got, sub.IDs)
		}
	})
}

func TestPipelineWaitAgainstServer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs jobs")
	}
	addr := startServer(t, true)
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ok := write("ok.yaml", `name: ok
steps:
  - name: build
    command: ["true"]
  - name: test
    needs: [build]
    matrix: {n: ["1", "2"]}
    script: test "$MATRIX_N" -gt 0
  - name: flaky
    needs: [build]
    continue_on_failure: true
    command: ["false"]
  - name: publish
    needs: [test, flaky]
    command: ["true"]
`)
	bad := write("bad.yaml", `name: bad
steps:
  - name: build
    command: ["false"]
  - name: test
    needs: [build]
    command: ["true"]
`)
	r := runAt(t, addr, "pipeline", "run", "--wait", ok)
	if r.code != 0 || !strings.HasSuffix(r.stdout, " COMPLETED\n") || !strings.Contains(r.stdout, "flaky: FAILED") {
		t.Errorf("ok.yaml: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	r = runAt(t, addr, "pipeline", "run", "--wait", bad)
	if r.code != 1 || !strings.Contains(r.stdout, "test: CANCELLED") || !strings.Contains(r.stderr, "failed in step build") {
		t.Errorf("bad.yaml: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	var v pipelineView
	id := strings.SplitN(r.stdout, "\n", 2)[0]
	jsonOf(t, addr, &v, "pipeline", "get", id)
	if v.State != "FAILED" || v.Steps[1].Jobs[0].Reason != "dependency build failed" {
		t.Errorf("bad pipeline = %s, test's reason %q", v.State, v.Steps[1].Jobs[0].Reason)
	}
}
