package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// SubmitBatch of the fake records the specs and answers one id per spec,
// numbered across calls, unless refuseBatch refuses the call.
func (f *fakeJobs) SubmitBatch(ctx context.Context, req *hodeipb.SubmitBatchRequest) (*hodeipb.SubmitBatchResponse, error) {
	if err := f.call(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	call, before := len(f.batches), 0
	for _, b := range f.batches {
		before += len(b)
	}
	f.batches = append(f.batches, req.GetSpecs())
	if f.refuseBatch != nil {
		if err := f.refuseBatch(call); err != nil {
			return nil, err
		}
	}
	resp := &hodeipb.SubmitBatchResponse{}
	for i := range req.GetSpecs() {
		resp.Ids = append(resp.Ids, batchID(before+i))
	}
	return resp, nil
}

func batchID(n int) string { return fmt.Sprintf("01J%023d", n) }

func (f *fakeJobs) batchSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var sizes []int
	for _, b := range f.batches {
		sizes = append(sizes, len(b))
	}
	return sizes
}

// writeFile writes content to a file named name in a temporary dir and
// returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// jobLines returns n lines, each a job running `echo <i>`.
func jobLines(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "{\"command\": [\"echo\", \"%d\"]}\n", i)
	}
	return b.String()
}

func TestReadJobsFile(t *testing.T) {
	const file = `# nightly jobs

{"name": "build", "command": ["make", "all"], "tenant": "team-a", "labels": {"kind": "build"}, "env": {"CI": "1"},
  "timeout": "10m", "retries": 2, "backoff": "5s", "priority": 700, "resources": {"cpu": 500, "memory": 256, "slots": 2}}
`
	_, err := readJobsFile(strings.NewReader(file), "jobs.jsonl", testNow)
	if err == nil || !strings.Contains(err.Error(), "jobs.jsonl:3: not valid JSON") {
		t.Fatalf("an object over two lines: %v, want line 3 refused", err)
	}
	good := `# nightly jobs

{"name": "build", "command": ["make", "all"], "tenant": "team-a", "labels": {"kind": "build"}, "env": {"CI": "1"}, "timeout": "10m", "retries": 2, "backoff": "5s", "priority": 700, "resources": {"cpu": 500, "memory": 256, "slots": 2}}
   # indented comment
{"script": "echo hi", "no_pty": true, "deadline": "30m", "after": ["01ARZ3NDEKTSV4RRFFQ69G5FAV"], "secret_env": {"TOKEN": "s3cret-value"}, "preemptible": true, "workdir": "/srv", "selector": {"arch": "amd64"}}` + "\r\n"
	jobs, err := readJobsFile(strings.NewReader(good), "jobs.jsonl", testNow)
	if err != nil {
		t.Fatal(err)
	}
	want := []fileJob{
		{3, &hodeipb.JobSpec{Name: "build", Command: []string{"make", "all"}, Tenant: "team-a", Labels: map[string]string{"kind": "build"},
			Env: map[string]string{"CI": "1"}, TimeoutMs: 600_000, Retries: 2, BackoffMs: 5000, Priority: proto.Int32(700),
			Resources: &hodeipb.Resources{CpuMillis: 500, MemoryMib: 256, Slots: 2}}},
		{5, &hodeipb.JobSpec{Script: "echo hi", NoPty: true, DeadlineUnixNano: testNow.Add(30 * time.Minute).UnixNano(),
			DependsOn: []string{"01ARZ3NDEKTSV4RRFFQ69G5FAV"}, SecretEnv: map[string]string{"TOKEN": "s3cret-value"},
			Preemptible: true, Workdir: "/srv", Selector: map[string]string{"arch": "amd64"}}},
	}
	if len(jobs) != len(want) {
		t.Fatalf("%d jobs, want %d", len(jobs), len(want))
	}
	for i := range want {
		if jobs[i].line != want[i].line || !proto.Equal(jobs[i].spec, want[i].spec) {
			t.Errorf("job %d = line %d %v\nwant line %d %v", i, jobs[i].line, jobs[i].spec, want[i].line, want[i].spec)
		}
	}
}

