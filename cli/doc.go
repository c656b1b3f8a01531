// Package cli is Hodei's command line: the urfave/cli (v2) app that main.go
// runs. Each command group has its own file (submit.go, with
// submit_file.go for the jobs files of submit --file, jobs.go, logs.go,
// workers.go, tenants.go, snapshot.go, and pipeline.go with
// pipeline_file.go for the YAML format, pipeline_index.go to point the
// server's field errors at lines and pipeline_wait.go for --wait); app.go
// holds the command list, the global flags (--addr/HODEI_ADDR,
// --token/HODEI_TOKEN, --ca-file/HODEI_CA_FILE, --output/-o) and the one
// mapping from errors to exit codes. login.go resolves how to reach a
// server (the token and CA from the flags, the environment, or what
// `hodei login` stored per address) and token.go, audit.go manage tokens
// and read the audit log. run.go follows a job's output; interactive.go
// connects run's stdin to the job (raw terminal, window size, piped bytes
// and EOF), attach.go is `hodei attach`, both over input.go's pump on an
// Attach stream, with escape.go's ssh-style escapes (Enter ~. detaches).
// follow.go is how run, logs -f and attach ride out server restarts (one
// client.Reconnector per command, output resumed after its last byte).
// Exit codes:
//
//	0  success
//	1  any other failure; a gRPC error prints its status message, which names
//	   the offending field
//	2  usage: unknown command or flag, bad flag value, missing argument
//
// Client commands talk to the server through package client. They write
// results to the app's Writer and nothing else; errors are printed once, by
// Run, to its stderr as "hodei: <message>". Nothing in this package calls
// os.Exit, so tests run the whole app in-process.
//
// What a job or a user set is shown safely: logs and run pass job output
// through termFilter (termsafe.go), which keeps colours and cursor movement
// and drops sequences that act on the terminal, unless --raw; table and
// detail views escape control characters (visible, in output.go).
//
// Global flags are accepted before the command (hodei -o json jobs ls) and
// after it (hodei jobs ls -o json); a flag given on the command line wins over
// the environment, which wins over the default. Flags go before positional
// arguments: everything after the first argument, or after "--", is an
// argument.
//
// Run is not safe for concurrent use: urfave/cli keeps its help flag and
// help printer in package variables.
package cli
