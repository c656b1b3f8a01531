package job

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// step is a step that sets nothing the defaults could give.
func step(name string, needs ...string) Step {
	unset := Spec{Command: []string{"true"}, Priority: -1, Timeout: -1, Retries: -1, Backoff: -1,
		Resources: Resources{CPUMillis: -1, MemoryMiB: -1, Slots: -1}}
	return Step{Name: name, Spec: unset, Needs: needs}
}

func TestPipelineValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		p     PipelineSpec
		field string // "" when valid
		rule  string // part of the message
	}{
		{"OK", PipelineSpec{Steps: []Step{step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")}}, "", ""},
		{"Empty", PipelineSpec{Name: "nothing"}, "steps", "at least one step"},
		{"BadTenant", PipelineSpec{Tenant: "Team A", Steps: []Step{step("a")}}, "tenant", "lowercase"},
		{"BadStepName", PipelineSpec{Steps: []Step{step("a b")}}, "steps[0].name", `"a b"`},
		{"DuplicateStep", PipelineSpec{Steps: []Step{step("a"), step("a")}}, "steps.a.name", "duplicate step name"},
		{"UnknownNeed", PipelineSpec{Steps: []Step{step("a"), step("b", "c")}}, "steps.b.needs", `"c" is not a step`},
		{"SelfDependency", PipelineSpec{Steps: []Step{step("a", "a")}}, "steps.a.needs", "cannot need itself"},
		{"Cycle", PipelineSpec{Steps: []Step{step("build", "test"), step("test", "build")}}, "steps", "cycle: build → test → build"},
		{"LongCycle", PipelineSpec{Steps: []Step{step("a"), step("b", "a", "d"), step("c", "b"), step("d", "c")}}, "steps", "cycle: b → c → d → b"},
		{"MatrixTooBig", PipelineSpec{Steps: []Step{func() Step {
			s := step("wide")
			var vals []string
			for i := range 20 {
				vals = append(vals, fmt.Sprint(i))
			}
			s.Matrix = []MatrixAxis{{"x", vals}, {"y", vals}}
			return s
		}()}}, "steps.wide.matrix", "more than 256 jobs"},
		{"MatrixEmptyAxis", PipelineSpec{Steps: []Step{func() Step {
			s := step("m")
			s.Matrix = []MatrixAxis{{"os", nil}}
			return s
		}()}}, "steps.m.matrix.os", "at least one value"},
		{"MatrixBadKey", PipelineSpec{Steps: []Step{func() Step {
			s := step("m")
			s.Matrix = []MatrixAxis{{"go-version", []string{"1"}}}
			return s
		}()}}, "steps.m.matrix", `key "go-version"`},
		{"JobSpecRule", PipelineSpec{Steps: []Step{step("a"), func() Step {
			s := step("b", "a")
			s.Spec.Retries = MaxRetries + 1
			return s
		}()}}, "steps.b.retries", "between 0 and 100"},
		{"StepSecretShort", PipelineSpec{Steps: []Step{step("a"), func() Step {
			s := step("b", "a")
			s.Spec.SecretEnv = map[string]string{"TOKEN": "abc"}
			return s
		}()}}, "steps.b.secret_env.TOKEN", "too short (3 of at least 6 bytes)"},
		{"MatrixStepSecretShort", PipelineSpec{Steps: []Step{func() Step {
			s := step("m")
			s.Matrix = []MatrixAxis{{"os", []string{"linux", "darwin"}}}
			s.Spec.SecretEnv = map[string]string{"TOKEN": "abc"}
			return s
		}()}}, "steps.m.secret_env.TOKEN", "too short"},
		{"DefaultsSecret", PipelineSpec{Defaults: Spec{SecretEnv: map[string]string{"TOKEN": "abc"}, Priority: -1}, Steps: []Step{step("a")}}, "defaults.secret_env", "cannot have a default"},
		{"EmptyCommand", PipelineSpec{Steps: []Step{{Name: "a", Spec: Spec{Priority: -1}}}}, "steps.a.command", "must not be empty"},
		{"DefaultsCommand", PipelineSpec{Defaults: Spec{Script: "make", Priority: -1}, Steps: []Step{step("a")}}, "defaults.script", "cannot have a default"},
		{"DefaultsValue", PipelineSpec{Defaults: Spec{Retries: MaxRetries + 1}, Steps: []Step{step("a")}}, "defaults.retries", "between 0 and 100"},
		{"DuplicateNeed", PipelineSpec{Steps: []Step{step("a"), step("b", "a", "a")}}, "steps.b.needs", `"a" is listed twice`},
		{"MatrixDuplicateValue", PipelineSpec{Steps: []Step{func() Step {
			s := step("m")
			s.Matrix = []MatrixAxis{{"os", []string{"linux", "linux"}}}
			return s
		}()}}, "steps.m.matrix.os", `"linux" is listed twice`},
		{"ExpandedNameTooLong", PipelineSpec{Name: strings.Repeat("p", 200), Steps: []Step{func() Step {
			s := step("m")
			s.Matrix = []MatrixAxis{{"os", []string{strings.Repeat("x", 60)}}}
			return s
		}()}}, "steps.m.name", "at most 256 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate(PipelineLimits{})
			var fe *FieldError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tc.field == "":
			case !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Rule, tc.rule):
				t.Fatalf("Validate = %v, want %s: …%s…", err, tc.field, tc.rule)
			}
		})
	}
}

