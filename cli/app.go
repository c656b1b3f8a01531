package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/client"
)

// Exit codes; see exitCode.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitInterrupted = 130
)

// env is what commands take from outside the process besides their flags
// and the app's writers.
type env struct {
	now func() time.Time // for AGE and LAST SEEN columns
	// poll is how often `pipeline run --wait` asks for the pipeline's
	// state; 0: defaultPoll.
	poll time.Duration
	// stdin is what `submit --file -` reads; nil: os.Stdin.
	stdin io.Reader
	// configDir is where serve and agent look for their default config
	// file; "": DefaultConfigDir.
	configDir string
}

// commands is the top-level command list, in help order. Each command group
// lives in its own file as a constructor func(*env) *ucli.Command; add a
// group by listing its constructor here. Commands need not set OnUsageError:
// newApp sets it on every command, so that flag errors exit 2.
func commands(e *env) []*ucli.Command {
	return []*ucli.Command{
		serveCommand(e),
		agentCommand(e),
		submitCommand(e),
		runCommand(e),
		attachCommand(e),
		jobsCommand(e),
		logsCommand(e),
		workersCommand(e),
		tenantsCommand(e),
		pipelineCommand(e),
		cronCommand(e),
		snapshotCommand(e),
		loginCommand(e),
		tokenCommand(e),
		auditCommand(e),
		usageCommand(e),
		configCommand(e),
		versionCommand(e),
		completionCommand(e),
	}
}

// App returns the hodei app, writing to os.Stdout and os.Stderr. It never
// calls os.Exit: errors come back from its Run method, and exitCode maps
// them. Most callers want Run instead.
func App() *ucli.App {
	return newApp(&env{now: time.Now})
}

func newApp(e *env) *ucli.App {
	app := &ucli.App{
		Name:      "hodei",
		HelpName:  "hodei",
		Usage:     "a job scheduler in one binary",
		Version:   Version, // --version prints buildVersion (version.go)
		Flags:     globalFlags(),
		Commands:  commands(e),
		Action:    groupAction,
		Writer:    os.Stdout,
		ErrWriter: os.Stderr,
		// Values of --label, --env … may contain commas.
		DisableSliceFlagSeparator: true,
		// The hidden --generate-bash-completion flag, which the scripts of
		// `hodei completion` run (completion.go).
		EnableBashCompletion: true,
		// Errors are printed and mapped to exit codes by Run, not by urfave.
		ExitErrHandler: func(*ucli.Context, error) {},
		OnUsageError:   onUsageError,
	}
	var walk func([]*ucli.Command)
	walk = func(cmds []*ucli.Command) {
		for _, c := range cmds {
			if c.OnUsageError == nil {
				c.OnUsageError = onUsageError
			}
			if len(c.Subcommands) > 0 && c.Action == nil {
				c.Action = groupAction
			}
			if len(c.Subcommands) == 0 && c.BashComplete == nil {
				c.BashComplete = completeLeaf
			}
			walk(c.Subcommands)
		}
	}
	walk(app.Commands)
	return app
}

// Run runs the app with args (args[0] is the program name) and returns the
// process exit code. Output goes to stdout; an error is printed to stderr as
// "hodei: <message>".
func Run(args []string, stdout, stderr io.Writer) int {
	return RunContext(context.Background(), args, stdout, stderr)
}

// RunContext is Run with a context; cancelling it (on SIGINT, say) stops the
// command, and the exit code is then 130.
func RunContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, args, stdout, stderr, &env{now: time.Now})
}

// unsetEmptyVariables makes an empty HODEI_* variable count as unset, as a
// shell user and a systemd unit (Environment=HODEI_SLOTS=) expect: set but
// empty, it would override the config file with nothing. HODEI_CONFIG is
// the exception: empty, it says to read no file, as --config ” does.
func unsetEmptyVariables() {
	for _, kv := range os.Environ() {
		if name, value, _ := strings.Cut(kv, "="); value == "" && strings.HasPrefix(name, "HODEI_") && name != envName(configFlagName) {
			os.Unsetenv(name)
		}
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, e *env) int {
	unsetEmptyVariables()
	app := newApp(e)
	app.Writer, app.ErrWriter = stdout, stderr
	if e.stdin != nil {
		app.Reader = e.stdin
	}
	if len(args) == 0 {
		args = []string{app.Name}
	}
	err := app.RunContext(ctx, args)
	code := exitCode(ctx, err)
	if msg := message(ctx, err); msg != "" {
		fmt.Fprintf(stderr, "hodei: %s\n", visible(msg, "\n\t")) // a message may quote what a job set
	}
	return code
}

// exitCode is the one mapping from a command's error to the exit code.
func exitCode(ctx context.Context, err error) int {
	var (
		usage *usageError
		exit  *exitStatus
		ucode ucli.ExitCoder
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &exit):
		return exit.code
	case ctx.Err() != nil:
		return exitInterrupted
	case errors.As(err, &usage):
		return exitUsage
	case errors.As(err, &ucode):
		// urfave's own errors ("No help topic for …") are all usage errors.
		return exitUsage
	}
	return exitFailure
}

