package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

func TestSubmit(t *testing.T) {
	const after1, after2, after3 = "01J00000000000000000000AAA", "01J00000000000000000000BBB", "01J00000000000000000000CCC"
	for _, tc := range []struct {
		name string
		args []string
		want *hodeipb.JobSpec
	}{
		{
			name: "AllFlags",
			args: []string{"submit",
				"--name", "build", "--tenant", "team-a", "--priority", "900",
				"--timeout", "1h30m", "--retries", "3", "--backoff", "2s",
				"--label", "app=web", "--label", "tier=a,team=x", "--env", "A=1,2", "--env", "B= spaced =x",
				"--secret-env", "TOKEN=s3cret", "--selector", "gpu=true,os=linux", "--selector", "zone=eu",
				"--cpu", "1500", "--memory", "2048", "--slots", "2",
				"--after", after1, "--after", after2 + "," + after3,
				"--workdir", "/srv", "--no-pty",
				"--", "make", "-j8", "--keep-going", "all"},
			want: &hodeipb.JobSpec{
				Name: "build", Tenant: "team-a", Priority: proto.Int32(900),
				TimeoutMs: 5_400_000, Retries: 3, BackoffMs: 2000,
				Labels:    map[string]string{"app": "web", "tier": "a", "team": "x"},
				Env:       map[string]string{"A": "1,2", "B": " spaced =x"},
				SecretEnv: map[string]string{"TOKEN": "s3cret"},
				Selector:  map[string]string{"gpu": "true", "os": "linux", "zone": "eu"},
				Resources: &hodeipb.Resources{CpuMillis: 1500, MemoryMib: 2048, Slots: 2},
				DependsOn: []string{after1, after2, after3},
				Workdir:   "/srv", NoPty: true,
				Command: []string{"make", "-j8", "--keep-going", "all"},
			},
		},
		{
			name: "PriorityAbsent",
			args: []string{"submit", "echo", "hi"},
			want: &hodeipb.JobSpec{Command: []string{"echo", "hi"}},
		},
		{
			name: "PriorityZeroIsGiven",
			args: []string{"submit", "--priority", "0", "--", "true"},
			want: &hodeipb.JobSpec{Priority: proto.Int32(0), Command: []string{"true"}},
		},
		{
			name: "Script",
			args: []string{"submit", "--script", "echo a | tr a b"},
			want: &hodeipb.JobSpec{Script: "echo a | tr a b"},
		},
		{
			name: "OnlySlots",
			args: []string{"submit", "--slots", "4", "--", "x"},
			want: &hodeipb.JobSpec{Resources: &hodeipb.Resources{Slots: 4}, Command: []string{"x"}},
		},
		{
			name: "LaterKeyWins",
			args: []string{"submit", "--label", "k=1", "--label", "k=2", "--label", "empty=", "--", "x"},
			want: &hodeipb.JobSpec{Labels: map[string]string{"k": "2", "empty": ""}, Command: []string{"x"}},
		},
		{
			name: "DeadlineFromNow",
			args: []string{"submit", "--deadline", "30m", "--preemptible", "--", "x"},
			want: &hodeipb.JobSpec{DeadlineUnixNano: testNow.Add(30 * time.Minute).UnixNano(), Preemptible: true, Command: []string{"x"}},
		},
		{
			name: "DeadlineRFC3339",
			args: []string{"submit", "--deadline", "2026-11-28T11:00:00+01:00", "--", "x"},
			want: &hodeipb.JobSpec{DeadlineUnixNano: time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC).UnixNano(), Command: []string{"x"}},
		},
		{
			name: "ZeroTimeout",
			args: []string{"submit", "--timeout", "0", "--", "x"},
			want: &hodeipb.JobSpec{Command: []string{"x"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			r := h.run(t, tc.args...)
			r.wantOK(t)
			if r.stdout != "01J00000000000000000000001\n" {
				t.Errorf("stdout = %q, want the id and a newline", r.stdout)
			}
			if got := h.jobs.lastSpec(t); !proto.Equal(got, tc.want) {
				t.Errorf("spec:\n got: %s\nwant: %s", prototext.Format(got), prototext.Format(tc.want))
			}
		})
	}
}

func TestSubmitJSON(t *testing.T) {
	h := newHarness(t)
	for _, args := range [][]string{
		{"submit", "-o", "json", "--", "true"},
		{"--output", "json", "submit", "true"},
	} {
		r := h.run(t, args...)
		r.wantOK(t)
		var got map[string]string
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, r.stdout)
		}
		if got["id"] != "01J00000000000000000000001" || len(got) != 1 {
			t.Errorf("%v: got %v, want {id: …}", args, got)
		}
	}
}

func TestSubmitUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"PriorityNotInt", []string{"--priority", "high", "--", "x"}, `--priority: invalid value "high"`},
		{"PriorityOverflow", []string{"--priority", "9999999999", "--", "x"}, "--priority: 9999999999 is out of range"},
		{"RetriesNotInt", []string{"--retries", "1.5", "--", "x"}, "--retries"},
		{"CPUNotInt", []string{"--cpu", "1c", "--", "x"}, "--cpu"},
		{"TimeoutNoUnit", []string{"--timeout", "30", "--", "x"}, `--timeout: "30" is not a duration`},
		{"TimeoutBad", []string{"--timeout", "5x", "--", "x"}, `--timeout: "5x" is not a duration`},
		{"TimeoutNegative", []string{"--timeout", "-1s", "--", "x"}, "--timeout: -1s must not be negative"},
		{"TimeoutTooFine", []string{"--timeout", "10us", "--", "x"}, "--timeout: 10us is shorter"},
		{"DeadlineBad", []string{"--deadline", "tomorrow", "--", "x"}, `--deadline: "tomorrow" is neither a duration from now (30m, 2h) nor an RFC 3339 time`},
		{"DeadlineNoZone", []string{"--deadline", "2026-11-28T10:00:00", "--", "x"}, `--deadline: "2026-11-28T10:00:00" is neither`},
		{"DeadlineNegative", []string{"--deadline", "-5m", "--", "x"}, "--deadline: -5m must be more than 0 from now"},
		{"DeadlinePast", []string{"--deadline", "2020-01-01T00:00:00Z", "--", "x"}, "--deadline: 2020-01-01T00:00:00Z is in the past"},
		{"BackoffBad", []string{"--backoff", "soon", "--", "x"}, `--backoff: "soon" is not a duration`},
		{"LabelNoEquals", []string{"--label", "app", "--", "x"}, `--label: "app" has no '='`},
		{"EnvEmptyKey", []string{"--env", "=v", "--", "x"}, `--env: "=v" has an empty key`},
		{"SecretEnvNoEquals", []string{"--secret-env", "K", "--", "x"}, "--secret-env:"},
		{"SelectorNoEquals", []string{"--selector", "gpu", "--", "x"}, "--selector:"},
		// --label and --selector take k=v,… as --labels does (trial 11 #3).
		{"SelectorCommaValue", []string{"--selector", "os=linux,gpu", "--", "x"}, `--selector: "gpu" has no '='`},
		{"SelectorEmptyItem", []string{"--selector", "a=1,,b=2", "--", "x"}, `--selector: "a=1,,b=2" has an empty item`},
		{"SelectorTrailingComma", []string{"--selector", "a=1,", "--", "x"}, `--selector: "a=1," has an empty item`},
		{"SelectorEmptyKey", []string{"--selector", "a=1,=2", "--", "x"}, `--selector: "=2" has an empty key`},
		{"SlotsZero", []string{"--slots", "0", "--", "x"}, "--slots: 0 must be between 1 and 4096"},
		{"SlotsNegative", []string{"--slots", "-2", "--", "x"}, "--slots: -2 must be between 1 and 4096"},
		{"LabelCommaValue", []string{"--label", "tier=a,b", "--", "x"}, `--label: "b" has no '='`},
		{"UnknownFlag", []string{"--nmae", "x", "--", "x"}, "unknown flag --nmae"},
		{"MissingValue", []string{"--name"}, "--name: needs a value"},
		{"NoCommand", []string{"--name", "x"}, "missing command"},
		{"CommandAndScript", []string{"--script", "true", "--", "x"}, "not both"},
		{"BadOutput", []string{"-o", "yaml", "--", "x"}, `--output: "yaml" is not a format`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			r := h.run(t, append([]string{"submit"}, tc.args...)...)
			if r.code != 2 {
				t.Errorf("exit code = %d, want 2", r.code)
			}
			if !strings.HasPrefix(r.stderr, "hodei: ") || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr = %q, want hodei: …%s…", r.stderr, tc.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			if n := h.jobs.submits(); n != 0 {
				t.Errorf("server got %d submits, want none", n)
			}
		})
	}
}

func TestSubmitUnknownTenant(t *testing.T) {
	h := newHarness(t)
	msg := `tenant "ghost" does not exist; create it with "hodei tenants set ghost" or run the server with --auto-tenants: not found`
	h.jobs.setErr(status.Error(codes.NotFound, msg))
	for _, cmd := range []string{"submit", "run"} {
		r := h.run(t, cmd, "--tenant", "ghost", "--", "true")
		if r.code != 1 || r.stderr != "hodei: "+msg+"\n" {
			t.Errorf("%s: exit %d, stderr %q; want 1 and the server's message", cmd, r.code, r.stderr)
		}
	}
}

func TestSubmitServerError(t *testing.T) {
	h := newHarness(t)
	h.jobs.setErr(status.Error(codes.InvalidArgument, "spec.workdir: \"tmp\" must be an absolute path"))
	r := h.run(t, "submit", "--workdir", "tmp", "--", "true")
	if r.code != 1 {
		t.Errorf("exit code = %d, want 1", r.code)
	}
	if want := "hodei: spec.workdir: \"tmp\" must be an absolute path\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
	if r.stdout != "" {
		t.Errorf("stdout = %q, want nothing", r.stdout)
	}
}
