package main

import (
	"strings"
	"testing"
)

// TestCLIRefusesInvalidSpecs submits one bad spec per validation rule
// through the real CLI and server: each exits non-zero with a message that
// names the field, and nothing is stored.
func TestCLIRefusesInvalidSpecs(t *testing.T) {
	srv := startServer(t, t.TempDir())
	var big []string
	for i := range 11 { // 11 × 100 KB: over the 1 MiB spec limit, each under the OS's argument limit
		big = append(big, "--env", "BIG"+string(rune('A'+i))+"="+strings.Repeat("x", 100_000))
	}
	tests := []struct {
		name  string
		args  []string
		field string
	}{
		{"EmptyCommand", []string{"submit", "--"}, "command"},
		{"NegativeTimeout", []string{"submit", "--timeout", "-1s", "--", "true"}, "timeout"},
		{"AbsurdTimeout", []string{"submit", "--timeout", "1000h", "--", "true"}, "timeout"},
		{"RetriesOutOfRange", []string{"submit", "--retries", "101", "--", "true"}, "retries"},
		{"PriorityOutOfRange", []string{"submit", "--priority", "1001", "--", "true"}, "priority"},
		{"BadLabel", []string{"submit", "--label", "bad key=v", "--", "true"}, "label"},
		{"BadEnvKey", []string{"submit", "--env", "1ABC=v", "--", "true"}, "env"},
		{"UnknownDependency", []string{"submit", "--after", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--", "true"}, "after"},
		{"Oversized", append(append([]string{"submit"}, big...), "--", "true"), "spec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantRefused(t, srv.grpcAddr, tt.field, tt.args...) })
	}
	wantNoJobs(t, srv.grpcAddr)
}
