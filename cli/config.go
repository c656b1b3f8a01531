package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	"go.yaml.in/yaml/v3"
)

// DefaultConfigDir is where serve and agent look for their config file
// (serve.yaml, agent.yaml) when --config names none.
const DefaultConfigDir = "/etc/hodei"

// fileFlags lets a long-running command (serve, agent) take every flag from
// an optional YAML file too: one key per flag, by the flag's name. The file
// is --config (or HODEI_CONFIG), else DIR/FILE when it exists. Precedence:
// the command line, then the environment (each flag's HODEI_* variable),
// then the file, then the default. urfave/cli's altsrc applies the file's
// values; fileFlags checks the file first (keys, types, with file:line) and
// remembers where each value came from, for `hodei config print`.
//
// A fileFlags serves one command of one app run; it is not safe for
// concurrent use.
type fileFlags struct {
	file    string          // the default file's name in dir: serve.yaml
	dir     string          // DefaultConfigDir, or a test's
	lists   map[string]bool // string flags holding a comma-separated list: the file may give a YAML list or mapping
	secrets map[string]bool // flags whose values config print hides

	set *flag.FlagSet // the command's flag set, captured when urfave applies --config

	// Known after before:
	path    string          // the file read; "" for none
	lines   map[string]int  // flag name → line of its key in path
	cmdline map[string]bool // the flags given on the command line
}

// configFlagName is the flag that names the file.
const configFlagName = "config"

