package cli

import (
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/server"
)

// configCommand is `hodei config print serve|agent`: the effective settings
// of a long-running command and where each came from.
func configCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:  "config",
		Usage: "show the settings serve or agent would run with",
		Subcommands: []*ucli.Command{{
			Name:      "print",
			Usage:     "print every setting of serve or agent and where it came from",
			UsageText: "hodei config print serve|agent [--config FILE] [-o json] [FLAGS…]",
			Description: "Resolves the settings exactly as `hodei serve` or `hodei agent` would with the same\n" +
				"command line and environment: a flag wins over its HODEI_* variable, which wins over the\n" +
				"config file (--config, HODEI_CONFIG, else " + DefaultConfigDir + "/serve.yaml or agent.yaml when it exists),\n" +
				"which wins over the default. SOURCE says which: flag, env NAME, FILE:LINE or default.\n" +
				"A default derived from other settings (lease, secrets-key, snapshot-dir, slots) shows the value\n" +
				"it comes to, then its rule in parentheses.\n" +
				"Secrets (agent --join) show as ***. Nothing is started.",
			SkipFlagParsing: true, // the rest is serve's or agent's command line
			Action:          func(c *ucli.Context) error { return configPrint(c, e) },
		}},
	}
}

// configPrint runs serve's or agent's own flag parsing and config file
// (fileFlags.before) with an action that prints the settings instead of
// starting anything: one code path for both.
func configPrint(c *ucli.Context, e *env) error {
	argv := c.Args().Slice()
	if len(argv) == 0 {
		return usagef(c, "missing serve or agent: the command whose settings to print")
	}
	var cmd *ucli.Command
	switch argv[0] {
	case "serve":
		cmd = serveCommand(e)
	case "agent":
		cmd = agentCommand(e)
	case "-h", "--help", "help":
		return ucli.ShowSubcommandHelp(c)
	default:
		return usagef(c, "%q: print the settings of serve or agent", argv[0])
	}
	rest, format, err := cutOutputFlag(c, argv[1:])
	if err != nil {
		return err
	}
	if format == "" {
		format = globalString(c, flagOutput)
	}
	if format != "table" && format != "json" && format != "" {
		return usagef(c, "--output: %q is not a format; use table or json", format)
	}
	cmd.Action = func(cc *ucli.Context) error {
		settings := fileFlagsOf(cc).settings(cc)
		effective(argv[0], settings)
		if format == "json" {
			return writeJSON(cc.App.Writer, settings)
		}
		return printSettings(cc.App.Writer, settings)
	}
	cmd.OnUsageError = onUsageError
	app := newApp(e)
	app.Commands = []*ucli.Command{cmd}
	app.Writer, app.ErrWriter = c.App.Writer, c.App.ErrWriter
	return app.RunContext(c.Context, append([]string{c.App.Name, argv[0]}, rest...))
}

// cutOutputFlag takes -o/--output out of args (serve and agent have no
// such flag) and returns the rest and its value, or "".
func cutOutputFlag(c *ucli.Context, args []string) ([]string, string, error) {
	var rest []string
	format := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || (name != "o" && name != flagOutput) {
			rest = append(rest, a)
			continue
		}
		if !hasValue {
			if i+1 == len(args) {
				return nil, "", usagef(c, "%s: needs a value", a)
			}
			i++
			value = args[i]
		}
		format = value
	}
	return rest, format, nil
}

// effective replaces the defaults of cmd's settings that stand for a value
// derived from others (--lease 0: 3 × heartbeat + 5s; --secrets-key ”:
// DATA-DIR/secrets.key) with the value serve or agent runs with, as they
// derive it; the setting's note still says the rule.
func effective(cmd string, settings []setting) {
	byName := make(map[string]*setting, len(settings))
	for i := range settings {
		byName[settings[i].Name] = &settings[i]
	}
	str := func(name string) string { s, _ := byName[name].Value.(string); return s }
	type rule struct {
		value func() any
		note  string // when the flag has no DefaultText saying the rule
	}
	derive := map[string]rule{
		"slots": {value: func() any { return int64(runtime.NumCPU()) }},
	}
	if cmd == "serve" {
		derive["lease"] = rule{value: func() any {
			hb, err := time.ParseDuration(str("heartbeat"))
			if err != nil || hb <= 0 {
				hb = cluster.DefaultHeartbeat
			}
			return (3*hb + cluster.DefaultLeaseGrace).String()
		}}
		derive["secrets-key"] = rule{value: func() any { return filepath.Join(str("data-dir"), server.SecretsKeyName) },
			note: "DATA-DIR/" + server.SecretsKeyName}
		derive["snapshot-dir"] = rule{value: func() any { return filepath.Join(str("data-dir"), server.SnapshotsDir) }}
	}
	for name, r := range derive {
		s := byName[name]
		if s == nil || s.Source != "default" {
			continue
		}
		switch v := s.Value.(type) {
		case string:
			if v == "" || v == "0s" {
				s.Value = r.value()
			}
		case int64:
			if v == 0 {
				s.Value = r.value()
			}
		}
		if s.note == "" {
			s.note = r.note
		}
	}
}

// printSettings writes settings as a table: NAME, VALUE, SOURCE.
func printSettings(w io.Writer, settings []setting) error {
	t := newTable(w, "NAME", "VALUE", "SOURCE")
	for _, s := range settings {
		v := fmt.Sprint(s.Value)
		switch x := s.Value.(type) {
		case []string:
			v = strings.Join(x, ",")
		}
		switch {
		case s.Source != "default" || s.note == "":
		case s.Name == configFlagName:
			v = s.note
		case v == "":
			v = "(" + s.note + ")"
		default:
			v = fmt.Sprintf("%s (%s)", v, s.note)
		}
		t.row(s.Name, v, s.Source)
	}
	return t.flush()
}
