package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	ucli "github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestGlobalFlags(t *testing.T) {
	h := newHarness(t)
	closed := closedAddr(t)

	t.Run("AddrFromEnv", func(t *testing.T) {
		t.Setenv("HODEI_ADDR", h.addr)
		runApp(t, "submit", "true").wantOK(t)
	})
	t.Run("FlagBeforeCommandBeatsEnv", func(t *testing.T) {
		t.Setenv("HODEI_ADDR", closed)
		runApp(t, "--addr", h.addr, "submit", "true").wantOK(t)
	})
	t.Run("FlagAfterCommandBeatsEnv", func(t *testing.T) {
		t.Setenv("HODEI_ADDR", closed)
		runApp(t, "submit", "--addr", h.addr, "true").wantOK(t)
	})
	t.Run("FlagAfterCommandBeatsFlagBefore", func(t *testing.T) {
		runApp(t, "--addr", closed, "jobs", "ls", "--addr", h.addr).wantOK(t)
	})
	t.Run("Token", func(t *testing.T) {
		h, caFile := newTLSHarness(t)
		t.Setenv("HODEI_CA_FILE", caFile)
		t.Setenv("HODEI_TOKEN", "from-env")
		h.run(t, "submit", "true").wantOK(t)
		h.run(t, "--token", "global", "submit", "true").wantOK(t)
		h.run(t, "submit", "--token", "local", "true").wantOK(t)
		t.Setenv("HODEI_TOKEN", "")
		h.run(t, "submit", "true").wantOK(t)
		// A stored login comes after the flag and the environment.
		ca, err := os.ReadFile(caFile)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := saveLogin(h.addr, login{Token: "stored", CA: string(ca)}); err != nil {
			t.Fatal(err)
		}
		t.Setenv("HODEI_CA_FILE", "")
		h.run(t, "submit", "true").wantOK(t)
		t.Setenv("HODEI_TOKEN", "from-env")
		h.run(t, "submit", "true").wantOK(t)
		h.jobs.mu.Lock()
		defer h.jobs.mu.Unlock()
		got := h.jobs.authz[len(h.jobs.authz)-6:]
		want := []string{"Bearer from-env", "Bearer global", "Bearer local", "", "Bearer stored", "Bearer from-env"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("authorization metadata = %q, want %q", got, want)
		}
	})
	t.Run("PlaintextCarriesNoToken", func(t *testing.T) {
		t.Setenv("HODEI_TOKEN", "secret")
		h.run(t, "submit", "true").wantOK(t)
		h.jobs.mu.Lock()
		defer h.jobs.mu.Unlock()
		if got := h.jobs.authz[len(h.jobs.authz)-1]; got != "" {
			t.Errorf("authorization over plaintext = %q, want none", got)
		}
	})
	t.Run("NoCAForRemoteServer", func(t *testing.T) {
		r := runApp(t, "--addr", "192.0.2.1:7070", "jobs", "ls")
		if r.code == 0 || !strings.Contains(r.stderr, "no CA certificate for 192.0.2.1:7070") || !strings.Contains(r.stderr, "hodei login") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // substring
		stderr string // substring; "" wants none
	}{
		{"NoArgs", nil, 0, "USAGE:", ""},
		{"Help", []string{"--help"}, 0, "COMMANDS:", ""},
		{"HelpCommand", []string{"help", "submit"}, 0, "--secret-env", ""},
		{"Version", []string{"--version"}, 0, "hodei ", ""},
		{"GroupHelp", []string{"jobs"}, 0, "cancel", ""},
		{"UnknownCommand", []string{"sumbit"}, 2, "", `hodei: unknown command "sumbit"`},
		{"UnknownSubcommand", []string{"jobs", "list"}, 2, "", `hodei: unknown command "list"`},
		{"UnknownHelpTopic", []string{"help", "nope"}, 2, "", "hodei: No help topic"},
		{"UnknownGlobalFlag", []string{"--adr", "x", "jobs", "ls"}, 2, "", "hodei: unknown flag --adr"},
		{"BadGlobalOutput", []string{"-o", "xml", "workers", "ls"}, 2, "", `--output: "xml" is not a format`},
		{"ExtraArgument", []string{"workers", "ls", "extra"}, 2, "", `unexpected argument "extra"`},
		{"EmptyID", []string{"logs", ""}, 2, "", "job ID must not be empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runApp(t, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit code = %d, want %d; stderr %q", r.code, tc.code, r.stderr)
			}
			if !strings.Contains(r.stdout, tc.stdout) {
				t.Errorf("stdout = %q, want it to contain %q", r.stdout, tc.stdout)
			}
			if (tc.stderr == "") != (r.stderr == "") || !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stderr = %q, want %q", r.stderr, tc.stderr)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	bg := context.Background()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		code int
		msg  string
	}{
		{"OK", bg, nil, 0, ""},
		{"Usage", bg, usagef(nil, "missing %s", "FILE"), 2, "missing FILE"},
		{"WrappedUsage", bg, fmt.Errorf("x: %w", &usageError{msg: "m"}), 2, "x: m"},
		{"Urfave", bg, ucli.Exit("No help topic for 'x'", 3), 2, "No help topic for 'x'"},
		{"Status", bg, status.Error(codes.InvalidArgument, "spec.timeout: must not be negative"), 1, "spec.timeout: must not be negative"},
		{"StatusNoMessage", bg, status.Error(codes.PermissionDenied, ""), 1, "permissiondenied"},
		{"Other", bg, errors.New("disk full"), 1, "disk full"},
		{"JobExit", bg, &exitStatus{code: 42}, 42, ""},
		{"Interrupted", cancelled, status.Error(codes.Canceled, "context canceled"), 130, "interrupted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitCode(tc.ctx, tc.err); got != tc.code {
				t.Errorf("exitCode = %d, want %d", got, tc.code)
			}
			if got := message(tc.ctx, tc.err); got != tc.msg {
				t.Errorf("message = %q, want %q", got, tc.msg)
			}
		})
	}
}

func TestFlagErrorMessage(t *testing.T) {
	for in, want := range map[string]string{
		`invalid value "x" for flag -priority: parse error`:           `--priority: invalid value "x" (parse error)`,
		`invalid value "9e99" for flag -cpu: value out of range`:      `--cpu: invalid value "9e99" (value out of range)`,
		`invalid value "for flag -a" for flag -f: parse error`:        `-f: invalid value "for flag -a" (parse error)`,
		`invalid boolean value "maybe" for -preemptible: parse error`: `--preemptible: invalid value "maybe" (parse error)`,
		"flag provided but not defined: -x":                           "unknown flag -x",
		"flag provided but not defined: -bogus":                       "unknown flag --bogus",
		"flag needs an argument: -name":                               "--name: needs a value",
		"something else":                                              "something else",
	} {
		if got := flagErrorMessage(in); got != want {
			t.Errorf("flagErrorMessage(%q) = %q, want %q", in, got, want)
		}
	}
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}
