package job

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTransitionTable(t *testing.T) {
	legal := map[[2]State]bool{
		{Pending, Scheduled}: true, {Pending, Cancelled}: true, {Pending, Failed}: true,
		{Scheduled, Running}: true, {Scheduled, Pending}: true, {Scheduled, Completed}: true,
		{Scheduled, Failed}: true, {Scheduled, Cancelled}: true,
		{Running, Running}: true, {Running, Pending}: true, {Running, Completed}: true,
		{Running, Failed}: true, {Running, Cancelled}: true,
	}
	for _, from := range States {
		for _, to := range States {
			if got := CanTransition(from, to); got != legal[[2]State{from, to}] {
				t.Errorf("CanTransition(%s, %s) = %v", from, to, got)
			}
		}
	}
	for _, s := range []State{Completed, Failed, Cancelled} {
		if !s.Terminal() {
			t.Errorf("%s is not terminal", s)
		}
	}
}

func TestUpdateCheck(t *testing.T) {
	next := func(s State, attempt int) *Job { return &Job{ID: "x", State: s, Attempt: attempt} }
	tests := []struct {
		name string
		u    Update
		ok   bool
	}{
		{"OK", Update{Expect{State: Pending, Attempt: 1}, next(Scheduled, 1), false, nil}, true},
		{"RetryBumpsAttempt", Update{Expect{State: Running, Attempt: 1}, next(Pending, 2), false, nil}, true},
		{"ErrConflictRetryWithoutBump", Update{Expect{State: Running, Attempt: 1}, next(Pending, 1), false, nil}, false},
		{"ErrConflictAttemptChanged", Update{Expect{State: Running, Attempt: 1}, next(Completed, 2), false, nil}, false},
		{"ErrConflictIllegal", Update{Expect{State: Completed, Attempt: 1}, next(Running, 1), false, nil}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.u.Check()
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrConflict)) {
				t.Fatalf("Check() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := func() Spec { s := Spec{Command: []string{"true"}, Priority: DefaultPriority}; s.Normalize(); return s }
	tests := []struct {
		name   string
		change func(*Spec)
		field  string // "" means valid
	}{
		{"OK", func(*Spec) {}, ""},
		{"Script", func(s *Spec) { s.Command, s.Script = nil, "echo hi" }, ""},
		{"EmptyCommand", func(s *Spec) { s.Command = nil }, "command"},
		{"NegativeTimeout", func(s *Spec) { s.Timeout = -time.Second }, "timeout"},
		{"AbsurdTimeout", func(s *Spec) { s.Timeout = MaxTimeout + 1 }, "timeout"},
		{"Retries", func(s *Spec) { s.Retries = MaxRetries + 1 }, "retries"},
		{"Priority", func(s *Spec) { s.Priority = -1 }, "priority"},
		{"LabelKey", func(s *Spec) { s.Labels = map[string]string{"a b": "c"} }, "labels"},
		{"EnvKey", func(s *Spec) { s.Env = map[string]string{"A=B": "c"} }, "env"},
		{"After", func(s *Spec) { s.DependsOn = []string{"x"} }, "after"},
		{"SecretShort", func(s *Spec) { s.SecretEnv = map[string]string{"TOKEN": "12345"} }, "secret_env.TOKEN"},
		{"SecretEmpty", func(s *Spec) { s.SecretEnv = map[string]string{"A": "s3cret", "B": ""} }, "secret_env.B"},
		{"SecretMinimum", func(s *Spec) { s.SecretEnv = map[string]string{"TOKEN": "123456"} }, ""},
		{"Oversized", func(s *Spec) { s.Script, s.Command = strings.Repeat("x", MaxSpecBytes+1), nil }, "spec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok()
			tt.change(&s)
			err := s.Validate()
			var fe *FieldError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field || !errors.Is(err, ErrInvalid)):
				t.Fatalf("Validate() = %v, want a FieldError on %q", err, tt.field)
			}
		})
	}
}

func TestRetryDelayDoublesUpToCap(t *testing.T) {
	j := &Job{Spec: Spec{Backoff: time.Second}}
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 20: MaxBackoff} {
		j.Attempt = attempt
		if got := j.RetryDelay(); got != want {
			t.Errorf("attempt %d: delay %s, want %s", attempt, got, want)
		}
	}
}
