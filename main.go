// Command hodei is the Hodei job scheduler: server, agent and client in one
// binary. See package cli for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/hodei-jobs/hodei/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal asks the command to stop cleanly (hodei run cancels
	// its job and waits for it); a second one ends the process at once.
	go func() { <-ctx.Done(); stop() }()
	code := cli.RunContext(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
