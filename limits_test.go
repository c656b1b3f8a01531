package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIRefusesWhatCouldNeverRun runs the real CLI against a real server
// with one request per input limit: each exits non-zero with a message that
// names the field, and nothing is stored.
func TestCLIRefusesWhatCouldNeverRun(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, filepath.Join(dir, "data"), "--max-pipeline-links", "5")
	if _, errOut, code := hodei(t, srv.grpcAddr, "tenants", "set", "ml", "--memory", "4096"); code != 0 {
		t.Fatalf("tenants set: exit %d: %s", code, errOut)
	}
	// Four steps, each needing all before it: 6 links, over the 5 allowed.
	dag := "name: dag\nsteps:\n"
	for i := range 4 {
		var needs []string
		for k := range i {
			needs = append(needs, fmt.Sprintf("s%d", k))
		}
		dag += fmt.Sprintf("  - name: s%d\n    needs: [%s]\n    command: [\"true\"]\n", i, strings.Join(needs, ", "))
	}
	dagFile := filepath.Join(dir, "dag.yaml")
	if err := os.WriteFile(dagFile, []byte(dag), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string // the field and its rule, as printed
	}{
		{"ArgvNotUTF8", []string{"submit", "--", "echo", "a\xffb"}, "argument 1 of CMD: is not valid UTF-8"},
		{"EnvNotUTF8", []string{"submit", "--env", "A=\xff", "--", "true"}, `--env: value of "A" is not valid UTF-8`},
		{"MemoryAboveMax", []string{"submit", "--memory", "67108865", "--", "true"}, "--memory: 67108865 must be between 0 and 67108864"},
		{"CPUAboveMax", []string{"submit", "--cpu", "4096001", "--", "true"}, "--cpu:"},
		{"MemoryAboveTenant", []string{"submit", "--tenant", "ml", "--memory", "8192", "--", "true"},
			`--memory: 8192 is more than the running limit of tenant "ml", 4096 MiB`},
		{"DeadlineTooFar", []string{"submit", "--deadline", "9000h", "--", "true"}, "--deadline:"},
		{"PipelineLinks", []string{"pipeline", "run", dagFile}, "steps: the pipeline has 6 dependency links; at most 5 are allowed (--max-pipeline-links)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantRefused(t, srv.grpcAddr, tt.want, tt.args...) })
	}
	wantNoJobs(t, srv.grpcAddr)
}
