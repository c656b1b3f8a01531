package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/client"
)

func snapshotCommand(*env) *ucli.Command {
	return &ucli.Command{
		Name:  "snapshot",
		Usage: "back up the server's database",
		Subcommands: []*ucli.Command{
			{
				Name:      "save",
				Usage:     "write a consistent copy of the server's database to FILE",
				ArgsUsage: "FILE",
				Description: "FILE is replaced atomically: it is either the complete snapshot or left as it was.\n" +
					"It is created readable by its owner only.\n\n" +
					"Secret env values are sealed in it with the server's key file, DATA-DIR/secrets.key, which is\n" +
					"not in the snapshot: back that file up too, once (it does not change), and keep it apart from\n" +
					"the snapshots. To restore, put FILE as DATA-DIR/hodei.db and the key as DATA-DIR/secrets.key;\n" +
					"without the key the server refuses to start and the stored secrets cannot be recovered.",
				Flags: withFlags(true),
				Action: func(c *ucli.Context) error {
					a, err := args(c, "FILE")
					if err != nil {
						return err
					}
					asJSON, err := jsonOutput(c)
					if err != nil {
						return err
					}
					var n int64
					err = withClient(c, func(cl *client.Client) error {
						n, err = saveSnapshot(c.Context, cl, a[0])
						return err
					})
					if err != nil {
						return err
					}
					if asJSON {
						return writeJSON(c.App.Writer, struct {
							File  string `json:"file"`
							Bytes int64  `json:"bytes"`
						}{a[0], n})
					}
					_, err = fmt.Fprintf(c.App.Writer, "%d bytes saved to %s\n", n, a[0])
					return err
				},
			},
		},
	}
}

// saveSnapshot streams the snapshot into a temporary file next to path,
// syncs it and renames it over path, so that path never holds a partial
// copy. Server errors are returned unwrapped (gRPC status errors).
func saveSnapshot(ctx context.Context, cl *client.Client, path string) (n int64, err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("create snapshot file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if n, err = cl.Snapshot(ctx, f); err != nil {
		return n, err
	}
	if err = f.Sync(); err != nil {
		return n, fmt.Errorf("sync snapshot: %w", err)
	}
	if err = f.Close(); err != nil {
		return n, fmt.Errorf("close snapshot: %w", err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return n, fmt.Errorf("save snapshot: %w", err)
	}
	// Make the rename itself durable.
	if d, derr := os.Open(dir); derr == nil {
		derr = d.Sync()
		d.Close()
		if derr != nil {
			return n, fmt.Errorf("sync %s: %w", dir, derr)
		}
	}
	return n, nil
}
