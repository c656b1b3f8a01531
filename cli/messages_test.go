package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	ucli "github.com/urfave/cli/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestUnreachableServer: the message names the address dialled, whether
// it came from --addr, HODEI_ADDR or the default, and says how to get a
// server there or point at another.
func TestUnreachableServer(t *testing.T) {
	addr := closedAddr(t)
	for _, tc := range []struct {
		name string
		env  string // HODEI_ADDR
		args []string
	}{
		{"Flag", "", []string{"--addr", addr, "jobs", "ls"}},
		{"FlagAfterCommand", "", []string{"workers", "ls", "--addr", addr}},
		{"Env", addr, []string{"tenants", "ls"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("HODEI_ADDR", tc.env)
			}
			r := runApp(t, tc.args...)
			want := fmt.Sprintf("hodei: the hodei server at %s is unavailable (connection refused): start one with `hodei serve`", addr)
			if r.code != 1 || !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, "--addr or HODEI_ADDR") {
				t.Errorf("exit %d, stderr %q; want 1 and %q…--addr or HODEI_ADDR…", r.code, r.stderr, want)
			}
		})
	}
}

// TestAddrDefaultPort: --addr (or HODEI_ADDR) naming a host alone means
// the server's default port.
func TestAddrDefaultPort(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"srv", "srv:7070"},
		{"10.0.0.5", "10.0.0.5:7070"},
		{"::1", "[::1]:7070"},
		{"[::1]", "[::1]:7070"},
		{"srv:9000", "srv:9000"},
		{"[::1]:9000", "[::1]:9000"},
		{"", ""},
	} {
		if got := withDefaultPort(tc.in); got != tc.want {
			t.Errorf("withDefaultPort(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// The CLI dials (and looks up the login of) the address with the port.
	r := runApp(t, "--addr", "192.0.2.1", "jobs", "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "no CA certificate for 192.0.2.1:7070:") {
		t.Errorf("--addr without a port: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestErrorText: a gRPC status is shown by its message, also inside an
// error of the CLI's own, never as "rpc error: code = …".
func TestErrorText(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"Status", status.Error(codes.NotFound, "job 01J not found"), "job 01J not found"},
		{"Wrapped", fmt.Errorf("save snapshot: %w", status.Error(codes.Internal, "disk full")), "save snapshot: disk full"},
		{"NoMessage", status.Error(codes.PermissionDenied, ""), "permissiondenied"},
		{"Plain", errors.New("plain"), "plain"},
		{"FieldAsFlag", specFlagsOf.named(statusWithField("resources.memory_mib", "-5 must be between 0 and 67108864")),
			"--memory: -5 must be between 0 and 67108864"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := errorText(tc.err); got != tc.want {
				t.Errorf("errorText = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestFieldFlags: the fields the server's rules name are told as the flags
// (or arguments) that set them.
func TestFieldFlags(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags flagsOfFields
		field string
		want  string // "" for none
	}{
		{"Exact", specFlagsOf, "priority", "--priority"},
		{"Renamed", specFlagsOf, "resources.cpu_millis", "--cpu"},
		{"MapKey", specFlagsOf, "secret_env.API_TOKEN", "--secret-env API_TOKEN"},
		{"MapKeyWithDots", specFlagsOf, "labels.a.b", "--label a.b"},
		{"ListItem", specFlagsOf, "after[2]", "--after"},
		{"Argument", specFlagsOf, "command", "CMD"},
		{"Program", specFlagsOf, "command[0]", "CMD"},
		{"ArgumentOfCMD", specFlagsOf, "spec.command[2]", "argument 2 of CMD"},
		{"RequestField", specFlagsOf, "spec.env", "--env"},
		{"Unknown", specFlagsOf, "page_size", ""},
		{"Tenant", tenantFlagsOf, "max_running.memory_mib", "--memory"},
		{"TenantDuration", tenantFlagsOf, "burst_for", "--burst-for"},
		{"Token", tokenFlagsOf, "ttl_ms", "--ttl"},
		{"TokenTenant", tokenFlagsOf, "tenants[1]", "--tenant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.flags.flag(tc.field)
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("flag(%q) = %q, %v; want %q", tc.field, got, ok, tc.want)
			}
		})
	}
}

// TestMessagesAgainstServer: what a real server refuses comes back naming
// the flag the user typed, with no status code words tacked on.
func TestMessagesAgainstServer(t *testing.T) {
	addr := startServer(t, false)
	pipeline := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(pipeline, []byte("name: p\ndefaults:\n  resources: {memory: 99999999999}\nsteps:\n  - name: a\n    script: echo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string // the whole of stderr
	}{
		{"Priority", []string{"submit", "--priority", "5000", "--", "true"}, "hodei: --priority: 5000 must be between 0 and 1000\n"},
		{"Memory", []string{"submit", "--memory", "-5", "--", "true"}, "hodei: --memory: -5 must be between 0 and 67108864 (64 TiB)\n"},
		{"Slots", []string{"run", "--slots", "99999", "--", "true"}, "hodei: --slots: 99999 must be between 1 and 4096\n"},
		{"SecretEnv", []string{"submit", "--secret-env", "K=short", "--", "true"},
			"hodei: --secret-env K: the value is too short (5 of at least 6 bytes)"},
		{"EnvKey", []string{"submit", "--env", "1A=b", "--", "true"}, "hodei: --env: key \"1A\" must match [A-Za-z_][A-Za-z0-9_]*\n"},
		{"Array", []string{"submit", "--array", "0-3", "--retries", "1000", "--", "true"}, "hodei: --retries: 1000 must be between 0 and 100\n"},
		{"TenantMaxRunning", []string{"tenants", "set", "ml", "--max-running", "-3"}, "hodei: --max-running: must not be negative (0 means unlimited)\n"},
		{"TenantWeight", []string{"tenants", "set", "ml", "--weight", "-1"}, "hodei: --weight: -1 must be more than 0 and at most 10000\n"},
		{"TokenTenant", []string{"token", "create", "--role", "viewer", "--tenant", "nope"},
			"hodei: --tenant: \"nope\" is not a tenant; create it first with hodei tenants set nope\n"},
		{"NotFound", []string{"workers", "drain", "w-nope"}, "hodei: no worker id starts with \"w-nope\"\n"},
		{"UndrainNotFound", []string{"workers", "undrain", "w-nope"}, "hodei: no worker id starts with \"w-nope\"\n"},
		{"JobNotFound", []string{"jobs", "cancel", "01J00000000000000000000ZZZ"}, "hodei: job 01J00000000000000000000ZZZ not found\n"},
		{"Conflict", []string{"tenants", "rm", "default"}, "hodei: tenant \"default\": the default tenant cannot be deleted\n"},
		{"PipelineFileNames", []string{"pipeline", "run", pipeline},
			"hodei: " + pipeline + ":2: defaults.resources.memory: 99999999999 must be between 0 and 67108864 (64 TiB)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runAt(t, addr, tc.args...)
			if r.code != 1 || !strings.HasPrefix(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", r.code, r.stderr, tc.want)
			}
			for _, suffix := range []string{": not found", ": conflict", ": invalid argument", "rpc error"} {
				if strings.Contains(r.stderr, suffix) {
					t.Errorf("stderr %q has %q", r.stderr, suffix)
				}
			}
		})
	}
}

// TestHelpPlaceholders: every flag that takes a value names what it takes
// (`--retention DURATION`, never `--retention value`), and none shows two
// defaults.
func TestHelpPlaceholders(t *testing.T) {
	valuePlaceholder := regexp.MustCompile(`^\s+--[a-z0-9-]+(, -[a-z])? value\b`)
	var walk func(path []string, cmds []*ucli.Command)
	walk = func(path []string, cmds []*ucli.Command) {
		for _, c := range cmds {
			p := append(append([]string(nil), path...), c.Name)
			if len(c.Subcommands) > 0 {
				walk(p, c.Subcommands)
				continue
			}
			r := runApp(t, append(p, "--help")...)
			for line := range strings.SplitSeq(r.stdout, "\n") {
				if valuePlaceholder.MatchString(line) {
					t.Errorf("hodei %s: a flag without a placeholder:\n%s", strings.Join(p, " "), line)
				}
				if strings.Count(line, "(default") > 1 {
					t.Errorf("hodei %s: a flag with two defaults:\n%s", strings.Join(p, " "), line)
				}
			}
		}
	}
	walk(nil, newApp(&env{}).Commands)
}

// statusWithField is an InvalidArgument answer naming field, as the server
// sends them.
func statusWithField(field, rule string) error {
	st, err := status.New(codes.InvalidArgument, field+": "+rule).WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: rule}},
	})
	if err != nil {
		panic(err)
	}
	return st.Err()
}
