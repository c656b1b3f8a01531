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
	code := cli.RunContext(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
