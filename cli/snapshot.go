package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/seal"
	"github.com/hodei-jobs/hodei/server"
	"github.com/hodei-jobs/hodei/store"
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
					"A snapshot holds the database: jobs, tenants, pipelines, tokens, the logs' index. It does not hold\n" +
					"the job output (DATA-DIR/logs/) or the key files. Secret env values are sealed in it with the\n" +
					"server's key file, DATA-DIR/secrets.key: back that file up too, once (it does not change), with\n" +
					"token.key and tls/, and keep them apart from the snapshots. Restore with hodei snapshot restore;\n" +
					"without the key the server refuses to start and the stored secrets cannot be recovered.\n" +
					"For snapshots on a schedule, see hodei serve --snapshot-every.",
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
			restoreCommand(),
			verifyCommand(),
		},
	}
}

// restoreCommand is `hodei snapshot restore FILE --data-dir DIR`.
func restoreCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "restore",
		Usage:     "put a snapshot in place as the database of a stopped server's data dir",
		ArgsUsage: "FILE",
		Description: "Verifies FILE first and changes nothing when it fails: bbolt's consistency check and the store's,\n" +
			"and that it is a hodei database of a schema this hodei can open; prints its cluster id, creation time,\n" +
			"schema and what it holds. Refuses while a server has DIR/hodei.db open (stop it first).\n" +
			"Then keeps the database in DIR aside as hodei.db.before-restore-TIME, puts a synced copy of FILE in\n" +
			"place as DIR/hodei.db (renamed in at once) and writes DIR/hodei.identity to match it.\n\n" +
			"The other files of DIR stay as they are: the job output in logs/ (a snapshot holds the logs' index,\n" +
			"not the output) and the key files secrets.key, token.key and tls/, which the snapshot's sealed\n" +
			"secrets, tokens and agents depend on: restoring into a new DIR, copy them there first.\n" +
			"Exit status: 0 restored, 1 refused (FILE damaged or not a hodei database, DIR in use), 2 usage.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "data-dir", EnvVars: []string{"HODEI_DATA_DIR"}, Usage: "the server's data `DIR` (required)"},
			outputFlag(),
		},
		Action: func(c *ucli.Context) error {
			a, err := args(c, "FILE")
			if err != nil {
				return err
			}
			asJSON, err := jsonOutput(c)
			if err != nil {
				return err
			}
			dir := c.String("data-dir")
			if dir == "" {
				return usagef(c, "--data-dir: required: the data dir of the server to restore into")
			}
			if err := regularFile(c, a[0]); err != nil {
				return err
			}
			// Checked in a child first: bbolt's checker can crash this
			// process on some damage (verify.go). Restore checks again in
			// process, safely once the child found the file sound.
			if _, err := verifyInChild(a[0]); err != nil {
				return fmt.Errorf("restore refused, nothing changed: %w", err)
			}
			info, err := store.InspectSnapshot(a[0])
			if err != nil {
				return fmt.Errorf("restore refused, nothing changed: %w", err)
			}
			if err := keyFilesMatch(dir, info); err != nil {
				return fmt.Errorf("restore refused, nothing changed: %w", err)
			}
			if was, err := store.ReadIdentityFile(dir); err == nil && info.HasIdentity && was.ClusterID != info.Identity.ClusterID {
				fmt.Fprintf(c.App.ErrWriter, "hodei: %s was the data dir of cluster %s; it becomes that of cluster %s, the snapshot's\n",
					dir, was.ClusterID, info.Identity.ClusterID)
			}
			r, err := store.Restore(a[0], dir, time.Now())
			if err != nil {
				return fmt.Errorf("restore refused, nothing changed: %w", err)
			}
			missing := missingKeyFiles(dir, r.Snapshot)
			if asJSON {
				return writeJSON(c.App.Writer, restoreJSON(r, missing))
			}
			return printRestored(c.App.Writer, c.App.ErrWriter, r, dir, missing)
		},
	}
}

