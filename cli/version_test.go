package cli

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionOf(t *testing.T) {
	toolchain := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/hodei-jobs/hodei", Version: "v0.0.0-20261202101500-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-02T10:15:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	platform := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name                     string
		version, commit, mod, at string
		bi                       *debug.BuildInfo
		want                     string
	}{
		{"Make", "v1.2.0", "fedcba9876543210fedcba9876543210fedcba98", "", "2026-12-03T08:00:00Z", toolchain,
			"hodei v1.2.0  commit fedcba987654  built 2026-12-03T08:00:00Z  go1.26.8 " + platform},
		{"MakeModified", "v1.2.0-dirty", "fedcba9876543210fedcba9876543210fedcba98", "true", "2026-12-03T08:00:00Z", toolchain,
			"hodei v1.2.0-dirty  commit fedcba987654 (modified)  built 2026-12-03T08:00:00Z  go1.26.8 " + platform},
		{"GoBuild", "dev", "", "", "", toolchain,
			"hodei v0.0.0-20261202101500-0123456789ab+dirty  commit 0123456789ab (modified)  committed 2026-12-02T10:15:00Z  go1.26.8 " + platform},
		{"GoBuildNoVCS", "dev", "", "", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"hodei dev  go1.26.8 " + platform},
		{"NoBuildInfo", "dev", "", "", "", nil,
			"hodei dev  " + runtime.Version() + " " + platform},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := versionOf(tc.version, tc.commit, tc.mod, tc.at, tc.bi).String(); got != tc.want {
				t.Errorf("version line\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestVersionCommand checks that `hodei version` and `hodei --version`
// print the same line, and `hodei version -o json` its fields.
func TestVersionCommand(t *testing.T) {
	want := buildVersion().String() + "\n"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := runApp(t, args...)
		if r.code != 0 || r.stdout != want || r.stderr != "" {
			t.Errorf("hodei %v: code %d, stdout %q, stderr %q; want 0, %q", args, r.code, r.stdout, r.stderr, want)
		}
	}
	for _, args := range [][]string{{"version", "-o", "json"}, {"-o", "json", "version"}} {
		r := runApp(t, args...)
		var v versionInfo
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 0 {
			t.Fatalf("hodei %v: code %d, %v: %q", args, r.code, err, r.stdout)
		}
		if v != buildVersion() || v.Version == "" || !strings.HasPrefix(v.Go, "go") {
			t.Errorf("hodei %v = %+v, want %+v", args, v, buildVersion())
		}
	}
	r := runApp(t, "version", "extra")
	if r.code != 2 || !strings.Contains(r.stderr, `unexpected argument "extra"`) {
		t.Errorf("hodei version extra: code %d, stderr %q", r.code, r.stderr)
	}
}

func TestCompletionCommand(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		r := runApp(t, "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, "--generate-bash-completion") || r.stderr != "" {
			t.Errorf("hodei completion %s: code %d, stdout %q, stderr %q", shell, r.code, r.stdout, r.stderr)
		}
	}
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"completion", "powershell"}, `SHELL: "powershell" is not a shell hodei completes; use bash, zsh or fish`},
		{[]string{"completion"}, "missing SHELL"},
		{[]string{"completion", "bash", "zsh"}, `unexpected argument "zsh"`},
	} {
		r := runApp(t, tc.args...)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("hodei %v: code %d, stdout %q, stderr %q; want 2 and %q", tc.args, r.code, r.stdout, r.stderr, tc.stderr)
		}
	}
}
