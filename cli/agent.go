package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/agent"
	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/job"
)

// agentCommand is `hodei agent`: run the jobs a server assigns to this host.
func agentCommand(e *env) *ucli.Command {
	return withConfigFile(&ucli.Command{
		Name:  "agent",
		Usage: "run jobs on this host for a server",
		Description: "Dials the server, registers this host with its labels and capacity, and runs each\n" +
			"assigned job in a PTY in its own process group, streaming the output back.\n" +
			"The worker id is kept in DATA-DIR/worker-id, and the client certificate it gets by joining\n" +
			"in DATA-DIR/tls: start it once with --join TOKEN --ca-fingerprint sha256:… (hodei token create\n" +
			"--role agent prints the line); later starts need neither.\n\n" +
			"Jobs run under a supervisor process (one per data dir) that outlives the agent: on SIGTERM the\n" +
			"agent tells the server and leaves them running (or, with --drain-on-stop, waits for them), and the\n" +
			"next agent on the same --data-dir, of this or a newer version, reattaches them and delivers their\n" +
			"output and results.\n\n" +
			"Run as root, the agent runs each job as its tenant's --run-as user, else as --default-user;\n" +
			"as root only for a tenant set with --run-as root, and only with --allow-root. Run as\n" +
			"another user, it runs jobs as itself and fails those of tenants that name another user.\n\n" +
			"Every flag may also come from its HODEI_* variable (shown after it) or from the YAML file\n" +
			"--config (default " + DefaultConfigDir + "/agent.yaml when it exists), by the flag's name: 'server: srv:7070';\n" +
			"a flag wins over its variable, which wins over the file. 'hodei config print agent' shows what applies.\n" +
			"Under systemd (Type=notify) it reports READY once a server first welcomed it, STOPPING when it\n" +
			"stops, and WATCHDOG pings while its connection loop runs.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "server", Value: client.DefaultAddr, EnvVars: []string{"HODEI_SERVER", "HODEI_ADDR"}, Usage: "gRPC address of the server, `HOST[:PORT]` (port 7070 if left out)"},
			&ucli.StringFlag{Name: "data-dir", Value: "./hodei-agent", EnvVars: []string{"HODEI_AGENT_DIR", "HODEI_DATA_DIR"}, Usage: "`DIR` for the worker id, journal and spooled output"},
			&ucli.Int64Flag{Name: "slots", DefaultText: "the number of CPUs", Usage: "`N` job slots this host offers"},
			&ucli.StringFlag{Name: "labels", Usage: "comma-separated `k=v,…` that job selectors match, over the agent's own " + devLabelsText},
			&ucli.StringFlag{Name: "name", Usage: "`NAME` shown in 'hodei workers ls' (default: the hostname)"},
			&ucli.Int64Flag{Name: "buffer", Value: agent.DefaultBufferLimit, Usage: "`BYTES` of unacknowledged output per job before its PTY is no longer read"},
			&ucli.DurationFlag{Name: "kill-grace", Value: agent.DefaultKillGrace,
				Usage: "`DURATION` between SIGTERM and SIGKILL when this agent stops a job on its own: at the job's --timeout, and when the agent shuts down " +
					"(a stop the server orders, as a cancel, carries serve's --kill-grace)"},
			&ucli.StringFlag{Name: "default-user", Value: agent.DefaultUser, Usage: "`USER` (name or uid) jobs run as when the agent runs as root and their tenant names none; not root. " +
				"\"dynamic\": each such tenant runs as a uid of its own, so tenants cannot see into each other's processes"},
			&ucli.BoolFlag{Name: "allow-root", Usage: "run the jobs of tenants set with --run-as root as root (when the agent runs as root)"},
			&ucli.StringFlag{Name: "log-level", Value: "info", Usage: "`LEVEL`: debug, info, warn or error"},
			&ucli.StringFlag{Name: "join", EnvVars: []string{"HODEI_JOIN", "HODEI_JOIN_TOKEN"}, Usage: "agent `TOKEN` to join the cluster with, on first start"},
			&ucli.StringFlag{Name: "ca-fingerprint", Usage: "`sha256:HEX` of the cluster CA, pinned on first contact (the server logs it)"},
			&ucli.BoolFlag{Name: "insecure-no-auth", Usage: "connect without TLS to a server run with --insecure-no-auth (loopback only)"},
			&ucli.DurationFlag{Name: "drain-on-stop", Usage: "on SIGTERM, take no new jobs, wait up to `DURATION` for the running ones to end and be delivered, " +
				"then stop the rest with --kill-grace; without it (0) the agent detaches on SIGTERM and its jobs keep running, to be reattached by the next agent on this --data-dir"},
		},
		HideHelpCommand: true,
		Subcommands: []*ucli.Command{{
			Name:   "supervise",
			Hidden: true,
			Usage:  "hold the jobs of an agent's data dir (the agent starts it)",
			Flags:  []ucli.Flag{&ucli.StringFlag{Name: "data-dir", Required: true, Usage: "the agent's `DIR`"}},
			Action: func(c *ucli.Context) error {
				return agent.Supervise(c.String("data-dir"), Version)
			},
		}},
		Action: func(c *ucli.Context) error {
			labels, err := parseLabelList(c.String("labels"))
			if err != nil {
				return usagef(c, "--labels: %s", err)
			}
			labels = hostLabels(labels)
			if n := c.Int64("slots"); n < 0 || n > job.MaxWorkerSlots {
				return usagef(c, "--slots: %d must be between 1 and %d (0: the number of CPUs)", n, job.MaxWorkerSlots)
			}
			if c.Int64("buffer") < 4096 {
				return usagef(c, "--buffer: %d must be at least 4096", c.Int64("buffer"))
			}
			if c.Duration("kill-grace") < 0 {
				return usagef(c, "--kill-grace: must not be negative")
			}
			if c.Duration("drain-on-stop") < 0 {
				return usagef(c, "--drain-on-stop: %s must not be negative (0: detach on SIGTERM, leaving the jobs running)", c.Duration("drain-on-stop"))
			}
			onStop := agent.Detach
			if c.Duration("drain-on-stop") > 0 {
				onStop = agent.Drain
			}
			logger, err := newLogger(c)
			if err != nil {
				return err
			}
			server := withDefaultPort(c.String("server"))
			if err := checkHostPort(c, "server", server, 1); err != nil {
				return err
			}
			lines := &connectLines{w: c.App.Writer, server: server, labels: labels}
			notify := newSDNotifier(logger)
			onConnect := func(ev agent.ConnectEvent) {
				lines.event(ev)
				if ev.Connected {
					notify.Ready() // registered: the first welcome
				}
			}
			a, err := agent.New(agent.Config{
				Server: server, DataDir: c.String("data-dir"), Name: c.String("name"), OnConnect: onConnect,
				Slots: c.Int64("slots"), Labels: labels, BufferLimit: c.Int64("buffer"),
				KillGrace: c.Duration("kill-grace"), Version: Version, Logger: logger,
				Join: c.String("join"), CAFingerprint: c.String("ca-fingerprint"), Insecure: c.Bool("insecure-no-auth"),
				DefaultUser: c.String("default-user"), AllowRoot: c.Bool("allow-root"),
				OnStop: onStop, DrainTimeout: c.Duration("drain-on-stop"),
			})
			if _, ok := errors.AsType[*job.FieldError](err); ok {
				return fieldUsage(c, err) // its fields are this command's flags
			}
			if err != nil {
				return err
			}
			lines.agent = a
			fmt.Fprintf(c.App.Writer, "hodei: agent %s connecting to %s\n", a.ID(), server)
			// Watchdog pings while the session (or reconnect) loop answers;
			// STOPPING=1 on the signal.
			stopNotify := notify.watch(c.Context, a.Alive, false)
			err = a.Run(c.Context)
			stopNotify()
			if err != nil {
				return err
			}
			return &exitStatus{code: exitOK}
		},
	}, &fileFlags{file: "agent.yaml", dir: e.configDir, lists: map[string]bool{"labels": true}, secrets: map[string]bool{"join": true}})
}