// message is what Run prints for err, or "" for nothing.
func message(ctx context.Context, err error) string {
	var exit *exitStatus
	switch {
	case err == nil, errors.As(err, &exit):
		return ""
	case ctx.Err() != nil:
		return "interrupted"
	}
	return errorText(err)
}

// grpcStatusError is an error that carries a gRPC status, as the client's
// calls return them.
type grpcStatusError interface {
	error
	GRPCStatus() *status.Status
}

// errorText is err's text with the gRPC status it carries, if any, shown
// by its message alone: the message names the field or object at fault,
// and "rpc error: code = … desc =" would only add noise. A status wrapped
// in a message of the CLI's ("save snapshot: …") keeps that prefix.
func errorText(err error) string {
	var se grpcStatusError
	if !errors.As(err, &se) {
		return err.Error()
	}
	st := se.GRPCStatus()
	msg := st.Message()
	if msg == "" {
		msg = strings.ToLower(st.Code().String())
	}
	if full, inner := err.Error(), se.Error(); full != inner {
		return strings.Replace(full, inner, msg, 1)
	}
	return msg
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct {
	msg  string
	help string // "hodei jobs ls": where to read about the fix
	err  error  // the server's answer that told of it, if any
}

func (e *usageError) Unwrap() error { return e.err }

func (e *usageError) Error() string {
	if e.help == "" {
		return e.msg
	}
	return fmt.Sprintf("%s\nRun '%s --help' for usage.", e.msg, e.help)
}

// usagef returns a usage error for the command of c.
func usagef(c *ucli.Context, format string, args ...any) error {
	help := ""
	if c != nil && c.Command != nil {
		help = c.Command.HelpName
	}
	return &usageError{msg: fmt.Sprintf(format, args...), help: help}
}

// exitStatus ends the process with code and prints nothing: for `hodei run`,
// which exits with its job's exit code.
type exitStatus struct{ code int }

func (e *exitStatus) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// onUsageError turns urfave's flag parsing errors into usage errors with a
// message that names the flag the way the user typed it.
func onUsageError(c *ucli.Context, err error, _ bool) error {
	return usagef(c, "%s", flagErrorMessage(err.Error()))
}

// flagErrorMessage rewrites the standard flag package's messages:
// "invalid value "x" for flag -priority: parse error" (or, for a boolean
// flag, "invalid boolean value "x" for -preemptible: parse error") becomes
// "--priority: invalid value "x" (parse error)".
func flagErrorMessage(msg string) string {
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return "unknown flag " + dashes(name)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return dashes(name) + ": needs a value"
	}
	for _, f := range []struct{ prefix, sep string }{
		{"invalid value ", " for flag -"},
		{"invalid boolean value ", " for -"},
	} {
		rest, ok := strings.CutPrefix(msg, f.prefix)
		if !ok {
			continue
		}
		if i := strings.LastIndex(rest, f.sep); i >= 0 {
			value := rest[:i]
			name, reason, _ := strings.Cut(rest[i+len(f.sep):], ": ")
			return fmt.Sprintf("%s: invalid value %s (%s)", dashes(name), value, reason)
		}
	}
	return msg
}

func dashes(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// groupAction runs when a command group (or the app) is given no known
// subcommand: help for none, a usage error for an unknown one.
func groupAction(c *ucli.Context) error {
	if c.Args().Present() {
		return usagef(c, "unknown command %q", c.Args().First())
	}
	if c.Command == nil || c.Command.HelpName == c.App.HelpName {
		return ucli.ShowAppHelp(c)
	}
	return ucli.ShowSubcommandHelp(c)
}

// ---- global flags ----

const (
	flagAddr   = "addr"
	flagToken  = "token"
	flagOutput = "output"
)

// globalFlags are the app's flags. Client commands repeat them (clientFlags,
// outputFlag) so that they may follow the command too.
func globalFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: flagAddr, Value: client.DefaultAddr, EnvVars: []string{"HODEI_ADDR"},
			Usage: "gRPC address of the hodei server, `HOST[:PORT]` (port 7070 if left out)"},
		&ucli.StringFlag{Name: flagToken, EnvVars: []string{"HODEI_TOKEN"},
			Usage: "bearer `TOKEN` sent to the server (prefer HODEI_TOKEN or hodei login: flags show in ps)"},
		&ucli.StringFlag{Name: flagCAFile, EnvVars: []string{"HODEI_CA_FILE"},
			Usage: "verify the server against the CA certificate in `FILE` (default: the one stored by hodei login)"},
		&ucli.StringFlag{Name: flagOutput, Aliases: []string{"o"}, Value: "table",
			Usage: "output `FORMAT`: table or json"},
	}
}

