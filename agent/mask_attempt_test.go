package agent

import (
	"encoding/base64"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestAttemptMasksSecretForms runs a real job that prints a secret in each
// form, through a PTY and through pipes, and checks that the output has
// "***" in place of each. Most forms are computed here and handed to the job
// in env; where base64 and od are installed the job also encodes the secret
// itself, as a script would.
func TestAttemptMasksSecretForms(t *testing.T) {
	type line struct {
		name string
		form encoded
	}
	var lines []line
	env := make(map[string]string)
	var script strings.Builder
	forms := printedForms(formSecret)
	for _, name := range slices.Sorted(maps.Keys(forms)) {
		key := fmt.Sprintf("F%d", len(lines))
		env[key] = forms[name].enc
		fmt.Fprintf(&script, "printf '%s: %%s\\n' \"$%s\"\n", key, key)
		lines = append(lines, line{name, forms[name]})
	}
	// The job's own encodings: base64 of the value alone and after a prefix
	// of each length mod 3, with and without a newline; hex by od.
	_, errBase64 := exec.LookPath("base64")
	_, errOD := exec.LookPath("od")
	if errBase64 == nil {
		for _, before := range []string{"", "T=", "TO=", "TOK="} {
			for _, after := range []string{"", "\n"} {
				key := fmt.Sprintf("F%d", len(lines))
				fmt.Fprintf(&script, "printf '%s: '; printf '%s%%s%s' \"$T\" | base64 -w0; echo\n",
					key, before, strings.ReplaceAll(after, "\n", `\n`))
				lines = append(lines, line{fmt.Sprintf("base64 %q+T+%q", before, after),
					inBase64(base64.StdEncoding, before, formSecret, after)})
			}
		}
	} else {
		t.Logf("no base64 program: %v", errBase64)
	}
	if errOD == nil {
		key := fmt.Sprintf("F%d", len(lines))
		fmt.Fprintf(&script, "printf '%s: '; printf '%%s' \"$T\" | od -An -v -tx1 | tr -d ' \\n'; echo\n", key)
		lines = append(lines, line{"od -tx1", forms["HexLower"]})
	} else {
		t.Logf("no od program: %v", errOD)
	}

	for _, mode := range []struct {
		name  string
		noPTY bool
	}{{"PTY", false}, {"Pipes", true}} {
		t.Run(mode.name, func(t *testing.T) {
			r := runAttempt(t, attemptSpec{
				Argv:      shArgv(script.String()),
				Env:       env,
				SecretEnv: map[string]string{"T": formSecret},
				NoPTY:     mode.noPTY,
			}, attemptOptions{})
			if r.exit.ExitCode != 0 || r.stderr != "" {
				t.Fatalf("exit %+v, stderr %q", r.exit, r.stderr)
			}
			out := strings.Split(strings.ReplaceAll(r.out, "\r\n", "\n"), "\n")
			for i, l := range lines {
				if l.name == "PTY" && !mode.noPTY {
					continue // the PTY would add a second "\r": "Plain" is its test
				}
				t.Run(l.name, func(t *testing.T) {
					prefix := fmt.Sprintf("F%d: ", i)
					k := slices.IndexFunc(out, func(s string) bool { return strings.HasPrefix(s, prefix) })
					if k < 0 {
						t.Fatalf("no line %q in the output:\n%s", prefix, r.out)
					}
					checkMasked(t, l.form, strings.TrimPrefix(out[k], prefix))
				})
			}
		})
	}
}
