package cli

import (
	"fmt"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/client"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// drainCommand is `workers drain ID [--wait [--timeout D]]`.
func drainCommand(e *env) *ucli.Command {
	cmd := workerCommand(e, "drain", "stop assigning jobs to a worker; the jobs it runs finish (kept across restarts; undo with undrain)",
		func(c *ucli.Context, cl *client.Client, id string) (*hodeipb.Worker, error) {
			w, err := cl.DrainWorker(c.Context, id)
			if err != nil || !c.Bool("wait") {
				return w, err
			}
			return waitDrained(c, e, cl, w)
		})
	cmd.Description = "With --wait it returns once the worker runs nothing: the moment to stop its agent or the host\n" +
		"(a rolling upgrade: drain --wait, upgrade, undrain). Interrupting the wait leaves the worker drained."
	cmd.Flags = append([]ucli.Flag{
		&ucli.BoolFlag{Name: "wait", Usage: "wait until the worker's jobs have ended, saying on stderr how many are left"},
		&ucli.DurationFlag{Name: "timeout", Usage: "with --wait, give up after this `DURATION` (exit 1, naming the jobs left); 0: wait as long as it takes"},
	}, cmd.Flags...)
	cmd.Before = func(c *ucli.Context) error {
		switch {
		case c.Duration("timeout") < 0:
			return usagef(c, "--timeout: %s must not be negative", c.Duration("timeout"))
		case c.IsSet("timeout") && !c.Bool("wait"):
			return usagef(c, "--timeout: only with --wait")
		}
		return nil
	}
	return cmd
}

// waitDrained asks for worker w until it holds no job, and returns it
// then. A server that restarts meanwhile is waited for, as `pipeline run
// --wait` does.
func waitDrained(c *ucli.Context, e *env, cl *client.Client, w *hodeipb.Worker) (*hodeipb.Worker, error) {
	var deadline time.Time
	if d := c.Duration("timeout"); d > 0 {
		deadline = e.now().Add(d)
	}
	tick := time.NewTicker(e.pollEvery())
	defer tick.Stop()
	said := -1
	var down time.Time // since when the server has been unavailable
	for {
		n := len(w.GetRunning())
		if n == 0 {
			if said > 0 {
				fmt.Fprintf(c.App.ErrWriter, "hodei: worker %s is drained: it runs nothing\n", w.GetId())
			}
			return w, nil
		}
		if n != said {
			fmt.Fprintf(c.App.ErrWriter, "hodei: worker %s is draining: %s\n", w.GetId(), jobsLeft(n))
			said = n
		}
		if !deadline.IsZero() && !e.now().Before(deadline) {
			fmt.Fprintf(c.App.ErrWriter, "hodei: worker %s still runs %s after --timeout %s; it stays drained\n",
				w.GetId(), strings.Join(w.GetRunning(), ", "), c.Duration("timeout"))
			return nil, &exitStatus{code: exitFailure}
		}
		select {
		case <-c.Context.Done():
			fmt.Fprintf(c.App.ErrWriter, "hodei: stopped waiting; worker %s stays drained ('hodei workers undrain %s' undoes it)\n", w.GetId(), w.GetId())
			return nil, c.Context.Err()
		case <-tick.C:
		}
		ws, err := cl.Admin().ListWorkers(c.Context, &hodeipb.ListWorkersRequest{Id: w.GetId()})
		switch {
		case err == nil && len(ws.GetWorkers()) == 1:
			w, down = ws.GetWorkers()[0], time.Time{}
		case err == nil:
			return nil, fmt.Errorf("worker %s: the server listed %d workers for it", w.GetId(), len(ws.GetWorkers()))
		case status.Code(err) == codes.Unavailable && (down.IsZero() || e.now().Sub(down) < waitThroughOutage):
			if down.IsZero() {
				down = e.now()
			}
		default:
			return nil, err
		}
	}
}

// jobsLeft says how many jobs a draining worker still runs.
func jobsLeft(n int) string {
	if n == 1 {
		return "1 job left"
	}
	return fmt.Sprintf("%d jobs left", n)
}