// clientFlags are the connection flags, repeated on each client command.
// They carry no EnvVars: the environment is read once, by the app's copy,
// so that a flag before the command still beats it.
func clientFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: flagAddr, Value: client.DefaultAddr,
			Usage: "gRPC address of the hodei server, `HOST[:PORT]` (port 7070 if left out; env HODEI_ADDR)"},
		&ucli.StringFlag{Name: flagToken,
			Usage: "bearer `TOKEN` sent to the server (env HODEI_TOKEN)"},
		&ucli.StringFlag{Name: flagCAFile,
			Usage: "verify the server against the CA certificate in `FILE` (env HODEI_CA_FILE)"},
	}
}

// outputFlag is --output/-o, repeated on each command that prints a result.
func outputFlag() ucli.Flag {
	return &ucli.StringFlag{Name: flagOutput, Aliases: []string{"o"}, Value: "table",
		Usage: "output `FORMAT`: table or json"}
}

// withFlags returns own followed by the client flags and, if output, --output.
func withFlags(output bool, own ...ucli.Flag) []ucli.Flag {
	flags := slices.Concat(own, clientFlags())
	if output {
		flags = append(flags, outputFlag())
	}
	return flags
}

// globalString resolves a flag defined both on the app and on commands: the
// innermost command line that set it wins; otherwise the app's value, which
// holds the environment variable or the default.
func globalString(c *ucli.Context, name string) string {
	var outer *ucli.Context
	for _, cc := range c.Lineage() {
		if cc.Command == nil || !defines(cc.Command.Flags, name) {
			continue
		}
		if cc.IsSet(name) {
			return cc.String(name)
		}
		outer = cc
	}
	if outer == nil {
		return ""
	}
	return outer.String(name)
}

