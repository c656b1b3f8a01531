package job

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// wantField fails t unless err is a *FieldError on field whose rule
// contains rule; field "" wants nil.
func wantField(t *testing.T, err error, field, rule string) {
	t.Helper()
	var fe *FieldError
	switch {
	case field == "" && err != nil:
		t.Fatalf("err = %v, want nil", err)
	case field == "":
	case !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) || fe.Field != field || !strings.Contains(fe.Rule, rule):
		t.Fatalf("err = %v, want %s: …%s…", err, field, rule)
	}
}

func TestValidateRefusesUnsafeText(t *testing.T) {
	ok := func() Spec { s := Spec{Command: []string{"true"}, Priority: DefaultPriority}; s.Normalize(); return s }
	const bad = "a\xffb" // not UTF-8
	tests := []struct {
		name   string
		change func(*Spec)
		field  string // "" means valid
		rule   string
	}{
		{"OK", func(s *Spec) { s.Command = []string{"echo", "héllo ✓"}; s.Env = map[string]string{"A": "ünïcode"} }, "", ""},
		{"CommandNUL", func(s *Spec) { s.Command = []string{"echo", "a", "b\x00c"} }, "command[2]", "contains a NUL byte"},
		{"CommandUTF8", func(s *Spec) { s.Command = []string{"echo", bad} }, "command[1]", "is not valid UTF-8"},
		{"ScriptNUL", func(s *Spec) { s.Command, s.Script = nil, "echo a\x00b" }, "script", "contains a NUL byte"},
		{"ScriptUTF8", func(s *Spec) { s.Command, s.Script = nil, bad }, "script", "is not valid UTF-8"},
		{"WorkdirNUL", func(s *Spec) { s.WorkDir = "/tmp\x00/x" }, "workdir", "contains a NUL byte"},
		{"WorkdirUTF8", func(s *Spec) { s.WorkDir = "/" + bad }, "workdir", "is not valid UTF-8"},
		{"EnvKeyNUL", func(s *Spec) { s.Env = map[string]string{"A\x00B": "v"} }, "env", `key "A\x00B" contains a NUL byte`},
		{"EnvValueNUL", func(s *Spec) { s.Env = map[string]string{"A": "v\x00"} }, "env", `value of "A" contains a NUL byte`},
		{"EnvKeyUTF8", func(s *Spec) { s.Env = map[string]string{bad: "v"} }, "env", "is not valid UTF-8"},
		{"EnvValueUTF8", func(s *Spec) { s.Env = map[string]string{"A": bad} }, "env", `value of "A" is not valid UTF-8`},
		{"SecretKeyNUL", func(s *Spec) { s.SecretEnv = map[string]string{"K\x00": "v"} }, "secret_env", "contains a NUL byte"},
		{"SecretValueNUL", func(s *Spec) { s.SecretEnv = map[string]string{"TOKEN": "hunter2\x00"} }, "secret_env", `value of "TOKEN" contains a NUL byte`},
		{"SecretValueUTF8", func(s *Spec) { s.SecretEnv = map[string]string{"TOKEN": "hunter2\xff"} }, "secret_env", `value of "TOKEN" is not valid UTF-8`},
		{"NameUTF8", func(s *Spec) { s.Name = bad }, "name", "is not valid UTF-8"},
		{"TenantUTF8", func(s *Spec) { s.Tenant = bad }, "tenant", "is not valid UTF-8"},
		{"LabelValueUTF8", func(s *Spec) { s.Labels = map[string]string{"k": bad} }, "labels", `value of "k" is not valid UTF-8`},
		{"SelectorKeyUTF8", func(s *Spec) { s.Selector = map[string]string{bad: "v"} }, "selector", "is not valid UTF-8"},
		{"AfterUTF8", func(s *Spec) { s.DependsOn = []string{bad} }, "after[0]", "is not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok()
			tt.change(&s)
			err := s.Validate()
			wantField(t, err, tt.field, tt.rule)
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("err = %v: it shows a secret value", err)
			}
		})
	}
}

func TestValidateBoundsNumbers(t *testing.T) {
	ok := func() Spec { s := Spec{Command: []string{"true"}, Priority: DefaultPriority}; s.Normalize(); return s }
	tests := []struct {
		name   string
		change func(*Spec)
		field  string
		rule   string
	}{
		{"OK", func(s *Spec) { s.Resources = Resources{MaxCPUMillis, MaxMemoryMiB, MaxSlots} }, "", ""},
		{"TimeoutSaturated", func(s *Spec) { s.Timeout = math.MaxInt64 }, "timeout", "more than the maximum of 720h0m0s"},
		{"BackoffSaturated", func(s *Spec) { s.Backoff = math.MaxInt64 }, "backoff", "between 0 and 5m0s"},
		{"BackoffNegative", func(s *Spec) { s.Backoff = math.MinInt64 }, "backoff", "between 0 and 5m0s"},
		{"CPUAboveMax", func(s *Spec) { s.Resources.CPUMillis = MaxCPUMillis + 1 }, "resources.cpu_millis", "between 0 and 4096000 (4096 cores)"},
		{"CPUNegative", func(s *Spec) { s.Resources.CPUMillis = -1 }, "resources.cpu_millis", "between 0 and"},
		{"MemoryAboveMax", func(s *Spec) { s.Resources.MemoryMiB = math.MaxInt64 }, "resources.memory_mib", "between 0 and 67108864 (64 TiB)"},
		{"SlotsAboveMax", func(s *Spec) { s.Resources.Slots = MaxSlots + 1 }, "resources.slots", "between 1 and 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok()
			tt.change(&s)
			wantField(t, s.Validate(), tt.field, tt.rule)
		})
	}
}

