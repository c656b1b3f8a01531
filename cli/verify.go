package cli

// Verifying a database file in a child process. bbolt checks a file in
// goroutines of its own, and some damage (keys out of order in a page,
// a page referenced twice) makes one of them panic, which no recover in
// this process can catch: run in a child, that crash is an answer.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/server"
	"github.com/hodei-jobs/hodei/store"
)

// verifyCommand is `hodei snapshot verify FILE`.
func verifyCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "verify",
		Usage:     "check a snapshot or database file without changing it",
		ArgsUsage: "FILE",
		Description: "Checks that bbolt can map FILE (its meta pages and size), runs bbolt's consistency check and the\n" +
			"store's (job counts, indexes), and that it is a hodei database of a schema this hodei can open;\n" +
			"prints its cluster id, creation time, schema and what it holds. The check runs in a child process,\n" +
			"so that a crash of bbolt's checker on a damaged page is reported as damage.\n" +
			"Exit status: 0 sound, 1 damaged or not a hodei database, 2 usage.",
		Flags: []ucli.Flag{outputFlag(), &ucli.BoolFlag{Name: "opens", Hidden: true,
			Usage: "only what opening FILE for writing does: its layout, and bbolt's walk of its pages to rebuild the free list (what serve runs in a child at each start)"}},
		Action: func(c *ucli.Context) error {
			a, err := args(c, "FILE")
			if err != nil {
				return err
			}
			asJSON, err := jsonOutput(c)
			if err != nil {
				return err
			}
			if err := regularFile(c, a[0]); err != nil {
				return err
			}
			var info store.SnapshotInfo
			switch {
			case os.Getenv(verifyChildEnv) == "1" && c.Bool("opens"):
				err = store.PreflightFile(a[0])
			case os.Getenv(verifyChildEnv) == "1":
				info, err = store.InspectSnapshot(a[0])
			default:
				info, err = verifyInChild(a[0])
			}
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(c.App.Writer, info)
			}
			fmt.Fprintf(c.App.Writer, "%s: sound; %s\n", a[0], describeSnapshot(info))
			return nil
		},
	}
}

// verifyChildEnv set to 1 makes `snapshot verify` check in its own process.
const verifyChildEnv = "HODEI_VERIFY_IN_PROCESS"

// verifyInChild runs `hodei snapshot verify FILE -o json` as a child
// process and returns what it found. A child that crashed (bbolt's checker
// panicked on a damaged page) is reported as damage with its first line.
func verifyInChild(path string) (store.SnapshotInfo, error) {
	var info store.SnapshotInfo
	out, err := checkInChild(path)
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return info, fmt.Errorf("verify %s: %w", path, err)
	}
	return info, nil
}

// preflightInChild runs, in a child process, what opening path for
// writing does (`snapshot verify --opens`): with the free list not kept in
// the file, bbolt rebuilds it by walking every page in a goroutine of its
// own, which a damaged page makes panic. serve runs it before it opens its
// database, so that damage is an error naming the file, not a crash.
func preflightInChild(path string) error {
	_, err := checkInChild(path, "--opens")
	return err
}

// checkInChild runs `hodei snapshot verify -o json [flags] FILE` in a
// child process and returns its output. A child that crashed (bbolt
// panicked on a damaged page) is reported as damage with its first line.
func checkInChild(path string, flags ...string) ([]byte, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", path, err)
	}
	cmd := exec.Command(exe, append(append([]string{"snapshot", "verify", "--output", "json"}, flags...), path)...)
	cmd.Env = append(os.Environ(), verifyChildEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout.Bytes(), nil
	case !errors.As(err, &ee):
		return nil, fmt.Errorf("verify %s: %w", path, err)
	}
	text := strings.TrimSpace(stderr.String())
	if msg, ok := strings.CutPrefix(text, "hodei: "); ok {
		return nil, errors.New(msg)
	}
	first, _, _ := strings.Cut(text, "\n")
	first = strings.TrimPrefix(first, "panic: ") // bbolt's words are the finding; the crash is the child's
	return nil, fmt.Errorf("%s: %w: bbolt crashed while checking it (%s; %s)", path, store.ErrDamaged, first, ee.ProcessState)
}

// regularFile is a usage error unless path is a regular file.
func regularFile(c *ucli.Context, path string) error {
	st, err := os.Stat(path)
	if err == nil && !st.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err != nil {
		return usagef(c, "FILE: %s is not a database file (%v)", path, err)
	}
	return nil
}

// describeSnapshot is one line about a verified file.
func describeSnapshot(s store.SnapshotInfo) string {
	cluster := "no cluster id (taken before identities; the server records one at its start)"
	if s.HasIdentity {
		cluster = fmt.Sprintf("cluster %s, created %s", s.Identity.ClusterID, s.Identity.Created.Format(time.RFC3339))
	}
	return fmt.Sprintf("%s; schema %d; %d bytes; %s, %s, %s, %s", cluster, s.Identity.Schema, s.Size,
		counted(s.Jobs, "job"), counted(s.Tenants, "tenant"), counted(s.Pipelines, "pipeline"), counted(s.Tokens, "token"))
}

// counted is "1 job", "3 jobs".
func counted(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// checkAtStart runs before serve opens its database, if there is one: with
// --check (full) the whole check of `snapshot verify`, else what opening it
// does (preflightInChild); both in a child process.
func checkAtStart(c *ucli.Context, cfg server.Config) error {
	path := filepath.Join(cfg.DataDir, store.DBFile)
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
		return nil // nothing to check; the server's open says what is wrong
	}
	start := time.Now()
	if !c.Bool("check") {
		if layout, err := store.CheckFileLayout(path); err != nil || layout.FreelistSynced {
			return nil // the open says what is wrong, or reads the free list: no walk
		}
		if err := preflightInChild(path); err != nil {
			return fmt.Errorf("refusing to serve: %w; restore the last snapshot with: hodei snapshot restore FILE --data-dir %s", err, cfg.DataDir)
		}
		cfg.Logger.Debug("database opens", "path", path, "took", time.Since(start).Round(time.Millisecond))
		return nil
	}
	info, err := verifyInChild(path)
	if err != nil {
		return fmt.Errorf("--check: refusing to serve: %w; restore the last snapshot with: hodei snapshot restore FILE --data-dir %s", err, cfg.DataDir)
	}
	cfg.Logger.Info("database checked (--check): sound", "path", path, "took", time.Since(start).Round(time.Millisecond),
		"jobs", info.Jobs, "bytes", info.Size)
	return nil
}
