package cli

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	ucli "github.com/urfave/cli/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/pki"
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
		{"FieldAsFlag", specFlagsOf.named(nil, statusWithField("resources.memory_mib", "-5 must be between 0 and 67108864")),
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
// the flag or argument the user typed, with no status code words tacked
// on; a refused value is a usage mistake (exit 2, with the pointer to
// --help), as the CLI's own checks of values are.
func TestMessagesAgainstServer(t *testing.T) {
	addr := startServer(t, false)
	pipeline := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(pipeline, []byte("name: p\ndefaults:\n  resources: {memory: 99999999999}\nsteps:\n  - name: a\n    script: echo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	submitted := runAt(t, addr, "submit", "--", "true")
	submitted.wantOK(t)
	jobID := strings.TrimSpace(submitted.stdout)
	arr := runAt(t, addr, "submit", "--array", "0-3", "--", "true")
	arr.wantOK(t)
	arrayID := strings.TrimSpace(arr.stdout)
	const usage = "Run 'hodei "
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // the start of stderr
	}{
		{"Priority", []string{"submit", "--priority", "5000", "--", "true"}, 2, "hodei: --priority: 5000 must be between 0 and 1000\n" + usage + "submit --help' for usage.\n"},
		{"Memory", []string{"submit", "--memory", "-5", "--", "true"}, 2, "hodei: --memory: -5 must be between 0 and 67108864 (64 TiB)\n"},
		{"Slots", []string{"run", "--slots", "99999", "--", "true"}, 2, "hodei: --slots: 99999 must be between 1 and 4096\n" + usage + "run --help' for usage.\n"},
		{"SecretEnv", []string{"submit", "--secret-env", "K=short", "--", "true"}, 2,
			"hodei: --secret-env K: the value is too short (5 of at least 6 bytes)"},
		{"EnvKey", []string{"submit", "--env", "1A=b", "--", "true"}, 2, "hodei: --env: key \"1A\" must match [A-Za-z_][A-Za-z0-9_]*\n"},
		{"Array", []string{"submit", "--array", "0-3", "--retries", "1000", "--", "true"}, 2, "hodei: --retries: 1000 must be between 0 and 100\n"},
		{"Workdir", []string{"submit", "--workdir", "rel", "--", "true"}, 2, "hodei: --workdir: "},
		{"TenantMaxRunning", []string{"tenants", "set", "ml", "--max-running", "-3"}, 2, "hodei: --max-running: must not be negative (0 means unlimited)\n"},
		{"TenantWeight", []string{"tenants", "set", "ml", "--weight", "-1"}, 2, "hodei: --weight: -1 must be more than 0 and at most 10000\n"},
		{"TokenTenant", []string{"token", "create", "--role", "viewer", "--tenant", "nope"}, 2,
			"hodei: --tenant: \"nope\" is not a tenant; create it first with hodei tenants set nope\n"},
		{"NotFound", []string{"workers", "drain", "w-nope"}, 1, "hodei: no worker id starts with \"w-nope\"\n"},
		{"UndrainNotFound", []string{"workers", "undrain", "w-nope"}, 1, "hodei: no worker id starts with \"w-nope\"\n"},
		{"JobNotFound", []string{"jobs", "cancel", "01J00000000000000000000ZZZ"}, 1, "hodei: job 01J00000000000000000000ZZZ not found\n"},
		{"Conflict", []string{"tenants", "rm", "default"}, 1, "hodei: tenant \"default\": the default tenant cannot be deleted\n"},
		{"PipelineFileNames", []string{"pipeline", "run", pipeline}, 1,
			"hodei: " + pipeline + ":2: defaults.resources.memory: 99999999999 must be between 0 and 67108864 (64 TiB)\n"},
		{"RequireFit", []string{"submit", "--require-fit", "--slots", "5", "--", "true"}, 1,
			"hodei: --require-fit: no worker has registered; start one with 'hodei agent'"},
		// Attack 11 #10, trial 11 #9: ids, --array, --name, --attempt.
		{"ListArray", []string{"jobs", "ls", "--array", "NOPE"}, 2,
			"hodei: --array: \"NOPE\" is not an array id or the start of one"},
		{"ListPipeline", []string{"jobs", "ls", "--pipeline", "NOPE"}, 2, "hodei: --pipeline: \"NOPE\" is not a pipeline id"},
		{"ListNameLong", []string{"jobs", "ls", "--name", strings.Repeat("*", 5000)}, 2,
			"hodei: --name: is 5000 bytes; a job name is at most 256\n" + usage + "jobs ls --help' for usage.\n"},
		{"GetNotAnID", []string{"jobs", "get", "not an id!"}, 2, "hodei: ID: \"not an id!\" is not a job id or the start of one"},
		{"GetNoArray", []string{"jobs", "get", "[5]"}, 2, "hodei: ID: \"[5]\" names no array"},
		{"GetNegativeIndex", []string{"jobs", "get", arrayID + "[-1]"}, 2,
			"hodei: ID: \"" + arrayID + "[-1]\": the INDEX of ARRAY[INDEX] must be a whole number, 0 or more\n"},
		{"GetSpaceIndex", []string{"jobs", "get", arrayID + "[ 5]"}, 2, "hodei: ID: \"" + arrayID + "[ 5]\": the INDEX"},
		{"GetHugeIndex", []string{"jobs", "get", arrayID + "[99999999999999999999]"}, 2, "hodei: ID: \"" + arrayID + "[99999999999999999999]\": the INDEX"},
		{"CancelNotAnID", []string{"jobs", "cancel", "zz!"}, 2, "hodei: ID: \"zz!\" is not a job id"},
		{"LogsAttempt", []string{"logs", "--attempt", "5", jobID}, 2, "hodei: --attempt: 5 must be between 1 and 1 (0: the current one)\n"},
		{"LogsNotAnID", []string{"logs", "!"}, 2, "hodei: ID: \"!\" is not a job id"},
		{"PipelineGet", []string{"pipeline", "get", "!"}, 2, "hodei: ID: \"!\" is not a pipeline id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runAt(t, addr, tc.args...)
			if r.code != tc.code || !strings.HasPrefix(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tc.code, tc.want)
			}
			if hint := strings.Contains(r.stderr, usage); hint != (tc.code == 2) {
				t.Errorf("stderr %q: the --help line is there: %v, want %v", r.stderr, hint, tc.code == 2)
			}
			for _, suffix := range []string{": not found", ": conflict", ": invalid argument", "rpc error", "hodei: prefix:", "hodei: id:", "hodei: attempt:", "require_fit"} {
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

// TestBadAddr: an --addr (or HODEI_ADDR) that no dial could reach is a
// usage error naming --addr, not advice to start a server.
func TestBadAddr(t *testing.T) {
	for _, tc := range []struct{ name, addr, want string }{
		{"EmptyPort", "127.0.0.1:", `--addr: "127.0.0.1:": the port must be a number`},
		{"NamedPort", "127.0.0.1:abc", `--addr: "127.0.0.1:abc": the port must be a number`},
		{"PortTooBig", "127.0.0.1:99999", `--addr: "127.0.0.1:99999": the port must be a number`},
		{"NoHost", ":7070", `--addr: ":7070" has no host`},
		{"Garbage", "a:b:c", `--addr: "a:b:c" is not HOST[:PORT]`},
		{"Space", "host with space", `--addr: "host with space" is not HOST[:PORT]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runApp(t, "--addr", tc.addr, "jobs", "ls")
			if r.code != exitUsage || !strings.HasPrefix(r.stderr, "hodei: "+tc.want) || strings.Contains(r.stderr, "hodei serve") {
				t.Errorf("exit %d, stderr %q; want 2 and %q", r.code, r.stderr, tc.want)
			}
		})
	}
}

// TestTLSTrouble: a server that answers but whose certificate the CA in
// use does not verify, or that drops a connection made without TLS, is
// told as that, with the fix, not as a server to start.
func TestTLSTrouble(t *testing.T) {
	h, caFile := newTLSHarness(t)
	other, err := pki.EnsureCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	otherFile := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(otherFile, other.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("WrongCA", func(t *testing.T) {
		r := runApp(t, "--addr", h.addr, "--ca-file", otherFile, "jobs", "ls")
		want := "hodei: the server at " + h.addr + " answered with a certificate that the CA of --ca-file (or HODEI_CA_FILE) does not verify"
		if r.code != 1 || !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, "hodei login --addr "+h.addr) ||
			strings.Contains(r.stderr, "hodei serve") {
			t.Errorf("exit %d, stderr %q; want 1 and %q…hodei login…", r.code, r.stderr, want)
		}
	})
	t.Run("NoTLS", func(t *testing.T) {
		r := runApp(t, "--addr", h.addr, "jobs", "ls")
		want := "hodei: the server at " + h.addr + " closed a connection made without TLS: it runs with TLS"
		if r.code != 1 || !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, "hodei login --addr "+h.addr) ||
			strings.Contains(r.stderr, "hodei serve") {
			t.Errorf("exit %d, stderr %q; want 1 and %q…hodei login…", r.code, r.stderr, want)
		}
	})
	t.Run("LoopbackLogin", func(t *testing.T) {
		// A login stored for 127.0.0.1:PORT serves localhost:PORT too.
		t.Setenv("XDG_CONFIG_HOME", t.TempDir())
		ca, err := os.ReadFile(caFile)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := saveLogin(h.addr, login{Token: "t", CA: string(ca)}); err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(h.addr)
		runApp(t, "--addr", "localhost:"+port, "jobs", "ls").wantOK(t)
		runApp(t, "--addr", "localhost", "--addr", "localhost:"+port, "workers", "ls").wantOK(t)
	})
}