func defines(flags []ucli.Flag, name string) bool {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// jsonOutput reports whether the user asked for --output json.
func jsonOutput(c *ucli.Context) (bool, error) {
	switch f := globalString(c, flagOutput); f {
	case "table", "":
		return false, nil
	case "json":
		return true, nil
	default:
		return false, usagef(c, "--output: %q is not a format; use table or json", f)
	}
}

// withClient dials the server named by the global flags, runs fn and closes
// the connection. An unreachable server is reported with its address.
func withClient(c *ucli.Context, fn func(*client.Client) error) error {
	addr := serverAddr(c)
	if err := checkAddr(c, addr); err != nil {
		return err
	}
	opts, err := dialOptions(c, addr)
	if err != nil {
		return err
	}
	cl, err := client.Dial(c.Context, addr, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	err = fn(cl)
	// A server that answered Unavailable with details (it cannot write
	// its database) is running: its own message says what to do.
	if se := grpcStatusError(nil); errors.As(err, &se) && se.GRPCStatus().Code() == codes.Unavailable &&
		len(se.GRPCStatus().Details()) == 0 {
		return &unavailableError{addr: addr, err: err, plaintext: len(opts) == 0, caFile: globalString(c, flagCAFile) != ""}
	}
	return err
}

// serverAddr is the server address the global flags name (--addr,
// HODEI_ADDR), with the default port when they name a host alone.
func serverAddr(c *ucli.Context) string {
	return withDefaultPort(globalString(c, flagAddr))
}

// withDefaultPort returns addr, or addr on client.DefaultPort when it has
// no port: "srv" and "10.0.0.5" mean port 7070, as do "::1" and "[::1]".
func withDefaultPort(addr string) string {
	if addr == "" {
		return ""
	}
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	host := strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	return net.JoinHostPort(host, client.DefaultPort)
}

// setTrailingFlag sets the flag token a (from after the arguments) on c,
// taking its value from next when it needs one, and returns how many of
// next it used.
func setTrailingFlag(c *ucli.Context, a string, next []string) (int, error) {
	name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
	var flag ucli.Flag
	for _, f := range c.Command.Flags {
		if slices.Contains(f.Names(), name) {
			flag = f
		}
	}
	if flag == nil {
		return 0, usagef(c, "flag provided but not defined: %s", a)
	}
	used := 0
	if !hasValue {
		if _, isBool := flag.(*ucli.BoolFlag); isBool {
			value = "true"
		} else if len(next) == 0 {
			return 0, usagef(c, "flag needs an argument: %s", a)
		} else {
			value, used = next[0], 1
		}
	}
	// urfave gives each alias its own value and copies them after parsing;
	// set every name here to the same effect.
	for _, n := range flag.Names() {
		if err := c.Set(n, value); err != nil {
			return 0, usagef(c, "invalid value %q for flag %s: %s", value, a, err.Error())
		}
	}
	return used, nil
}

// unavailableError is a codes.Unavailable error with the address dialled,
// since the usual cause is a wrong --addr or a server that is not running.
type unavailableError struct {
	addr      string
	err       error
	plaintext bool // no CA was known for addr, so the call went without TLS
	caFile    bool // the CA came from --ca-file or HODEI_CA_FILE, not a login
}

func (e *unavailableError) Error() string {
	why := dialFailure(status.Convert(e.err).Message())
	login := fmt.Sprintf("`hodei login --addr %s --token-file DATA-DIR/admin.token --ca-fingerprint sha256:…` "+
		"(the server logs its fingerprint)", e.addr)
	switch {
	case strings.Contains(why, "x509:") || why == "certificate signed by unknown authority":
		// The server answered: what is wrong is the CA it is checked against.
		ca := "the CA `hodei login` stored for " + e.addr
		if e.caFile {
			ca = "the CA of --ca-file (or HODEI_CA_FILE)"
		}
		return fmt.Sprintf("the server at %s answered with a certificate that %s does not verify (%s): point --ca-file "+
			"or HODEI_CA_FILE at its DATA-DIR/tls/ca.pem, or log in again with %s", e.addr, ca, why, login)
	case e.plaintext && (strings.Contains(why, "server preface") || strings.Contains(why, "connection reset by peer")):
		// A TLS listener drops a connection that opens without TLS: the
		// client reads EOF, or a reset when the listener's alert and close
		// beat the client's preface.
		return fmt.Sprintf("the server at %s closed a connection made without TLS: it runs with TLS (as it does unless "+
			"--insecure-no-auth), and there is no login for %s; run %s, or pass --ca-file and --token", e.addr, e.addr, login)
	}
	msg := fmt.Sprintf("the hodei server at %s is unavailable (%s): start one with `hodei serve` (`make run` in a checkout), "+
		"or point --addr or HODEI_ADDR at the one you use", e.addr, why)
	if e.plaintext && why != "connection refused" {
		msg += fmt.Sprintf("\n(no login for %s, so this went without TLS: if the server runs with TLS, as it does unless "+
			"--insecure-no-auth, run `hodei login --addr %s --token-file DATA-DIR/admin.token --ca-fingerprint sha256:…` or pass --ca-file and --token)", e.addr, e.addr)
	}
	return msg
}

func (e *unavailableError) Unwrap() error { return e.err }

// dialFailure shortens the message of a gRPC Unavailable error to its
// cause ("connection refused"): the rest (`connection error: desc =
// "transport: Error while dialing: dial tcp …`) only repeats the address.
func dialFailure(msg string) string {
	for _, cause := range []string{"connection refused", "no such host", "i/o timeout", "network is unreachable",
		"no route to host", "connection reset by peer", "certificate signed by unknown authority"} {
		if strings.Contains(msg, cause) {
			return cause
		}
	}
	msg = strings.TrimPrefix(msg, "connection error: desc = ")
	msg = strings.Trim(msg, `"`)
	msg = strings.TrimPrefix(msg, "transport: ")
	if msg == "" {
		return "no answer"
	}
	return msg
}

// args checks that c got exactly the named positional arguments and
// returns them. Flags may also follow them (`tenants set NAME --weight 2`):
// urfave/cli stops reading flags at the first argument, so args sets the
// ones it finds after the arguments on c itself.
func args(c *ucli.Context, names ...string) ([]string, error) {
	var got []string
	rest := c.Args().Slice()
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			got = append(got, rest[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			got = append(got, a)
			continue
		}
		n, err := setTrailingFlag(c, a, rest[i+1:])
		if err != nil {
			return nil, err
		}
		i += n
	}
	switch {
	case len(got) < len(names):
		return nil, usagef(c, "missing %s", names[len(got)])
	case len(got) > len(names):
		return nil, usagef(c, "unexpected argument %q", got[len(names)])
	}
	for i, a := range got {
		if a == "" {
			return nil, usagef(c, "%s must not be empty", names[i])
		}
	}
	return got, nil
}
