package cli

import (
	"fmt"
	"io"
	"strconv"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/client"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

func workersCommand(e *env) *ucli.Command {
	return &ucli.Command{
		Name:  "workers",
		Usage: "list, drain, undrain, revoke and remove the hosts that run jobs",
		Subcommands: []*ucli.Command{
			{
				Name:  "ls",
				Usage: "list workers",
				Flags: withFlags(true),
				Action: func(c *ucli.Context) error {
					if _, err := args(c); err != nil {
						return err
					}
					return workersCall(c, e, false, func(cl *client.Client) ([]*hodeipb.Worker, error) {
						return cl.ListWorkers(c.Context)
					})
				},
			},
			drainCommand(e),
			workerCommand(e, "undrain", "undo drain: the worker takes new jobs again",
				func(c *ucli.Context, cl *client.Client, id string) (*hodeipb.Worker, error) {
					return cl.UndrainWorker(c.Context, id)
				}),
			workerCommand(e, "revoke", "cut an agent off: its stream closes, its certificate is refused from then on, its jobs retry elsewhere",
				func(c *ucli.Context, cl *client.Client, id string) (*hodeipb.Worker, error) {
					return cl.Admin().RevokeWorker(c.Context, &hodeipb.RevokeWorkerRequest{Id: id})
				}),
			workerRemoveCommand(),
		},
	}
}

// workerRemoveCommand is `workers rm ID`.
func workerRemoveCommand() *ucli.Command {
	return &ucli.Command{
		Name: "rm",
		Usage: "delete a worker that is not connected and runs nothing, with its agent's certificate binding " +
			"(drain it and stop its agent first); DOWN workers are also deleted after serve's --worker-gc",
		ArgsUsage: "ID",
		Flags:     withFlags(true),
		Action: func(c *ucli.Context) error {
			a, err := args(c, "worker ID")
			if err != nil {
				return err
			}
			asJSON, err := jsonOutput(c)
			if err != nil {
				return err
			}
			id := a[0]
			err = withClient(c, func(cl *client.Client) error {
				if id, err = resolveID(c, cl, hodeipb.IdKind_ID_KIND_WORKER, id, "ID"); err != nil {
					return err
				}
				return cl.RemoveWorker(c.Context, id)
			})
			switch {
			case err != nil:
				return err
			case asJSON:
				return writeJSON(c.App.Writer, struct {
					ID      string `json:"id"`
					Removed bool   `json:"removed"`
				}{id, true})
			}
			_, err = fmt.Fprintf(c.App.Writer, "worker %s removed\n", id)
			return err
		},
	}
}

// workerCommand is a subcommand that acts on one worker and prints it.
func workerCommand(e *env, name, usage string, act func(*ucli.Context, *client.Client, string) (*hodeipb.Worker, error)) *ucli.Command {
	return &ucli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: "ID",
		Flags:     withFlags(true),
		Action: func(c *ucli.Context) error {
			a, err := args(c, "worker ID")
			if err != nil {
				return err
			}
			return workersCall(c, e, true, func(cl *client.Client) ([]*hodeipb.Worker, error) {
				id, err := resolveID(c, cl, hodeipb.IdKind_ID_KIND_WORKER, a[0], "ID")
				if err != nil {
					return nil, err
				}
				w, err := act(c, cl, id)
				if err != nil {
					return nil, err
				}
				return []*hodeipb.Worker{w}, nil
			})
		},
	}
}

// workersCall runs a call and prints the workers it returns: a table, or
// JSON: an array, or one object if single.
func workersCall(c *ucli.Context, e *env, single bool, call func(*client.Client) ([]*hodeipb.Worker, error)) error {
	asJSON, err := jsonOutput(c)
	if err != nil {
		return err
	}
	var ws []*hodeipb.Worker
	err = withClient(c, func(cl *client.Client) error {
		ws, err = call(cl)
		return err
	})
	switch {
	case err != nil:
		return err
	case asJSON && single && len(ws) == 1:
		return writeJSON(c.App.Writer, newWorkerView(ws[0]))
	case asJSON:
		views := make([]workerView, 0, len(ws))
		for _, w := range ws {
			views = append(views, newWorkerView(w))
		}
		return writeJSON(c.App.Writer, views)
	}
	return writeWorkerTable(c.App.Writer, e.now(), ws)
}

// workerView is a worker as `--output json` shows it.
type workerView struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	Hostname      string            `json:"hostname"`
	State         string            `json:"state"`
	Revoked       bool              `json:"revoked,omitempty"`
	Labels        map[string]string `json:"labels"`
	Capacity      resourcesView     `json:"capacity"`
	Allocated     resourcesView     `json:"allocated"`
	CPUPercent    float64           `json:"cpu_percent"`
	MemoryUsedMiB int64             `json:"memory_used_mib"`
	Load1         float64           `json:"load1"`
	Running       []string          `json:"running"`
	Version       string            `json:"version,omitempty"`
	LastSeen      time.Time         `json:"last_seen,omitzero"`
}

type resourcesView struct {
	CPUMillis int64 `json:"cpu_millis"`
	MemoryMiB int64 `json:"memory_mib"`
	Slots     int64 `json:"slots"`
}

func newResourcesView(r *hodeipb.Resources) resourcesView {
	return resourcesView{CPUMillis: r.GetCpuMillis(), MemoryMiB: r.GetMemoryMib(), Slots: r.GetSlots()}
}

// workerStateName is a worker's state as listings show it: LEAVING for a
// worker whose agent is stopping or restarting (DRAINING until it is
// back), so that it is not taken for one drained by hand.
func workerStateName(w *hodeipb.Worker) string {
	if w.GetLeaving() && w.GetState() == hodeipb.WorkerState_WORKER_STATE_DRAINING {
		return "LEAVING"
	}
	return hodeipb.WorkerStateName(w.GetState())
}

func newWorkerView(w *hodeipb.Worker) workerView {
	running := w.GetRunning()
	if running == nil {
		running = []string{}
	}
	return workerView{
		ID:            w.GetId(),
		Name:          w.GetName(),
		Hostname:      w.GetHostname(),
		State:         workerStateName(w),
		Revoked:       w.GetRevoked(),
		Labels:        nonNil(w.GetLabels()),
		Capacity:      newResourcesView(w.GetCapacity()),
		Allocated:     newResourcesView(w.GetAllocated()),
		CPUPercent:    w.GetCpuPercent(),
		MemoryUsedMiB: w.GetMemoryUsedMib(),
		Load1:         w.GetLoad1(),
		Running:       running,
		Version:       w.GetVersion(),
		LastSeen:      unixNano(w.GetLastHeartbeatUnixNano()),
	}
}

func writeWorkerTable(w io.Writer, now time.Time, ws []*hodeipb.Worker) error {
	t := newTable(w, "ID", "NAME", "HOST", "STATE", "SLOTS", "CPU %", "MEM", "LABELS", "LAST SEEN")
	for _, wk := range ws {
		v := newWorkerView(wk)
		lastSeen := ""
		if !v.LastSeen.IsZero() {
			lastSeen = age(now, v.LastSeen) + " ago"
		}
		state := v.State
		if v.Revoked {
			state = "REVOKED"
		}
		t.row(v.ID, v.Name, v.Hostname, state,
			fmt.Sprintf("%d/%d", v.Allocated.Slots, v.Capacity.Slots),
			strconv.FormatFloat(v.CPUPercent, 'f', 1, 64),
			mib(v.MemoryUsedMiB)+"/"+mib(v.Capacity.MemoryMiB),
			pairs(v.Labels), lastSeen)
	}
	return t.flush()
}