func TestReadJobsFileErrorsNameTheLine(t *testing.T) {
	ok := `{"command": ["true"]}`
	for _, tt := range []struct {
		name string
		line string // the second line of the file, after a good one
		want string
	}{
		{"UnknownField", `{"command": ["true"], "colour": "red"}`, "jobs.jsonl:2: colour: no such field in a job; it has after, backoff, command, deadline, env, labels, name, no_pty, preemptible, priority, resources, retries, script, secret_env, selector, tenant, timeout, workdir"},
		{"FieldCase", `{"Command": ["true"]}`, "jobs.jsonl:2: Command: no such field in a job"},
		{"UnknownResource", `{"command": ["true"], "resources": {"cpus": 1}}`, "jobs.jsonl:2: resources.cpus: no such field in resources; it has cpu, memory, slots"},
		{"ResourcesNotObject", `{"command": ["true"], "resources": 4}`, "jobs.jsonl:2: resources: must be an object"},
		{"EmptyCommand", `{"name": "x"}`, "jobs.jsonl:2: command: must not be empty"},
		{"CommandAndScript", `{"command": ["true"], "script": "true"}`, "jobs.jsonl:2: command: give either a command or a script, not both"},
		{"NotJSON", `{"command": ["true"]`, "jobs.jsonl:2: not valid JSON"},
		{"TwoObjects", `{"command": ["true"]} {}`, "jobs.jsonl:2: not valid JSON"},
		{"NotAnObject", `["true"]`, "jobs.jsonl:2: a line must be a JSON object"},
		{"CommandString", `{"command": "make"}`, "jobs.jsonl:2: command: must be a list of strings, not a JSON string"},
		{"RetriesFraction", `{"command": ["true"], "retries": 1.5}`, "jobs.jsonl:2: retries: must be a whole number within range, not a JSON number 1.5"},
		{"RetriesRange", `{"command": ["true"], "retries": 101}`, "jobs.jsonl:2: retries: 101 must be between 0 and 100"},
		{"EnvNotStrings", `{"command": ["true"], "env": {"A": 1}}`, "jobs.jsonl:2: env: must be an object whose values are strings; a value is a JSON number"},
		{"Timeout", `{"command": ["true"], "timeout": "10"}`, `jobs.jsonl:2: timeout: "10" is not a duration`},
		{"BackoffTooLong", `{"command": ["true"], "backoff": "1h"}`, "jobs.jsonl:2: backoff: 1h0m0s must be between 0 and 5m0s"},
		{"DeadlinePast", `{"command": ["true"], "deadline": "2020-01-01T00:00:00Z"}`, "jobs.jsonl:2: deadline: 2020-01-01T00:00:00Z is in the past"},
		{"DeadlineFar", `{"command": ["true"], "deadline": "9000h"}`, "jobs.jsonl:2: deadline: 9000h is too far ahead: at most 365 days from now"},
		{"CPU", `{"command": ["true"], "resources": {"cpu": 99999999}}`, "jobs.jsonl:2: resources.cpu: 99999999 must be between 0 and 4096000"},
		{"Tenant", `{"command": ["true"], "tenant": "Team A"}`, `jobs.jsonl:2: tenant: "Team A" must be`},
		{"After", `{"command": ["true"], "after": ["nope"]}`, `jobs.jsonl:2: after: "nope" is not a job id`},
		{"NUL", `{"command": ["true", "a\u0000b"]}`, "jobs.jsonl:2: command[1]: contains a NUL byte"},
		{"ShortSecret", `{"command": ["true"], "secret_env": {"T": "abc"}}`, "jobs.jsonl:2: secret_env.T: the value is too short"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readJobsFile(strings.NewReader(ok+"\n"+tt.line+"\n"+ok+"\n"), "jobs.jsonl", testNow)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("err = %v\nwant it to start with %s", err, tt.want)
			}
		})
	}
	t.Run("EveryBadLine", func(t *testing.T) {
		_, err := readJobsFile(strings.NewReader("{}\n"+ok+"\n{}\n"), "jobs.jsonl", testNow)
		if err == nil || !strings.Contains(err.Error(), "jobs.jsonl:1: command") || !strings.Contains(err.Error(), "jobs.jsonl:3: command") {
			t.Fatalf("err = %v, want lines 1 and 3", err)
		}
	})
	t.Run("StopsAfterTen", func(t *testing.T) {
		_, err := readJobsFile(strings.NewReader(strings.Repeat("{}\n", 50)), "jobs.jsonl", testNow)
		if err == nil || strings.Count(err.Error(), "\n") != maxLineErrors || !strings.Contains(err.Error(), "stopped after 10 bad lines") {
			t.Fatalf("err = %v, want 10 lines and a note", err)
		}
	})
	t.Run("Empty", func(t *testing.T) {
		_, err := readJobsFile(strings.NewReader("# nothing\n\n"), "jobs.jsonl", testNow)
		if err == nil || !strings.HasPrefix(err.Error(), "jobs.jsonl: holds no job") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("LineTooLong", func(t *testing.T) {
		_, err := readJobsFile(strings.NewReader(ok+"\n"+strings.Repeat(" ", maxJobLine+1)), "jobs.jsonl", testNow)
		if err == nil || !strings.HasPrefix(err.Error(), "jobs.jsonl:2: the line is longer than 8 MiB") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestSubmitFileBatches checks that a file of 25,000 jobs goes in three
// calls, in order, and that the ids come out one per line.
func TestSubmitFileBatches(t *testing.T) {
	h := newHarness(t)
	path := writeFile(t, "jobs.jsonl", jobLines(25_000))
	r := h.run(t, "submit", "--file", path)
	r.wantOK(t)
	if got := h.jobs.batchSizes(); fmt.Sprint(got) != "[10000 10000 5000]" {
		t.Fatalf("batch sizes %v, want [10000 10000 5000]", got)
	}
	ids := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(ids) != 25_000 || ids[0] != batchID(0) || ids[24_999] != batchID(24_999) {
		t.Fatalf("%d ids printed (%q … %q), want 25,000 in order", len(ids), ids[0], ids[len(ids)-1])
	}
	if got := h.jobs.batches[2][4999].GetCommand()[1]; got != "24999" {
		t.Fatalf("last spec sent runs echo %s, want 24999", got)
	}
}

// TestSubmitFileBatchesByBytes checks that batches stay within
// job.MaxBatchBytes of encoded specs.
func TestSubmitFileBatchesByBytes(t *testing.T) {
	h := newHarness(t)
	big := strings.Repeat("x", 700_000)
	path := writeFile(t, "big.jsonl", strings.Repeat(`{"script": "`+big+`"}`+"\n", 6))
	h.run(t, "submit", "--file", path).wantOK(t)
	if got := h.jobs.batchSizes(); fmt.Sprint(got) != "[4 2]" {
		t.Fatalf("batch sizes %v, want [4 2] (4 × 700 kB within 3 MiB)", got)
	}
}

func TestSubmitFileBadLineSendsNothing(t *testing.T) {
	h := newHarness(t)
	path := writeFile(t, "jobs.jsonl", jobLines(16)+`{"command": []}`+"\n"+jobLines(3))
	r := h.run(t, "submit", "--file", path)
	if r.code != exitFailure || r.stdout != "" || r.stderr != "hodei: "+path+":17: command: must not be empty: give a command (argv) or a script\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if got := h.jobs.batchSizes(); len(got) != 0 {
		t.Fatalf("batches %v sent, want none", got)
	}
}

// TestSubmitFileServerErrorAtItsLine checks that a spec the server refuses
// is reported at its line, counting comments, and that the ids of earlier
// batches are printed and said to be submitted.
func TestSubmitFileServerErrorAtItsLine(t *testing.T) {
	h := newHarness(t)
	h.jobs.refuseBatch = func(call int) error {
		if call != 1 {
			return nil
		}
		st, _ := status.New(codes.NotFound, `specs[3]: tenant "x" does not exist`).WithDetails(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "specs[3]", Description: `tenant "x" does not exist`}}})
		return st.Err()
	}
	path := writeFile(t, "jobs.jsonl", "# header\n"+jobLines(10_010))
	r := h.run(t, "submit", "--file", path)
	// Job 10,003 is spec 3 of the second batch, on line 10,005.
	want := fmt.Sprintf("hodei: %s:10005: tenant \"x\" does not exist (the 10000 jobs of the lines before 10002 were submitted and their ids printed; nothing from line 10002 on was)\n", path)
	if r.code != exitFailure || r.stderr != want {
		t.Fatalf("exit %d, stderr %q\nwant %q", r.code, r.stderr, want)
	}
	if n := strings.Count(r.stdout, "\n"); n != 10_000 {
		t.Fatalf("%d ids printed, want the first batch's 10,000", n)
	}

	h.jobs.refuseBatch = func(int) error {
		st, _ := status.New(codes.InvalidArgument, "specs[0].resources.memory_mib: 9 is more").WithDetails(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "specs[0].resources.memory_mib", Description: "9 is more"}}})
		return st.Err()
	}
	r = h.run(t, "submit", "--file", writeFile(t, "one.jsonl", jobLines(1)))
	if r.code != exitFailure || !strings.HasSuffix(r.stderr, "one.jsonl:1: resources.memory: 9 is more\n") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}

	h.jobs.refuseBatch = func(int) error {
		return status.Error(codes.ResourceExhausted, `tenant "default" is at its max-queued limit of 1`)
	}
	r = h.run(t, "submit", "--file", writeFile(t, "two.jsonl", "\n"+jobLines(2)))
	if r.code != exitFailure || !strings.HasSuffix(r.stderr, "two.jsonl: lines 2–3: tenant \"default\" is at its max-queued limit of 1\n") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestSubmitFileFromStdin(t *testing.T) {
	h := newHarness(t)
	var stdout, stderr bytes.Buffer
	e := &env{now: func() time.Time { return testNow }, stdin: strings.NewReader(jobLines(3))}
	code := run(context.Background(), []string{"hodei", "--addr", h.addr, "submit", "--file", "-", "-o", "json"}, &stdout, &stderr, e)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var out struct{ IDs []string }
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || len(out.IDs) != 3 {
		t.Fatalf("stdout %q (%v), want {\"ids\": [3 ids]}", stdout.String(), err)
	}

	stdout.Reset()
	stderr.Reset()
	e.stdin = strings.NewReader("{}\n")
	code = run(context.Background(), []string{"hodei", "--addr", h.addr, "submit", "--file", "-"}, &stdout, &stderr, e)
	if code != exitFailure || !strings.HasPrefix(stderr.String(), "hodei: stdin:1: command: must not be empty") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestSubmitFileUsage(t *testing.T) {
	h := newHarness(t)
	path := writeFile(t, "jobs.jsonl", jobLines(1))
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--file", path, "--", "true"}, "give either --file or a command, not both"},
		{[]string{"--file", path, "--array", "0-3"}, "--array cannot be combined with --file"},
		{[]string{"--file", path, "--tenant", "a"}, "--tenant cannot be combined with --file"},
	} {
		r := h.run(t, append([]string{"submit"}, tt.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("submit %v: exit %d, stderr %q; want usage error %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
	r := h.run(t, "submit", "--file", filepath.Join(t.TempDir(), "missing.jsonl"))
	if r.code != exitFailure || !strings.Contains(r.stderr, "missing.jsonl: no such file or directory") {
		t.Errorf("missing file: exit %d, stderr %q", r.code, r.stderr)
	}
	if got := h.jobs.batchSizes(); len(got) != 0 {
		t.Fatalf("batches %v sent, want none", got)
	}
}
