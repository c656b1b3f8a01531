package cli

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	ucli "github.com/urfave/cli/v2"

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
			"Prints one line 'hodei: serving grpc=ADDR http=ADDR data=DIR' when ready.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "data-dir", Value: "./hodei-data", EnvVars: []string{"HODEI_DATA_DIR"},
				Usage: "`DIR` holding hodei.db and logs/"},
			&ucli.StringFlag{Name: "grpc-addr", Value: server.DefaultGRPCAddr, Usage: "gRPC listen `ADDR` (port 0: any free port)"},
			&ucli.StringFlag{Name: "http-addr", Value: server.DefaultHTTPAddr, Usage: "HTTP listen `ADDR` for /healthz and /metrics; '-' turns it off"},
			&ucli.StringFlag{Name: "placement", Value: "binpack", Usage: "`POLICY` for choosing a worker: binpack or spread"},
			&ucli.DurationFlag{Name: "retention", Value: server.DefaultRetention, Usage: "keep finished jobs and their logs this long"},
			&ucli.DurationFlag{Name: "heartbeat", Value: 5 * time.Second, Usage: "interval agents heartbeat at"},
			&ucli.DurationFlag{Name: "lease", Usage: "silence after which a worker is DOWN and its jobs lost (default 3 × heartbeat + 5s)"},
			&ucli.DurationFlag{Name: "kill-grace", Value: 10 * time.Second, Usage: "time between SIGTERM and SIGKILL when a job is stopped"},
			&ucli.StringFlag{Name: "log-level", Value: "info", Usage: "`LEVEL`: debug, info, warn or error"},
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
			if err := srv.Serve(c.Context); err != nil {
				return err
			}
			return &exitStatus{code: exitOK} // stopped by a signal, cleanly
		},
	}
}

// serveConfig checks serve's flags and builds the server's configuration.
func serveConfig(c *ucli.Context) (server.Config, error) {
	placement, err := scheduler.ParsePlacement(c.String("placement"))
	if err != nil {
		return server.Config{}, usagef(c, "--placement: %q is not a placement; use binpack or spread", c.String("placement"))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return server.Config{}, usagef(c, "--log-level: %q is not a level; use debug, info, warn or error", c.String("log-level"))
	}
	for _, name := range []string{"retention", "heartbeat", "lease", "kill-grace"} {
		if c.Duration(name) < 0 {
			return server.Config{}, usagef(c, "--%s: must not be negative", name)
		}
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
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}, nil
}