// envName is the environment variable of a serve or agent flag: HODEI_ and
// the flag's name in upper case with - as _ (--data-dir: HODEI_DATA_DIR).
func envName(flagName string) string {
	return "HODEI_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// withConfigFile returns cmd reading its flags from a config file as
// described at fileFlags: it adds --config, gives every flag its HODEI_*
// variable (kept after any it already names), and sets cmd.Before. cmd's
// flags must be of the types fileFlags knows (fileValue).
func withConfigFile(cmd *ucli.Command, ff *fileFlags) *ucli.Command {
	if ff.dir == "" {
		ff.dir = DefaultConfigDir
	}
	def := filepath.Join(ff.dir, ff.file)
	flags := []ucli.Flag{&configFlag{
		StringFlag: &ucli.StringFlag{Name: configFlagName, EnvVars: []string{envName(configFlagName)},
			DefaultText: def + " when it exists",
			Usage: "read settings from the YAML `FILE`: one 'flag-name: value' a line, lists as YAML lists, durations as 90s or 1h30m; " +
				"a flag or environment variable wins over it; '' reads none"},
		ff: ff,
	}}
	for _, f := range cmd.Flags {
		flags = append(flags, sourced(f))
	}
	cmd.Flags = flags
	cmd.Before = ff.before
	if act := cmd.Action; act != nil {
		cmd.Action = func(c *ucli.Context) error { return ff.locate(c, act(c)) }
	}
	return cmd
}

// locate turns a usage error about a flag ("--heartbeat: must not be
// negative") whose value came from the config file into one that points
// at the file's line ("FILE:LINE: heartbeat: must not be negative").
func (ff *fileFlags) locate(c *ucli.Context, err error) error {
	u, ok := errors.AsType[*usageError](err)
	if !ok || ff.path == "" {
		return err
	}
	flagName, rest, ok := strings.Cut(u.msg, ": ")
	name := strings.TrimPrefix(flagName, "--")
	if !ok || name == flagName || ff.sourceOf(c, name) != ff.fileSource(name) {
		return err
	}
	return &usageError{msg: fmt.Sprintf("%s: %s: %s", ff.fileSource(name), name, rest), err: u.err}
}

// fileSource is FILE:LINE of name's key, or "" when the file has none.
func (ff *fileFlags) fileSource(name string) string {
	if ff.lines[name] == 0 {
		return ""
	}
	return fmt.Sprintf("%s:%d", ff.path, ff.lines[name])
}

// sourceOf says where the value of the flag name came from, after before:
// "flag", "env NAME", FILE:LINE or "default".
func (ff *fileFlags) sourceOf(c *ucli.Context, name string) string {
	var envVars []string
	for _, f := range c.Command.Flags {
		if ev, ok := f.(interface{ GetEnvVars() []string }); ok && f.Names()[0] == name {
			envVars = ev.GetEnvVars()
		}
	}
	switch {
	case ff.cmdline[name]:
		return "flag"
	case setEnv(envVars) != "":
		return "env " + setEnv(envVars)
	case ff.fileSource(name) != "":
		return ff.fileSource(name)
	}
	return "default"
}

// configFlag is --config; it also captures the command's flag set, so that
// before can tell the flags given on the command line from those set by
// the environment.
type configFlag struct {
	*ucli.StringFlag
	ff *fileFlags
}

// Apply registers the flag in set and keeps set.
func (f *configFlag) Apply(set *flag.FlagSet) error {
	f.ff.set = set
	return f.StringFlag.Apply(set)
}

// sourced wraps f as the altsrc flag that takes its value from a file, and
// names its HODEI_* variable.
func sourced(f ucli.Flag) ucli.Flag {
	withEnv := func(name string, vars []string) []string {
		if slices.Contains(vars, envName(name)) {
			return vars
		}
		return append(vars, envName(name))
	}
	switch f := f.(type) {
	case *ucli.StringFlag:
		f.EnvVars = withEnv(f.Name, f.EnvVars)
		return altsrc.NewStringFlag(f)
	case *ucli.BoolFlag:
		f.EnvVars = withEnv(f.Name, f.EnvVars)
		return altsrc.NewBoolFlag(f)
	case *ucli.IntFlag:
		f.EnvVars = withEnv(f.Name, f.EnvVars)
		return altsrc.NewIntFlag(f)
	case *ucli.Int64Flag:
		f.EnvVars = withEnv(f.Name, f.EnvVars)
		return altsrc.NewInt64Flag(f)
	case *ucli.DurationFlag:
		f.EnvVars = withEnv(f.Name, f.EnvVars)
		return altsrc.NewDurationFlag(f)
	case *ucli.StringSliceFlag:
		f.EnvVars = withEnv(f.Name, f.EnvVars)
		return altsrc.NewStringSliceFlag(f)
	}
	panic(fmt.Sprintf("config file: flag %s of type %T cannot be read from a file", f.Names()[0], f))
}

// fileFlagsOf returns the fileFlags of the command c runs, or nil.
func fileFlagsOf(c *ucli.Context) *fileFlags {
	for _, f := range c.Command.Flags {
		if cf, ok := f.(*configFlag); ok {
			return cf.ff
		}
	}
	return nil
}

// before reads the config file, if any, and applies its values to the
// flags neither the command line nor the environment set. A file that is
// named but missing, unreadable or wrong is a usage error (exit 2) that
// names the file and, where it can, the line.
func (ff *fileFlags) before(c *ucli.Context) error {
	ff.cmdline = make(map[string]bool)
	if ff.set != nil {
		ff.set.Visit(func(f *flag.Flag) { ff.cmdline[f.Name] = true })
	}
	path, named := filepath.Join(ff.dir, ff.file), ""
	if c.IsSet(configFlagName) {
		path, named = c.String(configFlagName), "--"+configFlagName
		if !ff.cmdline[configFlagName] {
			named = envName(configFlagName)
		}
	}
	if path == "" {
		return nil // --config '': no file
	}
	data, err := readConfigFile(path)
	switch {
	case err != nil && named == "" && errors.Is(err, fs.ErrNotExist):
		return nil // the default file is optional
	case err != nil && named != "":
		return &usageError{msg: fmt.Sprintf("%s: %s", named, err)}
	case err != nil:
		return &usageError{msg: err.Error()}
	}
	flags := make(map[string]ucli.Flag)
	for _, f := range c.Command.Flags {
		if name := f.Names()[0]; name != "help" && name != configFlagName {
			flags[name] = f
		}
	}
	values, lines, err := ff.parse(path, data, flags)
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	ff.path, ff.lines = path, lines
	if err := altsrc.ApplyInputSourceValues(c, altsrc.NewMapInputSource(path, values), c.Command.Flags); err != nil {
		return &usageError{msg: fmt.Sprintf("%s: %s", path, err)}
	}
	return nil
}

// parse checks a config file against the command's flags and returns the
// values altsrc applies (by flag name) and the line of each key.
func (ff *fileFlags) parse(path string, data []byte, flags map[string]ucli.Flag) (map[any]any, map[string]int, error) {
	values, lines := make(map[any]any), make(map[string]int)
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, yamlError(path, data, err)
	}
	if len(doc.Content) == 0 {
		return values, lines, nil // empty, or comments only
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return values, lines, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("%s:%d: want one 'flag-name: value' a line (data-dir: /var/lib/hodei), not %s", path, root.Line, describe(root))
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		name := k.Value
		f, ok := flags[name]
		if !ok {
			return nil, nil, unknownKey(path, k.Line, name, flags)
		}
		if line, dup := lines[name]; dup {
			return nil, nil, fmt.Errorf("%s:%d: %s: set twice (first on line %d)", path, k.Line, name, line)
		}
		val, err := ff.fileValue(f, v)
		if err != nil {
			return nil, nil, fmt.Errorf("%s:%d: %s: %w", path, v.Line, name, err)
		}
		values[name], lines[name] = val, k.Line
	}
	return values, lines, nil
}