// keyFilesMatch refuses a snapshot whose records depend on other key files
// than those in dir (the secrets key its values are sealed with, the key
// its tokens are signed with, the CA its agents joined with): the server
// would refuse to start on it. A file dir lacks is left to missingKeyFiles.
func keyFilesMatch(dir string, info store.SnapshotInfo) error {
	path := filepath.Join(dir, server.SecretsKeyName)
	if _, err := os.Stat(path); err == nil && info.SecretsKeyCheck != nil {
		if _, _, err := seal.LoadOrCreate(path, info.SecretsKeyCheck); err != nil {
			return fmt.Errorf("the snapshot is of another cluster than %s: %w", dir, err)
		}
	}
	path = filepath.Join(dir, server.TokenKeyFile)
	if _, err := os.Stat(path); err == nil && info.TokenKeyCheck != nil {
		key, _, err := auth.LoadOrCreateKey(path)
		if err != nil {
			return err
		}
		if fp := sha256.Sum256(key.Public().(ed25519.PublicKey)); !bytes.Equal(fp[:], info.TokenKeyCheck) {
			return fmt.Errorf("the snapshot is of another cluster than %s: its tokens were signed with another key than %s; "+
				"restore into a data dir with that cluster's key files, or copy them into %s first", dir, path, dir)
		}
	}
	path = filepath.Join(dir, server.TLSDir, "ca.pem")
	if b, err := os.ReadFile(path); err == nil && info.CACheck != nil {
		var der []byte
		if blk, _ := pem.Decode(b); blk != nil {
			der = blk.Bytes
		}
		if fp := sha256.Sum256(der); !bytes.Equal(fp[:], info.CACheck) {
			return fmt.Errorf("the snapshot is of another cluster than %s: its agents joined with another CA than %s; "+
				"restore into a data dir with that cluster's key files, or copy them into %s first", dir, path, dir)
		}
	}
	return nil
}

// missingKeyFiles lists the key files the restored database depends on
// that the data dir lacks, each with what it is for.
func missingKeyFiles(dir string, info store.SnapshotInfo) []string {
	var missing []string
	for _, f := range []struct {
		need       bool
		name, what string
	}{
		{info.NeedsSecretsKey, server.SecretsKeyName, "the key the database was sealed with, which its secret env values, if any, need; or start the server with --secrets-key naming it"},
		{info.NeedsTokenKey, server.TokenKeyFile, "its tokens were signed with it"},
		{info.NeedsCA, filepath.Join(server.TLSDir, "ca.pem"), "its agents joined with the cluster CA"},
	} {
		if _, err := os.Stat(filepath.Join(dir, f.name)); f.need && errors.Is(err, os.ErrNotExist) {
			missing = append(missing, fmt.Sprintf("%s (%s)", filepath.Join(dir, f.name), f.what))
		}
	}
	return missing
}

func restoreJSON(r store.Restored, missing []string) any {
	type out struct {
		Snapshot    string    `json:"snapshot"`
		Database    string    `json:"database"`
		KeptAside   string    `json:"kept_aside,omitempty"`
		ClusterID   string    `json:"cluster_id,omitempty"`
		Created     time.Time `json:"created,omitzero"`
		Schema      uint64    `json:"schema"`
		Bytes       int64     `json:"bytes"`
		Jobs        int       `json:"jobs"`
		Tenants     int       `json:"tenants"`
		Pipelines   int       `json:"pipelines"`
		Tokens      int       `json:"tokens"`
		MissingKeys []string  `json:"missing_key_files,omitempty"`
	}
	s := r.Snapshot
	o := out{Snapshot: s.Path, Database: r.Database, KeptAside: r.KeptAside, Schema: s.Identity.Schema, Bytes: s.Size,
		Jobs: s.Jobs, Tenants: s.Tenants, Pipelines: s.Pipelines, Tokens: s.Tokens, MissingKeys: missing}
	if s.HasIdentity {
		o.ClusterID, o.Created = s.Identity.ClusterID, s.Identity.Created
	}
	return o
}

func printRestored(w, ew io.Writer, r store.Restored, dir string, missing []string) error {
	fmt.Fprintf(w, "snapshot %s: sound; %s\n", r.Snapshot.Path, describeSnapshot(r.Snapshot))
	if r.KeptAside != "" {
		fmt.Fprintf(w, "kept the old database aside as %s\n", r.KeptAside)
	}
	fmt.Fprintf(w, "restored %s; start the server with: hodei serve --data-dir %s\n", r.Database, dir)
	for _, m := range missing {
		fmt.Fprintf(ew, "hodei: warning: missing %s: copy it from your backup before starting the server, which refuses to start without it\n", m)
	}
	return nil
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