func TestPipelineExpand(t *testing.T) {
	test := step("test", "build")
	test.Matrix = []MatrixAxis{{"os", []string{"linux", "mac", "bsd"}}, {"arch", []string{"amd64", "arm64"}}}
	test.Spec.Env = map[string]string{"A": "step"}
	p := PipelineSpec{
		Name:     "rel",
		Defaults: Spec{Env: map[string]string{"A": "default", "B": "default"}, Timeout: time.Minute, Priority: 700},
		Steps:    []Step{step("build"), test},
	}
	if err := p.Validate(PipelineLimits{}); err != nil {
		t.Fatal(err)
	}
	jobs := p.Expand()
	if len(jobs) != 2 || len(jobs[0]) != 1 || len(jobs[1]) != 6 {
		t.Fatalf("expanded to %d steps of %d and %d jobs, want 1 and 6", len(jobs), len(jobs[0]), len(jobs[1]))
	}
	first := jobs[1][0].Spec
	if first.Name != "rel/test[os=linux,arch=amd64]" || first.Env["MATRIX_OS"] != "linux" || first.Env["MATRIX_ARCH"] != "amd64" {
		t.Fatalf("first matrix job: name %q env %v", first.Name, first.Env)
	}
	if first.Env["A"] != "step" || first.Env["B"] != "default" || first.Timeout != time.Minute || first.Priority != 700 {
		t.Fatalf("defaults not merged under the step: env %v timeout %s priority %d", first.Env, first.Timeout, first.Priority)
	}
	if first.Step != "test" || jobs[0][0].Spec.Priority != 700 {
		t.Fatalf("step %q, build priority %d", first.Step, jobs[0][0].Spec.Priority)
	}
	if last := jobs[1][5].Spec; last.Env["MATRIX_OS"] != "bsd" || last.Env["MATRIX_ARCH"] != "arm64" {
		t.Fatalf("last matrix job env %v", last.Env)
	}
	zero := PipelineSpec{Defaults: Spec{Retries: 2, Timeout: time.Hour, Priority: -1}, Steps: []Step{step("unset"), step("zero")}}
	zero.Steps[1].Spec.Retries, zero.Steps[1].Spec.Timeout = 0, 0
	if z := zero.Expand(); z[0][0].Spec.Retries != 2 || z[0][0].Spec.Timeout != time.Hour || z[1][0].Spec.Retries != 0 || z[1][0].Spec.Timeout != 0 {
		t.Fatalf("unset step: retries %d timeout %s; zero step: retries %d timeout %s; want the defaults', then zeros",
			z[0][0].Spec.Retries, z[0][0].Spec.Timeout, z[1][0].Spec.Retries, z[1][0].Spec.Timeout)
	}
	plain := PipelineSpec{Defaults: Spec{Priority: -1}, Steps: []Step{step("x")}}
	if plain.Expand()[0][0].Spec.Priority != DefaultPriority {
		t.Fatal("a step without a priority anywhere did not get the default")
	}
}

func TestPipelineStateOf(t *testing.T) {
	p := &Pipeline{Steps: []PipelineStep{{Name: "a", Jobs: []string{"1"}}, {Name: "b", Jobs: []string{"2"}, ContinueOnFailure: true}}}
	for _, tc := range []struct {
		name      string
		a, b      State
		cancelled bool
		want      PipelineState
	}{
		{"Pending", Pending, Pending, false, PipelinePending},
		{"Running", Completed, Pending, false, PipelineRunning},
		{"Completed", Completed, Completed, false, PipelineCompleted},
		{"FailedAllowed", Completed, Failed, false, PipelineCompleted},
		{"Failed", Failed, Cancelled, false, PipelineFailed},
		{"Cancelled", Cancelled, Cancelled, true, PipelineCancelled},
		{"CancelTooLate", Completed, Completed, true, PipelineCompleted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.Cancelled = tc.cancelled
			jobs := map[string]*Job{"1": {State: tc.a, Attempt: 1}, "2": {State: tc.b, Attempt: 1}}
			if got := p.StateOf(func(id string) *Job { return jobs[id] }); got != tc.want {
				t.Fatalf("StateOf = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseArray(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ArraySpec
		err  string
	}{
		{"0-99", ArraySpec{0, 99, 0}, ""},
		{"0-99%10", ArraySpec{0, 99, 10}, ""},
		{"7", ArraySpec{7, 7, 0}, ""},
		{"9-1", ArraySpec{}, "ends before it starts"},
		{"0-99%0", ArraySpec{}, "at least 1"},
		{"a-b", ArraySpec{}, "want FIRST-LAST"},
		{"0-1000001", ArraySpec{}, "indices must be between 0 and 1000000"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseArray(tc.in)
			switch {
			case tc.err == "" && (err != nil || got != tc.want):
				t.Fatalf("ParseArray = %+v, %v; want %+v", got, err, tc.want)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("ParseArray = %v, want an error with %q", err, tc.err)
			}
		})
	}
}
