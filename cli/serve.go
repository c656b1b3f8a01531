package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/pki"
	"github.com/hodei-jobs/hodei/scheduler"
	"github.com/hodei-jobs/hodei/server"
)

// serveCommand is `hodei serve`: the control plane in the foreground until
// SIGINT or SIGTERM.
func serveCommand(e *env) *ucli.Command {
	return withConfigFile(&ucli.Command{
		Name:  "serve",
		Usage: "run the server: queue, scheduler, API, metrics",
		Description: "Keeps the queue in memory and every state change in DATA-DIR/hodei.db, and which cluster that file\n" +
			"belongs to in DATA-DIR/hodei.identity: a missing, empty or damaged hodei.db is refused, never started\n" +
			"empty (restore it with hodei snapshot restore).\n" +
			"Secret env values are sealed there with the key in DATA-DIR/secrets.key, created on the first start;\n" +
			"back it up with the database: without it the stored secrets are lost and the server refuses to start.\n" +
			"Prints one line 'hodei: serving grpc=ADDR http=ADDR data=DIR' when ready.\n\n" +
			"Every flag may also come from its HODEI_* variable (shown after it) or from the YAML file\n" +
			"--config (default " + DefaultConfigDir + "/serve.yaml when it exists), by the flag's name: 'data-dir: /var/lib/hodei';\n" +
			"a flag wins over its variable, which wins over the file. 'hodei config print serve' shows what applies.\n" +
			"Under systemd (Type=notify) it reports READY once serving, STOPPING when it stops, and WATCHDOG\n" +
			"pings while its dispatch loop runs.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "data-dir", Value: "./hodei-data", EnvVars: []string{"HODEI_DATA_DIR"},
				Usage: "`DIR` holding hodei.db and logs/"},
			&ucli.StringFlag{Name: "secrets-key", EnvVars: []string{"HODEI_SECRETS_KEY"},
				Usage: "key `FILE` that seals secret env values in the database (default DATA-DIR/secrets.key)"},
			&ucli.StringFlag{Name: "grpc-addr", Value: server.DefaultGRPCAddr, Usage: "gRPC listen `ADDR` (port 0: any free port)"},
			&ucli.StringFlag{Name: "http-addr", Value: server.DefaultHTTPAddr, Usage: "HTTP listen `ADDR` for /healthz, /readyz and /metrics; '-' turns it off"},
			&ucli.StringFlag{Name: "placement", Value: "binpack", Usage: "`POLICY` for choosing a worker: binpack or spread"},
			&ucli.DurationFlag{Name: "retention", Value: server.DefaultRetention, Usage: "keep finished jobs and their logs for `DURATION`"},
			&ucli.DurationFlag{Name: "audit-retention", Value: server.DefaultAuditRetention, Usage: "keep audit records for `DURATION`"},
			&ucli.DurationFlag{Name: "usage-retention", Value: server.DefaultUsageRetention, DefaultText: "9600h (400 days)",
				Usage: "keep per-attempt usage records and daily roll-ups (hodei usage) for `DURATION`; they outlive the jobs"},
			&ucli.DurationFlag{Name: "heartbeat", Value: cluster.DefaultHeartbeat, Usage: "`DURATION` between an agent's heartbeats"},
			&ucli.DurationFlag{Name: "lease", DefaultText: "3 × heartbeat + 5s", Usage: "`DURATION` of silence after which a worker is DOWN and its jobs lost"},
			&ucli.DurationFlag{Name: "kill-grace", Value: cluster.DefaultKillGrace,
				Usage: "`DURATION` between SIGTERM and SIGKILL when the server stops a job (cancel, preemption, a stale attempt) " +
					"and for every stop on serve --dev's agent; other agents use their own --kill-grace for the timeouts they enforce and when they shut down"},
			&ucli.DurationFlag{Name: "worker-gc", Value: cluster.DefaultWorkerGC,
				Usage: "delete a worker once it has been DOWN for `DURATION` (0: never; hodei workers rm deletes one at once)"},
			&ucli.BoolFlag{Name: "auto-tenants", Usage: "create the tenant a submit names when it does not exist, instead of refusing the submit"},
			&ucli.DurationFlag{Name: "aging", Value: scheduler.DefaultAging,
				Usage: "`DURATION` of waiting that raises a pending job's priority by the full 0–1000 range; a job of priority p outranks every job of its tenant submitted more than aging×(1000−p)/1000 after it"},
			&ucli.BoolFlag{Name: "preemption", Usage: "stop preemptible jobs of tenants above their weighted share to make room for tenants below it"},
			&ucli.IntFlag{Name: "max-matrix", Value: job.DefaultMaxMatrix, Usage: "the most jobs, `N`, one pipeline step's matrix may expand to"},
			&ucli.IntFlag{Name: "max-pipeline-links", Value: job.DefaultMaxPipelineLinks,
				Usage: "the most dependency links, `N`, one pipeline may create (a step of m jobs that needs steps of n jobs in all makes m×n)"},
			&ucli.IntFlag{Name: "max-streams-per-token", Value: server.DefaultMaxStreamsPerToken,
				Usage: "the most streams that follow a job (attach, run, logs -f, watch) one token may hold open at once, `N`; one more is refused"},
			&ucli.StringFlag{Name: "log-level", Value: "info", Usage: "`LEVEL`: debug, info, warn or error"},
			&ucli.BoolFlag{Name: "dev", Usage: "also run one agent in this process, over loopback gRPC, with its data in DATA-DIR/agent, and log the local user in"},
			&ucli.StringFlag{Name: "labels", Usage: "with --dev: labels of the dev agent, comma-separated `k=v,…`, over its own " + devLabelsText},
			&ucli.Int64Flag{Name: "slots", DefaultText: "the number of CPUs", Usage: "with --dev: `N` job slots the dev agent offers"},
			&ucli.BoolFlag{Name: "insecure-no-auth", Usage: "turn off authentication and TLS (loopback addresses only): every local process may run any command on every agent"},
			&ucli.StringFlag{Name: "tls-cert", Usage: "server certificate `FILE` (PEM) instead of the one the server makes in DATA-DIR/tls"},
			&ucli.StringFlag{Name: "tls-key", Usage: "private key `FILE` (PEM) of --tls-cert"},
			&ucli.StringFlag{Name: "tls-client-ca", Usage: "CA certificate `FILE` that agents' client certificates are verified against (default: the cluster CA)"},
			&ucli.StringSliceFlag{Name: "tls-san", Usage: "extra `NAME` or IP for the server certificate the server makes (repeat)"},
			&ucli.BoolFlag{Name: "check", Usage: "run the database's consistency check at start, as hodei snapshot verify does (reads the whole file), and refuse to serve when it finds problems"},
			&ucli.DurationFlag{Name: "snapshot-every", Usage: "save a snapshot of the database every `DURATION` (at least 1s) into --snapshot-dir; 0: none"},
			&ucli.IntFlag{Name: "snapshot-keep", Value: server.DefaultSnapshotKeep, Usage: "with --snapshot-every: keep the newest `N` scheduled snapshots, removing older ones"},
			&ucli.StringFlag{Name: "snapshot-dir", DefaultText: "DATA-DIR/" + server.SnapshotsDir, Usage: "with --snapshot-every: `DIR` of the scheduled snapshots, named hodei-YYYYMMDDTHHMMSSZ.db"},
		},
		Action: func(c *ucli.Context) error {
			cfg, err := serveConfig(c)
			if err != nil {
				return err
			}
			if err := checkAtStart(c, cfg); err != nil {
				return err
			}
			dev, err := devConfig(c)
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
			if fp := srv.CAFingerprint(); fp != "" {
				fmt.Fprintf(c.App.Writer, "hodei: admin token in %s, CA in %s (%s)\n",
					filepath.Join(cfg.DataDir, server.AdminTokenFile), filepath.Join(cfg.DataDir, server.TLSDir, "ca.pem"), fp)
			}
			// READY=1 once the dispatch loop answers (Serve runs it), then
			// watchdog pings while it keeps answering; STOPPING=1 on the signal.
			stopNotify := newSDNotifier(cfg.Logger).watch(c.Context, srv.Scheduler().Alive, true)
			defer stopNotify()
			var newDev func() (*agent.Agent, error)
			if c.Bool("dev") {
				newDev = func() (*agent.Agent, error) {
					addr := loopbackOf(srv.GRPCAddr())
					lines := &connectLines{w: c.App.Writer, server: addr, labels: dev.Labels}
					lines.connected = func() {
						flag := ""
						if addr != client.DefaultAddr {
							flag = " --addr " + addr
						}
						fmt.Fprintf(c.App.Writer, "hodei: the dev agent runs jobs here; try:\n\n    ./bin/hodei%s run -- echo hello\n\n", flag)
					}
					dev.OnConnect = lines.event
					a, err := devAgent(c, srv, cfg, dev)
					lines.agent = a
					return a, err
				}
			}
			if err := serveWith(c.Context, srv, newDev); err != nil {
				return err
			}
			return &exitStatus{code: exitOK} // stopped by a signal, cleanly
		},
	}, &fileFlags{file: "serve.yaml", dir: e.configDir, lists: map[string]bool{"labels": true}})
}