func TestCheckDeadline(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		deadline time.Time
		rule     string // "" means valid
	}{
		{"None", time.Time{}, ""},
		{"OK", now.Add(time.Hour), ""},
		{"AtTheMax", now.Add(MaxDeadlineAhead), ""},
		{"Past", now.Add(-time.Second), "not in the future"},
		{"Now", now, "not in the future"},
		{"TooFar", now.Add(MaxDeadlineAhead + time.Second), "too far ahead: at most 365 days"},
		{"FarestNanos", time.Unix(0, math.MaxInt64), "too far ahead: at most 365 days"},
		{"BeforeEpoch", time.Unix(0, math.MinInt64), "not in the future"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			field := ""
			if tt.rule != "" {
				field = "deadline"
			}
			wantField(t, CheckDeadline("deadline", tt.deadline, now), field, tt.rule)
		})
	}
}

// allToAll is a pipeline of n steps where step i needs every step before
// it: n(n-1)/2 links without a matrix.
func allToAll(n int) PipelineSpec {
	p := PipelineSpec{Name: "dag"}
	for i := range n {
		st := step(fmt.Sprintf("s%d", i))
		for k := range i {
			st.Needs = append(st.Needs, fmt.Sprintf("s%d", k))
		}
		p.Steps = append(p.Steps, st)
	}
	return p
}

func matrixStep(name string, n int, needs ...string) Step {
	s := step(name, needs...)
	var vals []string
	for i := range n {
		vals = append(vals, fmt.Sprint(i))
	}
	s.Matrix = []MatrixAxis{{"i", vals}}
	return s
}

func TestPipelineLimits(t *testing.T) {
	tests := []struct {
		name  string
		p     PipelineSpec
		lim   PipelineLimits
		field string // "" when valid
		rule  string
	}{
		{"AllToAll", allToAll(1000), PipelineLimits{}, "steps",
			"the pipeline has 499,500 dependency links; at most 100,000 are allowed (--max-pipeline-links)"},
		{"MatricesMultiply", PipelineSpec{Steps: []Step{matrixStep("a", 100), matrixStep("b", 100, "a")}},
			PipelineLimits{MaxLinks: 9_999}, "steps", "has 10,000 dependency links; at most 9,999"},
		{"AtTheLimit", PipelineSpec{Steps: []Step{matrixStep("a", 100), matrixStep("b", 100, "a")}},
			PipelineLimits{MaxLinks: 10_000}, "", ""},
		{"NeedsAdd", PipelineSpec{Steps: []Step{matrixStep("a", 3), matrixStep("b", 4), matrixStep("c", 5, "a", "b")}},
			PipelineLimits{MaxLinks: 34}, "steps", "has 35 dependency links"},
		{"AtLeastBeforeLookingUp", PipelineSpec{Steps: []Step{matrixStep("a", 3), matrixStep("b", 4), matrixStep("c", 5, "a", "b")}},
			PipelineLimits{MaxLinks: 9}, "steps", "has at least 10 dependency links; at most 9"},
		{"MaxMatrix", PipelineSpec{Steps: []Step{matrixStep("a", 11)}}, PipelineLimits{MaxMatrix: 10}, "steps.a.matrix", "more than 10 jobs"},
		{"StepTimeoutSaturated", PipelineSpec{Steps: []Step{func() Step {
			s := step("a")
			s.Spec.Timeout = math.MaxInt64
			return s
		}()}}, PipelineLimits{}, "steps.a.timeout", "more than the maximum of 720h0m0s"},
		{"StepTimeoutNegativeIsUnset", PipelineSpec{Steps: []Step{func() Step {
			s := step("a")
			s.Spec.Timeout = math.MinInt64
			return s
		}()}}, PipelineLimits{}, "", ""},
		{"DefaultsBackoffSaturated", PipelineSpec{Defaults: Spec{Priority: -1, Backoff: math.MaxInt64}, Steps: []Step{step("a")}},
			PipelineLimits{}, "defaults.backoff", "between 0 and 5m0s"},
		{"StepMemoryAboveMax", PipelineSpec{Steps: []Step{func() Step {
			s := step("a")
			s.Spec.Resources.MemoryMiB = MaxMemoryMiB + 1
			return s
		}()}}, PipelineLimits{}, "steps.a.resources.memory_mib", "64 TiB"},
		{"NameUTF8", PipelineSpec{Name: "p\xff", Steps: []Step{step("a")}}, PipelineLimits{}, "name", "is not valid UTF-8"},
		{"TenantUTF8", PipelineSpec{Tenant: "t\xff", Steps: []Step{step("a")}}, PipelineLimits{}, "tenant", "is not valid UTF-8"},
		{"StepNameUTF8", PipelineSpec{Steps: []Step{step("a"), step("b\xff")}}, PipelineLimits{}, "steps[1].name", "is not valid UTF-8"},
		{"NeedsUTF8", PipelineSpec{Steps: []Step{step("a"), step("b", "a", "\xff")}}, PipelineLimits{}, "steps.b.needs[1]", "is not valid UTF-8"},
		{"MatrixKeyUTF8", PipelineSpec{Steps: []Step{func() Step {
			s := step("m")
			s.Matrix = []MatrixAxis{{"o\xff", []string{"x"}}}
			return s
		}()}}, PipelineLimits{}, "steps.m.matrix", "is not valid UTF-8"},
		{"MatrixValueUTF8", PipelineSpec{Steps: []Step{func() Step {
			s := step("m")
			s.Matrix = []MatrixAxis{{"os", []string{"linux", "\xff"}}}
			return s
		}()}}, PipelineLimits{}, "steps.m.matrix.os[1]", "is not valid UTF-8"},
		{"MatrixValueNUL", PipelineSpec{Steps: []Step{func() Step {
			s := step("m")
			s.Matrix = []MatrixAxis{{"os", []string{"lin\x00ux"}}}
			return s
		}()}}, PipelineLimits{}, "steps.m.matrix.os[0]", "contains a NUL byte"},
		{"StepCommandNUL", PipelineSpec{Steps: []Step{func() Step {
			s := step("a")
			s.Spec.Command = []string{"echo", "\x00"}
			return s
		}()}}, PipelineLimits{}, "steps.a.command[1]", "contains a NUL byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantField(t, tt.p.Validate(tt.lim), tt.field, tt.rule)
		})
	}
}