// fileValue is the value of flag f that node gives, typed as altsrc's
// MapInputSource wants it.
func (ff *fileFlags) fileValue(f ucli.Flag, v *yaml.Node) (any, error) {
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return nil, errors.New("has no value (leave the key out for the default)")
	}
	name := f.Names()[0]
	scalar := func(want string) error {
		if v.Kind != yaml.ScalarNode {
			return fmt.Errorf("want %s, not %s", want, describe(v))
		}
		return nil
	}
	switch f.(type) {
	case *altsrc.StringFlag:
		if ff.lists[name] {
			return listValue(v)
		}
		if err := scalar("a string"); err != nil {
			return nil, err
		}
		return v.Value, nil
	case *altsrc.BoolFlag:
		var b bool
		if scalar("true or false") != nil || v.Decode(&b) != nil {
			return nil, fmt.Errorf("want true or false, not %s", describe(v))
		}
		return b, nil
	case *altsrc.IntFlag:
		var n int
		if scalar("a whole number") != nil || v.Decode(&n) != nil {
			return nil, fmt.Errorf("want a whole number, not %s", describe(v))
		}
		return n, nil
	case *altsrc.Int64Flag:
		var n int64
		if scalar("a whole number") != nil || v.Decode(&n) != nil {
			return nil, fmt.Errorf("want a whole number, not %s", describe(v))
		}
		return n, nil
	case *altsrc.DurationFlag:
		if err := scalar("a duration (300ms, 90s, 1h30m)"); err != nil {
			return nil, err
		}
		d, err := time.ParseDuration(v.Value)
		if err != nil {
			return nil, fmt.Errorf("want a duration (300ms, 90s, 1h30m), not %s", describe(v))
		}
		return d, nil
	case *altsrc.StringSliceFlag:
		if v.Kind == yaml.ScalarNode {
			return []any{v.Value}, nil
		}
		if v.Kind != yaml.SequenceNode {
			return nil, fmt.Errorf("want a list of strings, not %s", describe(v))
		}
		var out []any
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("want a list of strings, not a list holding %s (line %d)", describe(e), e.Line)
			}
			out = append(out, e.Value)
		}
		return out, nil
	}
	return nil, fmt.Errorf("cannot be set in a file")
}

// listValue joins what a list flag's node holds into the flag's text:
// "k=v,k2=v2" from a string, a list of "k=v" strings or a mapping.
func listValue(v *yaml.Node) (any, error) {
	var items []string
	switch v.Kind {
	case yaml.ScalarNode:
		return v.Value, nil
	case yaml.SequenceNode:
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("want a list of k=v strings, not a list holding %s (line %d)", describe(e), e.Line)
			}
			items = append(items, e.Value)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(v.Content); i += 2 {
			k, e := v.Content[i], v.Content[i+1]
			if e.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("%s: want a string, not %s (line %d)", k.Value, describe(e), e.Line)
			}
			items = append(items, k.Value+"="+e.Value)
		}
	default:
		return nil, fmt.Errorf("want a list of k=v strings, not %s", describe(v))
	}
	return strings.Join(items, ","), nil
}

// describe names what a node holds, for an error message.
func describe(v *yaml.Node) string {
	switch v.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return describe(v.Alias)
	}
	return fmt.Sprintf("%q", v.Value)
}

// unknownKey is the error for a key that names no flag: it suggests the
// nearest flag name when one is close, else lists them all.
func unknownKey(path string, line int, key string, flags map[string]ucli.Flag) error {
	if key == configFlagName {
		return fmt.Errorf("%s:%d: unknown key %q: name the file with --config or HODEI_CONFIG, not in a file", path, line, key)
	}
	names := make([]string, 0, len(flags))
	for n := range flags {
		names = append(names, n)
	}
	slices.Sort(names)
	best, bestDist := "", len(key)/3+2
	for _, n := range names {
		if d := editDistance(strings.TrimLeft(key, "-"), n); d < bestDist {
			best, bestDist = n, d
		}
	}
	if best != "" {
		return fmt.Errorf("%s:%d: unknown key %q; did you mean %q?", path, line, key, best)
	}
	return fmt.Errorf("%s:%d: unknown key %q (allowed: %s)", path, line, key, strings.Join(names, ", "))
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// yamlLine finds the line in the YAML parser's messages ("yaml: line 3:
// did not find expected key").
var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// yamlError is a YAML syntax error in data as FILE:LINE: message. The
// parser leaves the line out of some messages: those on the first line
// (it counts from 0 and omits a 0), and those with no position (a byte
// that is not UTF-8, an unknown alias). Their line is the first one
// whose prefix of data fails with the same message.
func yamlError(path string, data []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: %s", path, m[1], m[2])
	}
	end := 0
	for line := 1; end < len(data); line++ {
		if i := bytes.IndexByte(data[end:], '\n'); i >= 0 {
			end += i + 1
		} else {
			end = len(data)
		}
		var doc yaml.Node
		perr := yaml.Unmarshal(data[:end], &doc)
		if perr == nil {
			continue
		}
		pmsg := strings.TrimPrefix(perr.Error(), "yaml: ")
		if m := yamlLine.FindStringSubmatch(pmsg); m != nil {
			pmsg = m[2]
		}
		if pmsg == msg {
			return fmt.Errorf("%s:%d: %s", path, line, msg)
		}
	}
	return fmt.Errorf("%s: %s", path, msg)
}

