package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/server"
)

// configEnv is a test env whose default config dir is dir.
func configEnv(dir string) *env {
	return &env{now: func() time.Time { return testNow }, stdin: strings.NewReader(""), configDir: dir}
}

// runIn runs `hodei args…` in-process with dir as the default config dir.
func runIn(t *testing.T, dir string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), append([]string{"hodei"}, args...), &stdout, &stderr, configEnv(dir))
	return result{stdout.String(), stderr.String(), code}
}

// printed runs `hodei config print args…` with -o json and returns the
// settings by name.
func printed(t *testing.T, dir string, args ...string) map[string]setting {
	t.Helper()
	r := runIn(t, dir, append([]string{"config", "print"}, append(args, "-o", "json")...)...)
	r.wantOK(t)
	var list []setting
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("config print output: %v\n%s", err, r.stdout)
	}
	out := make(map[string]setting)
	for _, s := range list {
		out[s.Name] = s
	}
	return out
}

func writeConfig(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigPrecedence(t *testing.T) {
	type want struct{ name, value, source string }
	for _, tc := range []struct {
		name string
		cmd  string
		file string            // written to DIR/serve.yaml or agent.yaml, the default path, when not ""
		env  map[string]string // FILE in a value is the file's path
		args []string
		want []want
	}{
		{name: "Default", cmd: "serve",
			want: []want{{"data-dir", "./hodei-data", "default"}, {"config", "", "default"}, {"heartbeat", "5s", "default"}}},
		{name: "File", cmd: "serve", file: "# comment\ndata-dir: /srv/hodei\nheartbeat: 7s\nmax-streams-per-token: 9\npreemption: true\n",
			want: []want{{"data-dir", "/srv/hodei", "FILE:2"}, {"heartbeat", "7s", "FILE:3"},
				{"max-streams-per-token", "9", "FILE:4"}, {"preemption", "true", "FILE:5"}, {"config", "FILE", "default"}}},
		{name: "EnvOverFile", cmd: "serve", file: "data-dir: /srv/hodei\nheartbeat: 7s\n",
			env:  map[string]string{"HODEI_DATA_DIR": "/env/hodei"},
			want: []want{{"data-dir", "/env/hodei", "env HODEI_DATA_DIR"}, {"heartbeat", "7s", "FILE:2"}}},
		{name: "FlagOverEnv", cmd: "serve", file: "data-dir: /srv/hodei\n",
			env:  map[string]string{"HODEI_DATA_DIR": "/env/hodei", "HODEI_HEARTBEAT": "3s"},
			args: []string{"--data-dir", "/flag/hodei"},
			want: []want{{"data-dir", "/flag/hodei", "flag"}, {"heartbeat", "3s", "env HODEI_HEARTBEAT"}}},
		{name: "EmptyEnvIsUnset", cmd: "serve", file: "data-dir: /srv/hodei\nheartbeat: 7s\n",
			env:  map[string]string{"HODEI_HEARTBEAT": "", "HODEI_DATA_DIR": ""},
			want: []want{{"data-dir", "/srv/hodei", "FILE:1"}, {"heartbeat", "7s", "FILE:2"}}},
		{name: "EnvNamesFile", cmd: "serve",
			env:  map[string]string{"HODEI_CONFIG": "FILE.other"},
			want: []want{{"config", "FILE.other", "env HODEI_CONFIG"}, {"data-dir", "/other", "FILE.other:1"}}},
		{name: "EmptyConfigReadsNone", cmd: "serve", file: "data-dir: /srv/hodei\n", args: []string{"--config", ""},
			want: []want{{"data-dir", "./hodei-data", "default"}}},
		{name: "Lists", cmd: "serve", file: "tls-san:\n  - a.example\n  - 10.0.0.5\nlabels: [gpu=a100]\ndev: true\n",
			want: []want{{"tls-san", "a.example,10.0.0.5", "FILE:1"}, {"labels", "gpu=a100", "FILE:4"}}},
		{name: "AgentMappingAndSecret", cmd: "agent",
			file: "server: srv:7070\nlabels:\n  rack: r1\n  gpu: a100\njoin: eyJsecret\nslots: 4\n",
			want: []want{{"server", "srv:7070", "FILE:1"}, {"labels", "rack=r1,gpu=a100", "FILE:2"},
				{"join", "***", "FILE:5"}, {"slots", "4", "FILE:6"}}},
		{name: "AgentLegacyEnv", cmd: "agent", env: map[string]string{"HODEI_ADDR": "old:1", "HODEI_JOIN_TOKEN": "tok"},
			want: []want{{"server", "old:1", "env HODEI_ADDR"}, {"join", "***", "env HODEI_JOIN_TOKEN"}}},
		{name: "AgentRuleEnvFirst", cmd: "agent", env: map[string]string{"HODEI_ADDR": "old:1", "HODEI_SERVER": "new:1"},
			want: []want{{"server", "new:1", "env HODEI_SERVER"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tc.cmd+".yaml")
			if tc.file != "" {
				writeConfig(t, path, tc.file)
			}
			writeConfig(t, path+".other", "data-dir: /other\n")
			for k, v := range tc.env {
				t.Setenv(k, strings.ReplaceAll(v, "FILE", path))
			}
			got := printed(t, dir, append([]string{tc.cmd}, tc.args...)...)
			for _, w := range tc.want {
				s, ok := got[w.name]
				if !ok {
					t.Errorf("%s: not printed", w.name)
					continue
				}
				value := s.Value
				if l, ok := value.([]any); ok {
					var parts []string
					for _, p := range l {
						parts = append(parts, p.(string))
					}
					value = strings.Join(parts, ",")
				}
				wantValue := strings.ReplaceAll(w.value, "FILE", path)
				if v, _ := json.Marshal(value); strings.Trim(string(v), `"`) != wantValue {
					t.Errorf("%s = %v, want %s", w.name, value, wantValue)
				}
				if wantSource := strings.ReplaceAll(w.source, "FILE", path); s.Source != wantSource {
					t.Errorf("%s source = %q, want %q", w.name, s.Source, wantSource)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  string
		file string // "DIR": a directory; "": no file
		args []string
		want string // FILE is the file's path
		// valueOnly: a value of the right type that the command refuses;
		// config print shows it as it is.
		valueOnly bool
	}{
		{name: "UnknownKeySuggests", cmd: "serve", file: "heartbeat: 5s\ndata_dir: /x\n",
			want: `FILE:2: unknown key "data_dir"; did you mean "data-dir"?`},
		{name: "UnknownKeyLists", cmd: "agent", file: "\n\nfrobnicate: 1\n",
			want: `FILE:3: unknown key "frobnicate" (allowed: allow-root, buffer, ca-fingerprint, data-dir, default-user, drain-on-stop, insecure-no-auth, join, kill-grace, labels, log-level, name, server, slots)`},
		{name: "ConfigInFile", cmd: "serve", file: "config: /etc/x.yaml\n",
			want: `FILE:1: unknown key "config": name the file with --config or HODEI_CONFIG, not in a file`},
		{name: "BadDuration", cmd: "serve", file: "heartbeat: 5\n",
			want: `FILE:1: heartbeat: want a duration (300ms, 90s, 1h30m), not "5"`},
		{name: "BadBool", cmd: "serve", file: "data-dir: /x\npreemption: maybe\n",
			want: `FILE:2: preemption: want true or false, not "maybe"`},
		{name: "BadInt", cmd: "agent", file: "slots: many\n",
			want: `FILE:1: slots: want a whole number, not "many"`},
		{name: "ListForString", cmd: "serve", file: "data-dir:\n  - /a\n  - /b\n",
			want: `FILE:2: data-dir: want a string, not a list`},
		{name: "NoValue", cmd: "serve", file: "data-dir:\n",
			want: `FILE:1: data-dir: has no value (leave the key out for the default)`},
		{name: "Duplicate", cmd: "serve", file: "data-dir: /a\nheartbeat: 1s\ndata-dir: /b\n",
			want: `FILE:3: data-dir: set twice (first on line 1)`},
		{name: "NotAMapping", cmd: "serve", file: "- data-dir\n",
			want: `FILE:1: want one 'flag-name: value' a line (data-dir: /var/lib/hodei), not a list`},
		{name: "BadSyntax", cmd: "serve", file: "data-dir: /a\n  heartbeat: : 5s\n",
			want: `FILE:2: mapping values are not allowed in this context`},
		{name: "BadSyntaxLine1", cmd: "serve", file: "a: b: c\nheartbeat: 5s\n",
			want: `FILE:1: mapping values are not allowed in this context`},
		{name: "BadSyntaxTabLine1", cmd: "agent", file: "\tserver: a\n",
			want: `FILE:1: found character that cannot start any token`},
		{name: "NotUTF8", cmd: "serve", file: "data-dir: /x\nheartbeat: \xff\n",
			want: `FILE:2: invalid leading UTF-8 octet`},
		{name: "UnknownAlias", cmd: "serve", file: "data-dir: /x\n\nheartbeat: *nope\n",
			want: `FILE:3: unknown anchor 'nope' referenced`},
		{name: "BadSyntaxTab", cmd: "agent", file: "server: a\n\tslots: 2\n",
			want: `FILE:2: found a tab character that violates indentation`},
		{name: "ValueRefused", cmd: "serve", file: "data-dir: /x\nheartbeat: -5s\n",
			want: `FILE:2: heartbeat: must not be negative`, valueOnly: true},
		{name: "AgentValueRefused", cmd: "agent", file: "server: s\nbuffer: 10\n",
			want: `FILE:2: buffer: 10 must be at least 4096`, valueOnly: true},
		{name: "ListenPortOutOfRange", cmd: "serve", file: "data-dir: /x\ngrpc-addr: 127.0.0.1:99999\n",
			want: `FILE:2: grpc-addr: "127.0.0.1:99999": the port must be a number from 0 to 65535`, valueOnly: true},
		{name: "ListenNoPort", cmd: "serve", file: "http-addr: localhost\n",
			want: `FILE:1: http-addr: "localhost" is not HOST:PORT (127.0.0.1:7070, say)`, valueOnly: true},
		{name: "AgentServerPort", cmd: "agent", file: "server: srv:0\n",
			want: `FILE:1: server: "srv:0": the port must be a number from 1 to 65535`, valueOnly: true},
		{name: "MissingNamedFile", cmd: "serve", args: []string{"--config", "FILE.missing"},
			want: `--config: stat FILE.missing: no such file or directory`},
		{name: "UnreadableFile", cmd: "agent", file: "DIR", args: []string{"--config", "FILE"},
			want: `--config: FILE: not a regular file but a directory`},
		{name: "UnreadableDefaultFile", cmd: "serve", file: "DIR",
			want: `FILE: not a regular file but a directory`},
		{name: "NamedPipe", cmd: "serve", file: "FIFO", args: []string{"--config", "FILE"},
			want: `--config: FILE: not a regular file but a named pipe`},
		{name: "Device", cmd: "serve", args: []string{"--config", "/dev/zero"},
			want: `--config: /dev/zero: not a regular file but a device`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tc.cmd+".yaml")
			switch tc.file {
			case "":
			case "DIR":
				if err := os.Mkdir(path, 0o755); err != nil {
					t.Fatal(err)
				}
			case "FIFO": // reading one would block for ever
				if err := syscall.Mkfifo(path, 0o600); err != nil {
					t.Fatal(err)
				}
			default:
				writeConfig(t, path, tc.file)
			}
			var args []string
			for _, a := range tc.args {
				args = append(args, strings.ReplaceAll(a, "FILE", path))
			}
			want := "hodei: " + strings.ReplaceAll(tc.want, "FILE", path) + "\n"
			// The command itself and config print fail alike, before
			// anything starts.
			argvs := [][]string{append([]string{tc.cmd, "--data-dir", filepath.Join(dir, "data")}, args...)}
			if !tc.valueOnly {
				argvs = append(argvs, append([]string{"config", "print", tc.cmd}, args...))
			}
			for _, argv := range argvs {
				r := runIn(t, dir, argv...)
				if r.code != exitUsage || r.stderr != want || r.stdout != "" {
					t.Errorf("hodei %s: exit %d, stdout %q, stderr:\n%s\nwant exit 2 and\n%s", strings.Join(argv, " "), r.code, r.stdout, r.stderr, want)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
				t.Errorf("the data dir was made despite the bad config")
			}
		})
	}
}

// TestConfigPrintIsWhatServeUses resolves one file, environment and
// command line through config print and through serve's own
// configuration, and compares them.
func TestConfigPrintIsWhatServeUses(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, filepath.Join(dir, "serve.yaml"), "data-dir: /srv/hodei\nheartbeat: 7s\nhttp-addr: '-'\n"+
		"max-streams-per-token: 9\npreemption: true\ntls-san: [a.example, b.example]\nworker-gc: 2h\nlog-level: warn\n")
	t.Setenv("HODEI_HEARTBEAT", "3s")
	t.Setenv("HODEI_GRPC_ADDR", "127.0.0.1:9999")
	args := []string{"--grpc-addr", "127.0.0.1:0", "--aging", "30m"}

	cmd := serveCommand(configEnv(dir))
	var cfg server.Config
	cmd.Action = func(c *ucli.Context) (err error) {
		cfg, err = serveConfig(c)
		return err
	}
	app := newApp(configEnv(dir))
	app.Commands = []*ucli.Command{cmd}
	if err := app.RunContext(context.Background(), append([]string{"hodei", "serve"}, args...)); err != nil {
		t.Fatal(err)
	}

	got := printed(t, dir, append([]string{"serve"}, args...)...)
	str := func(name string) string {
		b, _ := json.Marshal(got[name].Value)
		return strings.Trim(string(b), `"`)
	}
	for _, c := range []struct{ name, print, serve string }{
		{"data-dir", str("data-dir"), cfg.DataDir},
		{"grpc-addr", str("grpc-addr"), cfg.GRPCAddr},
		{"http-addr", str("http-addr"), cfg.HTTPAddr},
		{"heartbeat", str("heartbeat"), cfg.Heartbeat.String()},
		{"aging", str("aging"), cfg.Aging.String()},
		{"worker-gc", str("worker-gc"), cfg.WorkerGC.String()},
		{"max-streams-per-token", str("max-streams-per-token"), jsonText(cfg.MaxStreamsPerToken)},
		{"preemption", str("preemption"), jsonText(cfg.Preemption)},
		{"tls-san", str("tls-san"), jsonText(cfg.TLSHosts)},
	} {
		if c.print != c.serve {
			t.Errorf("%s: config print says %s, serve uses %s", c.name, c.print, c.serve)
		}
	}
	// And the sources: each layer where it was meant to win.
	for name, src := range map[string]string{"grpc-addr": "flag", "heartbeat": "env HODEI_HEARTBEAT",
		"data-dir": filepath.Join(dir, "serve.yaml") + ":1", "placement": "default"} {
		if got[name].Source != src {
			t.Errorf("%s source %q, want %q", name, got[name].Source, src)
		}
	}
	if cfg.DataDir != "/srv/hodei" || cfg.Heartbeat != 3*time.Second || cfg.GRPCAddr != "127.0.0.1:0" ||
		!slices.Equal(cfg.TLSHosts, []string{"a.example", "b.example"}) {
		t.Errorf("serve config %+v", cfg)
	}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}

func TestConfigPrintTable(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, filepath.Join(dir, "agent.yaml"), "server: srv:7070\njoin: eyJsecret\n")
	r := runIn(t, dir, "config", "print", "agent", "--name", "n1")
	r.wantOK(t)
	file := filepath.Join(dir, "agent.yaml")
	for _, want := range []string{
		"NAME ", "VALUE ", "SOURCE\n",
		"config ", file + " ", "default\n",
		"server ", "srv:7070 ", file + ":1\n",
		"join ", "*** ", file + ":2\n",
		"name ", "n1 ", "flag\n",
		"slots ", strconv.Itoa(runtime.NumCPU()) + " (the number of CPUs) ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "eyJsecret") {
		t.Errorf("the join token is printed:\n%s", r.stdout)
	}
	for _, bad := range [][]string{{"config", "print"}, {"config", "print", "submit"}, {"config", "print", "serve", "-o", "yaml"}} {
		if r := runIn(t, dir, bad...); r.code != exitUsage {
			t.Errorf("hodei %s: exit %d, want 2; stderr %s", strings.Join(bad, " "), r.code, r.stderr)
		}
	}
}

// TestConfigEveryFlagHasItsVariable: one rule, HODEI_ and the flag's name
// in upper case with - as _, for every flag of serve and agent.
func TestConfigEveryFlagHasItsVariable(t *testing.T) {
	for _, cmd := range []*ucli.Command{serveCommand(configEnv("")), agentCommand(configEnv(""))} {
		for _, f := range cmd.Flags {
			name := f.Names()[0]
			ev, ok := f.(interface{ GetEnvVars() []string })
			if !ok || !slices.Contains(ev.GetEnvVars(), envName(name)) {
				t.Errorf("%s --%s: no %s", cmd.Name, name, envName(name))
			}
		}
	}
	if got := envName("max-streams-per-token"); got != "HODEI_MAX_STREAMS_PER_TOKEN" {
		t.Errorf("envName = %s", got)
	}
}

// TestConfigPrintEffectiveDefaults: a default that stands for a value
// derived from others shows the value serve runs with, then the rule, and
// an empty one never shows as " (…)".
func TestConfigPrintEffectiveDefaults(t *testing.T) {
	dir := t.TempDir()
	r := runIn(t, dir, "config", "print", "serve", "--config", "", "--data-dir", "/srv/h", "--heartbeat", "2s")
	r.wantOK(t)
	for _, want := range []string{
		"lease ", " 11s (3 × heartbeat + 5s) ",
		"secrets-key ", " /srv/h/secrets.key (DATA-DIR/secrets.key) ",
		"snapshot-dir ", " /srv/h/snapshots (DATA-DIR/snapshots) ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "  (") {
		t.Errorf("an empty value shows with a leading space:\n%s", r.stdout)
	}
	got := printed(t, dir, "serve", "--config", "", "--data-dir", "/srv/h", "--lease", "40s")
	if got["lease"].Value != "40s" || got["lease"].Source != "flag" || got["secrets-key"].Value != "/srv/h/secrets.key" {
		t.Errorf("json: lease %+v, secrets-key %+v", got["lease"], got["secrets-key"])
	}
}