// TestAllToAllIsRefusedBeforeExpanding checks that the 1,000-step
// all-to-all DAG costs what its request costs, not what its expansion
// would: BenchmarkAllToAllRefusal measures it (about a millisecond); the
// bound here only catches a return to quadratic work.
func TestAllToAllIsRefusedBeforeExpanding(t *testing.T) {
	p := allToAll(1000)
	start := time.Now()
	err := p.Validate(PipelineLimits{})
	if took := time.Since(start); took > time.Second {
		t.Errorf("refusal took %s, want milliseconds", took)
	}
	wantField(t, err, "steps", "499,500 dependency links")
}

func BenchmarkAllToAllRefusal(b *testing.B) {
	p := allToAll(1000)
	if err := p.Validate(PipelineLimits{}); err == nil {
		b.Fatal("accepted")
	}
	for b.Loop() {
		_ = p.Validate(PipelineLimits{})
	}
}

func TestAdmitRefusesJobsAboveTheRunningLimit(t *testing.T) {
	limited := &Tenant{Name: "ml", MaxRunning: Resources{CPUMillis: 8000, MemoryMiB: 4096, Slots: 4}}
	bursty := &Tenant{Name: "burst", MaxRunning: Resources{MemoryMiB: 4096}, Burst: 2, BurstFor: time.Hour, Cooldown: time.Hour}
	free := &Tenant{Name: "free"}
	lookup := func(name string) (*Tenant, int, error) {
		for _, t := range []*Tenant{limited, bursty, free} {
			if t.Name == name {
				return t, 0, nil
			}
		}
		return nil, 0, nil
	}
	tests := []struct {
		name  string
		spec  Spec
		field string
		rule  string
	}{
		{"Fits", Spec{Tenant: "ml", Resources: Resources{8000, 4096, 4}}, "", ""},
		{"Memory", Spec{Tenant: "ml", Resources: Resources{0, 4097, 1}}, "resources.memory_mib", `4097 is more than the running limit of tenant "ml", 4096 MiB`},
		{"CPU", Spec{Tenant: "ml", Resources: Resources{8001, 0, 1}}, "resources.cpu_millis", "8000 millicores"},
		{"Slots", Spec{Tenant: "ml", Resources: Resources{0, 0, 5}}, "resources.slots", "4 slots"},
		{"PipelineStep", Spec{Tenant: "ml", Step: "train", Resources: Resources{0, 8192, 1}}, "steps.train.resources.memory_mib", "could never start"},
		{"WithinBurst", Spec{Tenant: "burst", Resources: Resources{0, 8192, 1}}, "", ""},
		{"AboveBurst", Spec{Tenant: "burst", Resources: Resources{0, 8193, 1}}, "resources.memory_mib", "8192 MiB"},
		{"Unlimited", Spec{Tenant: "free", Resources: Resources{MaxCPUMillis, MaxMemoryMiB, MaxSlots}}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Admit([]*Job{{Spec: tt.spec}}, lookup)
			wantField(t, err, tt.field, tt.rule)
		})
	}
}