// connectLines prints an agent's connection as it goes, one line per
// event the agent reports (it leaves out most retries of a server that
// stays away): "connected" only once a server welcomed it.
type connectLines struct {
	w      io.Writer
	server string
	labels map[string]string
	agent  *agent.Agent // set once made; events come only from its Run
	// connected, when not nil, runs after the first welcome.
	connected func()
}

func (l *connectLines) event(ev agent.ConnectEvent) {
	a := l.agent
	switch {
	case ev.Connected && !ev.Welcomed:
		labels := pairs(l.labels)
		if labels == "" {
			labels = "none"
		}
		fmt.Fprintf(l.w, "hodei: agent %s connected to %s as %s: %d slots, labels %s\n", a.ID(), l.server, a.Name(), a.Slots(), labels)
		if l.connected != nil {
			l.connected()
		}
	case ev.Connected:
		fmt.Fprintf(l.w, "hodei: agent %s connected to %s again\n", a.ID(), l.server)
	case ev.Welcomed && ev.Failures == 1:
		fmt.Fprintf(l.w, "hodei: agent %s lost %s (%s); reconnecting, its jobs keep running\n",
			a.ID(), l.server, dialFailure(status.Convert(ev.Err).Message()))
	default:
		fmt.Fprintf(l.w, "hodei: agent %s cannot reach %s yet (%s, %s); retrying in %s\n",
			a.ID(), l.server, dialFailure(status.Convert(ev.Err).Message()), attempts(ev.Failures), ev.Retry.Round(100*time.Millisecond))
	}
}

// attempts is "1 attempt", "2 attempts".
func attempts(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

// parseLabelList reads "k=v,k2=v2".
func parseLabelList(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := make(map[string]string)
	for _, kv := range strings.Split(s, ",") {
		k, v, err := job.ParseLabel("labels", strings.TrimSpace(kv))
		if err != nil {
			return nil, fmt.Errorf("%q: want k=v pairs separated by commas", kv)
		}
		out[k] = v
	}
	return out, nil
}

// newLogger builds the text logger of the long-running commands.
func newLogger(c *ucli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usagef(c, "--log-level: %q is not a level; use debug, info, warn or error", c.String("log-level"))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}

// hostLabels returns the labels of an agent on this host: os=GOOS and
// arch=GOARCH (as Nomad fingerprints kernel.name and cpu.arch), then
// labels over them.
func hostLabels(labels map[string]string) map[string]string {
	all := map[string]string{"os": runtime.GOOS, "arch": runtime.GOARCH}
	maps.Copy(all, labels)
	return all
}