// serveWith runs the server and, in dev mode, its in-process agent until
// ctx ends, and waits for both. newDev, when not nil, makes the agent once
// the server serves (it joins through the real protocol). The agent stops
// first: its running jobs are stopped and their results kept in its
// journal for the next start. A server that fails stops the agent; an
// agent that cannot be made stops the server.
func serveWith(ctx context.Context, srv *server.Server, newDev func() (*agent.Agent, error)) error {
	if newDev == nil {
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
	dev, err := newDev()
	if err == nil {
		err = dev.Run(agentCtx)
	}
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
	for _, name := range []string{"grpc-addr", "http-addr"} {
		if addr := c.String(name); name == "grpc-addr" || addr != "-" {
			if err := checkHostPort(c, name, addr, 0); err != nil {
				return server.Config{}, err
			}
		}
	}
	for _, name := range []string{"retention", "audit-retention", "usage-retention", "heartbeat", "lease", "kill-grace", "worker-gc"} {
		if c.Duration(name) < 0 {
			return server.Config{}, usagef(c, "--%s: must not be negative", name)
		}
	}
	if c.Duration("aging") <= 0 {
		return server.Config{}, usagef(c, "--aging: %s must be more than 0", c.Duration("aging"))
	}
	for _, name := range []string{"max-matrix", "max-pipeline-links", "max-streams-per-token"} {
		if n := c.Int(name); n < 1 {
			return server.Config{}, usagef(c, "--%s: %d must be at least 1", name, n)
		}
	}
	if every := c.Duration("snapshot-every"); every < 0 || (every > 0 && every < time.Second) {
		return server.Config{}, usagef(c, "--snapshot-every: %s must be 0 (no scheduled snapshots) or at least 1s", every)
	}
	if n := c.Int("snapshot-keep"); n < 1 {
		return server.Config{}, usagef(c, "--snapshot-keep: %d must be at least 1", n)
	}
	if c.Duration("snapshot-every") == 0 {
		for _, name := range []string{"snapshot-keep", "snapshot-dir"} {
			if c.IsSet(name) {
				return server.Config{}, usagef(c, "--%s: only with --snapshot-every", name)
			}
		}
	}
	workerGC := c.Duration("worker-gc")
	if workerGC == 0 {
		workerGC = -1 // the flag's 0 is never; the config's is the default
	}
	return server.Config{
		DataDir:  c.String("data-dir"),
		GRPCAddr: c.String("grpc-addr"),
		HTTPAddr: c.String("http-addr"),
		Settings: cluster.Settings{
			Placement:        placement,
			Heartbeat:        c.Duration("heartbeat"),
			Lease:            c.Duration("lease"),
			KillGrace:        c.Duration("kill-grace"),
			AutoTenants:      c.Bool("auto-tenants"),
			Aging:            c.Duration("aging"),
			Preemption:       c.Bool("preemption"),
			MaxMatrix:        c.Int("max-matrix"),
			MaxPipelineLinks: c.Int("max-pipeline-links"),
			WorkerGC:         workerGC,
		},
		Retention: c.Duration("retention"),
		Logger:    logger,

		InsecureNoAuth: c.Bool("insecure-no-auth"),
		TLSCert:        c.String("tls-cert"),
		TLSKey:         c.String("tls-key"),
		TLSClientCA:    c.String("tls-client-ca"),
		TLSHosts:       c.StringSlice("tls-san"),
		SecretsKeyFile: c.String("secrets-key"),

		SnapshotEvery: c.Duration("snapshot-every"),
		SnapshotKeep:  c.Int("snapshot-keep"),
		SnapshotDir:   c.String("snapshot-dir"),

		AuditRetention:     c.Duration("audit-retention"),
		UsageRetention:     c.Duration("usage-retention"),
		MaxStreamsPerToken: c.Int("max-streams-per-token"),
	}, nil
}

// devLabelsText documents the labels every agent gives itself (hostLabels).
const devLabelsText = "os=GOOS,arch=GOARCH (as Go names them: os=linux, arch=amd64 or arm64…)"

// devConfig checks serve's --labels and --slots, which configure the dev
// agent, and returns the part of its configuration they give: its labels
// are os=GOOS and arch=GOARCH, then --labels over them.
func devConfig(c *ucli.Context) (agent.Config, error) {
	if !c.Bool("dev") {
		for _, name := range []string{"labels", "slots"} {
			if c.IsSet(name) {
				return agent.Config{}, usagef(c, "--%s: only with --dev (it configures the dev agent; give other agents theirs with hodei agent --%s)", name, name)
			}
		}
		return agent.Config{}, nil
	}
	labels, err := parseLabelList(c.String("labels"))
	if err != nil {
		return agent.Config{}, usagef(c, "--labels: %s", err)
	}
	if n := c.Int64("slots"); n < 0 || n > job.MaxWorkerSlots {
		return agent.Config{}, usagef(c, "--slots: %d must be between 1 and %d (0: the number of CPUs)", n, job.MaxWorkerSlots)
	}
	return agent.Config{Labels: hostLabels(labels), Slots: c.Int64("slots")}, nil
}

// devAgent makes serve --dev's in-process agent, joined through the real
// protocol with a fresh agent token, and logs the local user in to the
// server with the admin token, so that `hodei run` works with no extra step.
// dev gives its labels, slots and OnConnect.
func devAgent(c *ucli.Context, srv *server.Server, cfg server.Config, dev agent.Config) (*agent.Agent, error) {
	addr := loopbackOf(srv.GRPCAddr())
	acfg := agent.Config{
		Server: addr, DataDir: filepath.Join(cfg.DataDir, "agent"), Name: "dev", Labels: dev.Labels, Slots: dev.Slots,
		KillGrace: cfg.KillGrace, Version: Version, Logger: cfg.Logger, Insecure: cfg.InsecureNoAuth, OnConnect: dev.OnConnect,
	}
	if cfg.InsecureNoAuth {
		return agent.New(acfg)
	}
	if _, err := os.Stat(filepath.Join(acfg.DataDir, "tls", pki.AgentFile)); err != nil {
		// Not joined yet (a later start uses the certificate it kept).
		join, err := srv.IssueToken(c.Context, auth.Agent, "dev-agent")
		if err != nil {
			return nil, err
		}
		acfg.Join, acfg.CAFingerprint = join, srv.CAFingerprint()
	}
	a, err := agent.New(acfg)
	if err != nil {
		return nil, err
	}
	token, err := os.ReadFile(filepath.Join(cfg.DataDir, server.AdminTokenFile))
	if err != nil {
		return nil, fmt.Errorf("dev login: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(cfg.DataDir, server.TLSDir, "ca.pem"))
	if err != nil {
		return nil, fmt.Errorf("dev login: %w", err)
	}
	path, err := saveLogin(addr, login{Token: strings.TrimSpace(string(token)), CA: string(caPEM)})
	if err != nil {
		return nil, fmt.Errorf("dev login: %w", err)
	}
	fmt.Fprintf(c.App.Writer, "hodei: logged you in to %s as admin (%s)\n", addr, path)
	return a, nil
}

// loopbackOf is addr with an unspecified host (listening on every
// interface) replaced by 127.0.0.1, the address to dial it on this host.
func loopbackOf(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}
