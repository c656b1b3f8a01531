package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
	"github.com/hodei-jobs/hodei/server"
)

// serveCommand is `hodei serve`: the control plane in the foreground until
// SIGINT or SIGTERM.
func serveCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:  "serve",
		Usage: "run the server: queue, scheduler, API, metrics",
		Description: "Keeps the queue in memory and every state change in DATA-DIR/hodei.db.\n" +
			"Secret env values are sealed there with the key in DATA-DIR/secrets.key, created on the first start;\n" +
			"back it up with the database: without it the stored secrets are lost and the server refuses to start.\n" +
			"Prints one line 'hodei: serving grpc=ADDR http=ADDR data=DIR' when ready.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "data-dir", Value: "./hodei-data", EnvVars: []string{"HODEI_DATA_DIR"},
				Usage: "`DIR` holding hodei.db and logs/"},
			&ucli.StringFlag{Name: "secrets-key", EnvVars: []string{"HODEI_SECRETS_KEY"},
				Usage: "key `FILE` that seals secret env values in the database (default DATA-DIR/secrets.key)"},
			&ucli.StringFlag{Name: "grpc-addr", Value: server.DefaultGRPCAddr, Usage: "gRPC listen `ADDR` (port 0: any free port)"},
			&ucli.StringFlag{Name: "http-addr", Value: server.DefaultHTTPAddr, Usage: "HTTP listen `ADDR` for /healthz and /metrics; '-' turns it off"},
			&ucli.StringFlag{Name: "placement", Value: "binpack", Usage: "`POLICY` for choosing a worker: binpack or spread"},
			&ucli.DurationFlag{Name: "retention", Value: server.DefaultRetention, Usage: "keep finished jobs and their logs this long"},
			&ucli.DurationFlag{Name: "heartbeat", Value: 5 * time.Second, Usage: "interval agents heartbeat at"},
			&ucli.DurationFlag{Name: "lease", Usage: "silence after which a worker is DOWN and its jobs lost (default 3 × heartbeat + 5s)"},
			&ucli.DurationFlag{Name: "kill-grace", Value: 10 * time.Second, Usage: "time between SIGTERM and SIGKILL when a job is stopped"},
			&ucli.BoolFlag{Name: "auto-tenants", Usage: "create the tenant a submit names when it does not exist, instead of refusing the submit"},
			&ucli.DurationFlag{Name: "aging", Value: scheduler.DefaultAging,
				Usage: "wait that raises a pending job's priority by the full 0–1000 range; a job of priority p outranks every job of its tenant submitted more than aging×(1000−p)/1000 after it"},
			&ucli.BoolFlag{Name: "preemption", Usage: "stop preemptible jobs of tenants above their weighted share to make room for tenants below it"},
			&ucli.IntFlag{Name: "max-matrix", Value: job.DefaultMaxMatrix, Usage: "the most jobs, `N`, one pipeline step's matrix may expand to"},
			&ucli.StringFlag{Name: "log-level", Value: "info", Usage: "`LEVEL`: debug, info, warn or error"},
			&ucli.BoolFlag{Name: "dev", Usage: "also run one agent in this process, over loopback gRPC, with its data in DATA-DIR/agent"},
		},
		Action: func(c *ucli.Context) error {
			cfg, err := serveConfig(c)
			if err != nil {
				return err
			}
			srv, err := server.New(c.Context, cfg)
			if err != nil {
				return err
			}
			if err := srv.Listen(); err != nil {
				srv.Close()
				return err
			}
			fmt.Fprintf(c.App.Writer, "hodei: serving grpc=%s http=%s data=%s\n", srv.GRPCAddr(), srv.HTTPAddr(), cfg.DataDir)
			var dev *agent.Agent
			if c.Bool("dev") {
				dev, err = agent.New(agent.Config{
					Server: srv.GRPCAddr(), DataDir: filepath.Join(cfg.DataDir, "agent"), Name: "dev",
					KillGrace: cfg.KillGrace, Version: Version, Logger: cfg.Logger,
				})
				if err != nil {
					srv.Close()
					return err
				}
				addr := ""
				if srv.GRPCAddr() != client.DefaultAddr {
					addr = " --addr " + srv.GRPCAddr()
				}
				fmt.Fprintf(c.App.Writer, "hodei: dev agent %s runs jobs here; try:\n\n    ./bin/hodei%s run -- echo hello\n\n", dev.ID(), addr)
			}
			if err := serveWith(c.Context, srv, dev); err != nil {
				return err
			}
			return &exitStatus{code: exitOK} // stopped by a signal, cleanly
		},
	}
}

// serveWith runs the server and, in dev mode, its in-process agent until
// ctx ends, and waits for both. The agent stops first: its running jobs
// are stopped and their results kept in its journal for the next start. A
// server that fails stops the agent.
func serveWith(ctx context.Context, srv *server.Server, dev *agent.Agent) error {
	if dev == nil {
		return srv.Serve(ctx)
	}
	srvCtx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServer()
	agentCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	served := make(chan error, 1)
	go func() {
		served <- srv.Serve(srvCtx)
		stopAgent()
	}()
	err := dev.Run(agentCtx)
	stopServer()
	return errors.Join(err, <-served)
}

// serveConfig checks serve's flags and builds the server's configuration.
func serveConfig(c *ucli.Context) (server.Config, error) {
	placement, err := scheduler.ParsePlacement(c.String("placement"))
	if err != nil {
		return server.Config{}, usagef(c, "--placement: %q is not a placement; use binpack or spread", c.String("placement"))
	}
	logger, err := newLogger(c)
	if err != nil {
		return server.Config{}, err
	}
	for _, name := range []string{"retention", "heartbeat", "lease", "kill-grace"} {
		if c.Duration(name) < 0 {
			return server.Config{}, usagef(c, "--%s: must not be negative", name)
		}
	}
	if c.Duration("aging") <= 0 {
		return server.Config{}, usagef(c, "--aging: %s must be more than 0", c.Duration("aging"))
	}
	if n := c.Int("max-matrix"); n < 1 {
		return server.Config{}, usagef(c, "--max-matrix: %d must be at least 1", n)
	}
	return server.Config{
		DataDir:   c.String("data-dir"),
		GRPCAddr:  c.String("grpc-addr"),
		HTTPAddr:  c.String("http-addr"),
		Placement: placement,
		Retention: c.Duration("retention"),
		Heartbeat: c.Duration("heartbeat"),
		Lease:     c.Duration("lease"),
		KillGrace: c.Duration("kill-grace"),
		Logger:    logger,

		SecretsKeyFile: c.String("secrets-key"),

		AutoTenants: c.Bool("auto-tenants"),
		Aging:       c.Duration("aging"),
		Preemption:  c.Bool("preemption"),
		MaxMatrix:   c.Int("max-matrix"),
	}, nil
}
