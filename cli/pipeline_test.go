package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// examples is where the example pipeline files are.
var examples = filepath.Join("..", "testdata", "pipelines")

func example(name string) string { return filepath.Join(examples, name) }

func TestPipelineExamplesParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(examples, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	// Every example that breaks no rule of the file format parses; the
	// invalid-* ones that break a rule of the server's too.
	fileErrors := []string{"invalid-unknown-field.yaml", "invalid-duration.yaml", "invalid-matrix-shape.yaml"}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, _, err := readPipelineFile(f)
			if want := slices.Contains(fileErrors, filepath.Base(f)); (err != nil) != want {
				t.Errorf("readPipelineFile = %v, want an error: %v", err, want)
			}
		})
	}
}

var unsetResources = &hodeipb.Resources{CpuMillis: -1, MemoryMib: -1, Slots: -1}

func TestPipelineFileDefaults(t *testing.T) {
	spec, _, err := readPipelineFile(example("defaults.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := &hodeipb.PipelineSpec{
		Name: "release", Tenant: "default",
		Defaults: &hodeipb.JobSpec{
			Env: map[string]string{"GOFLAGS": "-mod=mod"}, Labels: map[string]string{"team": "infra"},
			Selector: map[string]string{"os": "linux"}, TimeoutMs: 600_000, Retries: 1, BackoffMs: 5000,
			Priority: proto.Int32(600), Resources: &hodeipb.Resources{CpuMillis: 500, MemoryMib: 256, Slots: 1},
		},
		Steps: []*hodeipb.PipelineStepSpec{
			// Fields a step leaves out are -1, unset: the defaults' apply.
			{Name: "build", Spec: &hodeipb.JobSpec{Script: `echo "building with GOFLAGS=$GOFLAGS"`, TimeoutMs: -1, Retries: -1, BackoffMs: -1, Resources: unsetResources}},
			{
				Name: "test", Needs: []string{"build"},
				Spec: &hodeipb.JobSpec{Command: []string{"sh", "-c", `echo "testing for $MATRIX_OS with go $MATRIX_GO"`}, TimeoutMs: 1_800_000, Retries: 0, BackoffMs: -1,
					Priority: proto.Int32(0), Resources: unsetResources},
				Matrix: []*hodeipb.MatrixAxis{
					{Key: "os", Values: []string{"linux", "mac", "bsd"}},
					{Key: "go", Values: []string{"1.25", "1.26"}},
				},
			},
			{
				Name: "publish", Needs: []string{"test"},
				Spec: &hodeipb.JobSpec{
					Command: []string{"sh", "-c", `test -n "$TOKEN" && echo "publishing $CHANNEL from $(pwd) with token $TOKEN"`},
					Env:     map[string]string{"CHANNEL": "stable"}, SecretEnv: map[string]string{"TOKEN": "s3cret"},
					Workdir: "/tmp", NoPty: true, Resources: &hodeipb.Resources{CpuMillis: 1000, MemoryMib: 512, Slots: 1},
					TimeoutMs: -1, Retries: -1, BackoffMs: -1,
				},
			},
		},
	}
	if !proto.Equal(spec, want) {
		t.Errorf("spec:\n got: %s\nwant: %s", prototext.Format(spec), prototext.Format(want))
	}
}

func TestPipelineFileShapes(t *testing.T) {
	t.Run("Diamond", func(t *testing.T) {
		spec, _, err := readPipelineFile(example("diamond.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var needs []string
		for _, s := range spec.GetSteps() {
			needs = append(needs, s.GetName()+"<"+strings.Join(s.GetNeeds(), ","))
			if s.GetSpec().Priority != nil {
				t.Errorf("step %s has a priority; an absent one must stay unset", s.GetName())
			}
		}
		if want := []string{"build<", "lint<build", "test<build", "publish<lint,test"}; !slices.Equal(needs, want) {
			t.Errorf("needs = %q, want %q", needs, want)
		}
		if spec.GetDefaults() != nil {
			t.Errorf("defaults = %v, want none", spec.GetDefaults())
		}
	})
	t.Run("MatrixKeepsFileOrder", func(t *testing.T) {
		spec, _, err := readPipelineFile(example("matrix.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		m := spec.GetSteps()[0].GetMatrix()
		if len(m) != 2 || m[0].GetKey() != "os" || m[1].GetKey() != "go" || !slices.Equal(m[1].GetValues(), []string{"1.25", "1.26"}) {
			t.Errorf("matrix = %v, want os then go, values as written", m)
		}
	})
	t.Run("ContinueOnFailure", func(t *testing.T) {
		spec, _, err := readPipelineFile(example("continue-on-failure.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		flaky := spec.GetSteps()[1]
		if !flaky.GetContinueOnFailure() || flaky.GetSpec().GetRetries() != 1 || flaky.GetSpec().GetBackoffMs() != 1000 {
			t.Errorf("flaky = %v", flaky)
		}
	})
}

func TestPipelineFileDeadline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte("steps:\n  - name: a\n    script: x\n    deadline: 30m\n  - name: b\n    script: x\n    deadline: 2200-01-01T00:00:00Z\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	spec, _, err := readPipelineFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, b := time.Unix(0, spec.GetSteps()[0].GetSpec().GetDeadlineUnixNano()), time.Unix(0, spec.GetSteps()[1].GetSpec().GetDeadlineUnixNano())
	if a.Before(before.Add(30*time.Minute)) || a.After(time.Now().Add(30*time.Minute)) || b.Year() != 2200 {
		t.Fatalf("deadlines %s and %s, want 30m from the run and 2200", a, b)
	}
}

func TestPipelineFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, text string // text: written to a temp file when file is ""
		want             string
	}{
		{name: "UnknownField", file: "invalid-unknown-field.yaml",
			want: "invalid-unknown-field.yaml:7: field comand not found in a step; it has backoff, command, continue_on_failure, deadline, env"},
		{name: "Duration", file: "invalid-duration.yaml",
			want: `invalid-duration.yaml:4: steps.build.timeout: "10 minutes" is not a duration`},
		{name: "MatrixShape", file: "invalid-matrix-shape.yaml",
			want: "invalid-matrix-shape.yaml:5: steps.test.matrix.os: must be a list of values"},
		{name: "UnknownTopLevel", text: "name: x\nstep: []\n", want: "p.yaml:2: field step not found in the pipeline; it has defaults, name, steps, tenant"},
		{name: "UnknownInDefaults", text: "defaults:\n  command: [x]\nsteps: []\n", want: "p.yaml:2: field command not found in the defaults"},
		{name: "UnknownInResources", text: "steps:\n  - name: a\n    resources: {gpu: 1}\n", want: "p.yaml:3: field gpu not found in resources; it has cpu, memory, slots"},
		{name: "DefaultsDuration", text: "defaults:\n  backoff: -1s\nsteps: []\n", want: "p.yaml:2: defaults.backoff: -1s must not be negative"},
		{name: "UnnamedStepDuration", text: "steps:\n  - timeout: 1us\n", want: "p.yaml:2: steps[0].timeout: 1us is shorter than the resolution of 1ms"},
		{name: "MatrixNotAMapping", text: "steps:\n  - name: a\n    matrix: [1, 2]\n", want: "p.yaml:3: steps.a.matrix: must be a mapping"},
		{name: "MatrixNestedValue", text: "steps:\n  - name: a\n    matrix:\n      os:\n        - [linux]\n", want: "p.yaml:5: steps.a.matrix.os: must be a list"},
		{name: "WrongType", text: "steps:\n  - name: a\n    priority: high\n", want: "p.yaml:3: cannot unmarshal !!str `high` into int32"},
		{name: "StepNotAMapping", text: "steps: [build]\n", want: "p.yaml:1: cannot unmarshal !!str `build` into a step"},
		{name: "Syntax", text: "steps:\n  - name: a\n   command: [x\n", want: "p.yaml:1: did not find expected"},
		{name: "DuplicateKey", text: "name: a\nname: b\nsteps: []\n", want: `p.yaml:2: mapping key "name" already defined at line 1`},
		{name: "Empty", text: "", want: "p.yaml: the file is empty"},
		{name: "TwoDocuments", text: "steps: []\n---\nsteps: []\n", want: "p.yaml:2: a second YAML document"},
		{name: "Missing", file: "no-such.yaml", want: "no-such.yaml: no such file or directory"},
		{name: "DeadlinePast", text: "steps:\n  - name: a\n    script: x\n    deadline: 2001-01-01T00:00:00Z\n", want: "p.yaml:4: steps.a.deadline: 2001-01-01T00:00:00Z is in the past"},
		{name: "NegativeRetries", text: "steps:\n  - name: a\n    script: x\n    retries: -1\n", want: "p.yaml:4: steps.a.retries: -1 must not be negative"},
		{name: "NegativeSlots", text: "defaults:\n  resources:\n    slots: -2\nsteps:\n  - name: a\n    script: x\n", want: "p.yaml:1: defaults.resources.slots: -2 must not be negative"},
		{name: "DeadlineBad", text: "steps:\n  - name: a\n    script: x\n    deadline: soon\n", want: `p.yaml:4: steps.a.deadline: "soon" is neither a duration`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := example(tc.file)
			if tc.file == "" {
				path = filepath.Join(t.TempDir(), "p.yaml")
				if err := os.WriteFile(path, []byte(tc.text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			h := newHarness(t)
			r := h.run(t, "pipeline", "run", path)
			if r.code != 1 || !strings.HasPrefix(r.stderr, "hodei: "+filepath.Dir(path)) || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 1 and hodei: %s/…%s…", r.code, r.stderr, filepath.Dir(path), tc.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			if n := len(h.jobs.pipelineRuns()); n != 0 {
				t.Errorf("server got %d pipelines, want none", n)
			}
		})
	}
}

// invalidExamples are the examples that break a rule the server checks,
// with the message it must give, pointed at the line of the field.
var invalidExamples = []struct{ file, want string }{
	{"invalid-unknown-need.yaml", `invalid-unknown-need.yaml:6: steps.test.needs: "biuld" is not a step of this pipeline`},
	{"invalid-self.yaml", "invalid-self.yaml:6: steps.test.needs: a step cannot need itself"},
	{"invalid-cycle.yaml", "invalid-cycle.yaml:2: steps: cycle: "},
	{"invalid-duplicate.yaml", `invalid-duplicate.yaml:8: steps.test.name: duplicate step name "test"`},
	{"invalid-empty.yaml", "invalid-empty.yaml:2: steps: a pipeline needs at least one step"},
	{"invalid-matrix-too-big.yaml", "invalid-matrix-too-big.yaml:5: steps.sweep.matrix: expands to more than 256 jobs"},
	{"invalid-job-spec.yaml", "invalid-job-spec.yaml:7: steps.deploy.priority: "},
}

func TestPipelineInvalidExamples(t *testing.T) {
	for _, tc := range invalidExamples {
		t.Run(tc.file, func(t *testing.T) {
			h := newHarness(t)
			r := h.run(t, "pipeline", "run", example(tc.file), "--wait")
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", r.code, r.stderr, tc.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			if n := len(h.jobs.pipelineRuns()); n != 0 {
				t.Errorf("server stored %d pipelines, want none", n)
			}
		})
	}
	t.Run("CycleNamesTheSteps", func(t *testing.T) {
		h := newHarness(t)
		r := h.run(t, "pipeline", "run", example("invalid-cycle.yaml"))
		if !strings.Contains(r.stderr, "publish → build → test → publish") && !strings.Contains(r.stderr, "build → test → publish → build") {
			t.Errorf("stderr %q does not name the steps of the cycle", r.stderr)
		}
	})
}

func TestPipelineRun(t *testing.T) {
	h := newHarness(t)
	r := h.run(t, "pipeline", "run", example("diamond.yaml"))
	r.wantOK(t)
	if r.stdout != testPipelineID+"\n" {
		t.Errorf("stdout = %q, want the pipeline id", r.stdout)
	}
	runs := h.jobs.pipelineRuns()
	if len(runs) != 1 || len(runs[0].GetSteps()) != 4 || runs[0].GetName() != "diamond" {
		t.Fatalf("server got %v", runs)
	}

	r = h.run(t, "pipeline", "run", "-o", "json", example("diamond.yaml"))
	r.wantOK(t)
	var v pipelineView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if v.ID != testPipelineID || v.State != "PENDING" || len(v.Steps) != 4 || v.Steps[3].State != "PENDING" || len(v.Steps[3].Jobs) != 1 {
		t.Errorf("JSON = %+v", v)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"NoFile", nil, "missing FILE"},
		{"TwoFiles", []string{"a.yaml", "b.yaml"}, `unexpected argument "b.yaml"`},
		{"BadOutput", []string{"-o", "yaml", "a.yaml"}, `--output: "yaml" is not a format`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.run(t, append([]string{"pipeline", "run"}, tc.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", r.code, r.stderr, tc.want)
			}
		})
	}
}