// setting is one effective setting of serve or agent, as config print
// shows it.
type setting struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
	// Source is where the value came from: "flag", "env HODEI_…",
	// "FILE:LINE" or "default".
	Source string `json:"source"`
	note   string // what a default of 0 means ("the number of CPUs")
}

// settings returns every setting of the command c runs, after before, in
// the order of its flags, --config first.
func (ff *fileFlags) settings(c *ucli.Context) []setting {
	var out []setting
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		if name == "help" {
			continue
		}
		s := setting{Name: name, Source: ff.sourceOf(c, name)}
		switch f := f.(type) {
		case *configFlag:
			s.Value = ff.path
			if ff.path == "" {
				s.note = "none"
			}
		case *altsrc.StringFlag:
			s.Value, s.note = c.String(name), f.DefaultText
			if ff.secrets[name] && c.String(name) != "" {
				s.Value = "***"
			}
		case *altsrc.BoolFlag:
			s.Value = c.Bool(name)
		case *altsrc.IntFlag:
			s.Value, s.note = c.Int(name), f.DefaultText
		case *altsrc.Int64Flag:
			s.Value, s.note = c.Int64(name), f.DefaultText
		case *altsrc.DurationFlag:
			s.Value, s.note = c.Duration(name).String(), f.DefaultText
		case *altsrc.StringSliceFlag:
			s.Value = nonNilSlice(c.StringSlice(name))
		}
		out = append(out, s)
	}
	return out
}

// setEnv is the first of vars set in the environment, as urfave/cli reads
// them, or "".
func setEnv(vars []string) string {
	for _, v := range vars {
		if _, ok := os.LookupEnv(v); ok {
			return v
		}
	}
	return ""
}

// checkHostPort is a usage error unless the flag name's value addr is
// HOST:PORT with a port from minPort to 65535 (HOST may be empty when
// minPort is 0: a listen address, every interface). Serve and agent check
// their addresses before anything starts, so that a bad one from the
// config file points at its line (fileFlags.locate) and exits 2, rather
// than failing when it is used.
func checkHostPort(c *ucli.Context, name, addr string, minPort int) error {
	example := "127.0.0.1:7070"
	host, port, err := net.SplitHostPort(addr)
	if err != nil || strings.Contains(host, ":") && net.ParseIP(host) == nil || strings.ContainsAny(host, " \t/@?#") {
		return usagef(c, "--%s: %q is not HOST:PORT (%s, say)", name, addr, example)
	}
	if host == "" && minPort > 0 {
		return usagef(c, "--%s: %q has no host; give HOST:PORT (%s, say)", name, addr, example)
	}
	if n, err := strconv.Atoi(port); err != nil || n < minPort || n > 65535 || strconv.Itoa(n) != port {
		return usagef(c, "--%s: %q: the port must be a number from %d to 65535", name, addr, minPort)
	}
	return nil
}

// maxConfigFile bounds a config file: one line a flag fits in far less.
const maxConfigFile = 1 << 20

// readConfigFile reads the regular file at path, of at most maxConfigFile
// bytes: a named pipe would block and /dev/zero fill memory, before any
// signal could stop them.
func readConfigFile(path string) ([]byte, error) {
	// Stat before the open: opening a named pipe blocks.
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return nil, err
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("%s: not a regular file but %s", path, fileKind(st.Mode()))
	case st.Size() > maxConfigFile:
		return nil, fmt.Errorf("%s: %d bytes, more than a config file may hold (%d)", path, st.Size(), maxConfigFile)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err == nil && len(b) > maxConfigFile {
		err = fmt.Errorf("%s: more than a config file may hold (%d bytes)", path, maxConfigFile)
	}
	return b, err
}

// fileKind names what a file that is not a regular one is.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}
