package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// completions runs the built binary as the completion scripts do: the
// words typed so far, then --generate-bash-completion.
func completions(t *testing.T, words ...string) []string {
	t.Helper()
	out, err := exec.Command(hodeiBin, append(words, "--generate-bash-completion")...).Output()
	if err != nil {
		t.Fatalf("hodei %v --generate-bash-completion: %v", words, err)
	}
	return strings.Fields(string(out))
}

// TestCompletionGenerator checks the words the binary offers the shell
// scripts of `hodei completion`: commands, subcommands, flags.
func TestCompletionGenerator(t *testing.T) {
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{nil, []string{"jobs", "submit", "completion", "version"}},
		{[]string{"jobs"}, []string{"ls", "get", "cancel"}},
		{[]string{"--addr", "127.0.0.1:1", "jobs"}, []string{"ls"}},
		{[]string{"jobs", "ls", "--st"}, []string{"--state"}},
		{[]string{"submit", "--fi"}, []string{"--file"}},
	} {
		got := completions(t, tc.words...)
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("completions of %q = %q, want %q among them", tc.words, got, w)
			}
		}
	}
}

func completionScript(t *testing.T, shell string) string {
	t.Helper()
	out, err := exec.Command(hodeiBin, "completion", shell).Output()
	if err != nil {
		t.Fatalf("hodei completion %s: %v", shell, err)
	}
	path := filepath.Join(t.TempDir(), "hodei."+shell)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCompletionBash loads the bash script and completes as bash would on
// TAB: `hodei jo` offers jobs, `hodei jobs ` offers ls.
func TestCompletionBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash on this machine")
	}
	script := completionScript(t, "bash")
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v: %s", err, out)
	}
	for _, tc := range []struct {
		line string // words typed; the last one is completed
		want string
	}{
		{"hodei jo", "jobs"},
		{"hodei jobs ", "ls"},
		{"hodei jobs ls --sta", "--state"},
		{"hodei completion ", ""}, // an argument: nothing, bash then offers files
	} {
		words := strings.Split(tc.line, " ")
		words[0] = hodeiBin
		// The script runs COMP_WORDS[0], the binary as typed.
		prog := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _hodei; printf '%s\n' "${COMPREPLY[@]}"`
		out, err := exec.Command("bash", append([]string{"-c", prog, "bash", script}, words...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("complete %q: %v: %s", tc.line, err, out)
		}
		got := strings.Fields(string(out))
		if tc.want == "" && len(got) > 0 || tc.want != "" && !slices.Contains(got, tc.want) {
			t.Errorf("complete %q = %q, want %q", tc.line, got, tc.want)
		}
	}
}

// TestCompletionScriptsParse checks that zsh and fish accept their
// scripts, where they are installed.
func TestCompletionScriptsParse(t *testing.T) {
	for _, shell := range []string{"zsh", "fish"} {
		t.Run(shell, func(t *testing.T) {
			if _, err := exec.LookPath(shell); err != nil {
				t.Skipf("no %s on this machine: its script is not checked", shell)
			}
			if out, err := exec.Command(shell, "-n", completionScript(t, shell)).CombinedOutput(); err != nil {
				t.Fatalf("%s -n: %v: %s", shell, err, out)
			}
		})
	}
}

// TestVersionBinary checks that the built binary reports its Go version
// and platform, the same line for `hodei version` and `hodei --version`.
func TestVersionBinary(t *testing.T) {
	v, err := exec.Command(hodeiBin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	flag, err := exec.Command(hodeiBin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(v) != string(flag) || !strings.HasPrefix(string(v), "hodei ") || !strings.Contains(string(v), " go1.") {
		t.Errorf("hodei version = %q, hodei --version = %q", v, flag)
	}
}
