package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
	"github.com/hodei-jobs/hodei/server"
)

// parseServe runs serve's flag parsing and serveConfig on args, without
// starting a server.
func parseServe(t *testing.T, args ...string) (server.Config, error) {
	t.Helper()
	cmd := serveCommand(&env{now: time.Now})
	var cfg server.Config
	cmd.Action = func(c *ucli.Context) error {
		var err error
		cfg, err = serveConfig(c)
		return err
	}
	app := newApp(&env{now: time.Now})
	app.Commands = []*ucli.Command{cmd}
	err := app.RunContext(context.Background(), append([]string{"hodei", "serve", "--log-level", "error"}, args...))
	return cfg, err
}

func TestServeTenantFlags(t *testing.T) {
	t.Run("Defaults", func(t *testing.T) {
		cfg, err := parseServe(t)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.AutoTenants || cfg.Preemption || cfg.Aging != scheduler.DefaultAging {
			t.Errorf("defaults: auto-tenants %v, preemption %v, aging %s", cfg.AutoTenants, cfg.Preemption, cfg.Aging)
		}
	})
	t.Run("Set", func(t *testing.T) {
		cfg, err := parseServe(t, "--auto-tenants", "--aging", "30m", "--preemption")
		if err != nil {
			t.Fatal(err)
		}
		if !cfg.AutoTenants || !cfg.Preemption || cfg.Aging != 30*time.Minute {
			t.Errorf("auto-tenants %v, preemption %v, aging %s", cfg.AutoTenants, cfg.Preemption, cfg.Aging)
		}
	})
	for _, tc := range []struct{ name, aging, want string }{
		{"AgingZero", "0s", "--aging: 0s must be more than 0"},
		{"AgingNegative", "-1h", "--aging: -1h0m0s must be more than 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseServe(t, "--aging", tc.aging)
			if code := exitCode(context.Background(), err); code != exitUsage || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v (exit %d), want usage error %q", err, code, tc.want)
			}
		})
	}
	t.Run("Help", func(t *testing.T) {
		r := runApp(t, "help", "serve")
		for _, want := range []string{"--auto-tenants", "--preemption", "aging×(1000−p)/1000", "(default: 1h0m0s)"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("serve help lacks %q", want)
			}
		}
	})
}

func TestServeMaxMatrix(t *testing.T) {
	cfg, err := parseServe(t)
	if err != nil || cfg.MaxMatrix != job.DefaultMaxMatrix {
		t.Errorf("default max-matrix = %d, %v; want %d", cfg.MaxMatrix, err, job.DefaultMaxMatrix)
	}
	cfg, err = parseServe(t, "--max-matrix", "1000")
	if err != nil || cfg.MaxMatrix != 1000 {
		t.Errorf("--max-matrix 1000 = %d, %v", cfg.MaxMatrix, err)
	}
	for _, n := range []string{"0", "-5"} {
		_, err := parseServe(t, "--max-matrix", n)
		if code := exitCode(context.Background(), err); code != exitUsage || !strings.Contains(err.Error(), "--max-matrix: "+n+" must be at least 1") {
			t.Errorf("--max-matrix %s: error %v (exit %d), want a usage error", n, err, code)
		}
	}
}

func TestServeMaxPipelineLinks(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int    // the configured limit
		err  string // part of the usage error; "" when valid
	}{
		{"Default", nil, job.DefaultMaxPipelineLinks, ""},
		{"Set", []string{"--max-pipeline-links", "500000"}, 500_000, ""},
		{"Zero", []string{"--max-pipeline-links", "0"}, 0, "--max-pipeline-links: 0 must be at least 1"},
		{"Negative", []string{"--max-pipeline-links", "-1"}, 0, "--max-pipeline-links: -1 must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseServe(t, tt.args...)
			switch {
			case tt.err == "" && (err != nil || cfg.MaxPipelineLinks != tt.want):
				t.Fatalf("max-pipeline-links = %d, %v; want %d", cfg.MaxPipelineLinks, err, tt.want)
			case tt.err != "" && (exitCode(context.Background(), err) != exitUsage || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("error %v, want a usage error with %q", err, tt.err)
			}
		})
	}
}

func TestServeMaxStreamsPerToken(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int    // server.Config.MaxStreamsPerToken
		err  string // part of the usage error; "" when valid
	}{
		{"Default", nil, server.DefaultMaxStreamsPerToken, ""},
		{"Set", []string{"--max-streams-per-token", "500"}, 500, ""},
		{"Zero", []string{"--max-streams-per-token", "0"}, 0, "--max-streams-per-token: 0 must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseServe(t, tt.args...)
			switch {
			case tt.err == "" && (err != nil || cfg.MaxStreamsPerToken != tt.want):
				t.Fatalf("max-streams-per-token = %d, %v; want %d", cfg.MaxStreamsPerToken, err, tt.want)
			case tt.err != "" && (exitCode(context.Background(), err) != exitUsage || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("error %v, want a usage error with %q", err, tt.err)
			}
		})
	}
}

func TestServeWorkerGC(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want time.Duration // server.Config.WorkerGC
		err  string        // part of the usage error; "" when valid
	}{
		{"Default", nil, cluster.DefaultWorkerGC, ""},
		{"Set", []string{"--worker-gc", "2h"}, 2 * time.Hour, ""},
		{"ZeroIsNever", []string{"--worker-gc", "0"}, -1, ""},
		{"Negative", []string{"--worker-gc", "-1h"}, 0, "--worker-gc: must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseServe(t, tt.args...)
			switch {
			case tt.err == "" && (err != nil || cfg.WorkerGC != tt.want):
				t.Fatalf("worker-gc = %s, %v; want %s", cfg.WorkerGC, err, tt.want)
			case tt.err != "" && (exitCode(context.Background(), err) != exitUsage || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("error %v, want a usage error with %q", err, tt.err)
			}
		})
	}
}
