package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// Build metadata, set by `make` with -ldflags "-X
// github.com/hodei-jobs/hodei/cli.Version=…" and so on (see the Makefile).
// A plain `go build` leaves them empty (Version "dev"), and `hodei version`
// then reads what the Go toolchain stamped into the binary instead: the
// module version and the VCS revision, commit time and modified flag.
var (
	// Version is the release, `git describe --tags --dirty` at build time.
	Version = "dev"
	// Commit is the full VCS revision the binary was built from.
	Commit = ""
	// Modified is "true" when the work tree had changes not committed.
	Modified = ""
	// BuildDate is when the binary was built, RFC 3339 in UTC.
	BuildDate = ""
)

func init() {
	// `hodei --version` prints what `hodei version` prints. Only a
	// function value is stored here: the build info is read when printed.
	ucli.VersionPrinter = func(c *ucli.Context) {
		fmt.Fprintln(c.App.Writer, buildVersion().String())
	}
}

// versionInfo is what `hodei version` reports.
type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Modified  bool   `json:"modified"`
	Built     string `json:"built,omitempty"`     // build time, from make
	Committed string `json:"committed,omitempty"` // commit time, from the Go toolchain
	Go        string `json:"go"`
	Platform  string `json:"platform"`
}

// buildVersion gathers the version of this binary: the -ldflags values
// where set, else the build info the Go toolchain embeds.
func buildVersion() versionInfo {
	bi, _ := debug.ReadBuildInfo()
	return versionOf(Version, Commit, Modified, BuildDate, bi)
}

// versionOf is buildVersion over explicit inputs; bi may be nil. Where
// the -ldflags values are set they win over bi's.
func versionOf(version, commit, modified, built string, bi *debug.BuildInfo) versionInfo {
	v := versionInfo{
		Version:  version,
		Commit:   commit,
		Modified: modified == "true",
		Built:    built,
		Go:       runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH,
	}
	if bi == nil {
		return v
	}
	if v.Version == "" || v.Version == "dev" {
		// `go build` in a checkout stamps a pseudo-version such as
		// v0.0.0-20261202101500-0123456789ab+dirty; outside one, "(devel)".
		if mv := bi.Main.Version; mv != "" && mv != "(devel)" {
			v.Version = mv
		} else {
			v.Version = "dev"
		}
	}
	if bi.GoVersion != "" {
		v.Go = bi.GoVersion
	}
	if v.Commit != "" {
		return v // from make: the build info's VCS fields say no more
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.Committed = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is the one line `hodei version` and `hodei --version` print, e.g.
// "hodei v1.2.0  commit 0123456789ab (modified)  built 2026-12-02T10:15:00Z  go1.26.8 linux/amd64".
func (v versionInfo) String() string {
	var b strings.Builder
	b.WriteString("hodei " + v.Version)
	if v.Commit != "" {
		b.WriteString("  commit " + shortCommit(v.Commit))
		if v.Modified {
			b.WriteString(" (modified)")
		}
	}
	switch {
	case v.Built != "":
		b.WriteString("  built " + v.Built)
	case v.Committed != "":
		b.WriteString("  committed " + v.Committed)
	}
	b.WriteString("  " + v.Go + " " + v.Platform)
	return b.String()
}

// shortCommit is a revision cut to 12 characters, as Go's pseudo-versions
// show it.
func shortCommit(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

func versionCommand(*env) *ucli.Command {
	return &ucli.Command{
		Name:      "version",
		Usage:     "print the version, commit, build date and Go version of this binary",
		ArgsUsage: " ",
		Flags:     []ucli.Flag{outputFlag()},
		Action: func(c *ucli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			asJSON, err := jsonOutput(c)
			if err != nil {
				return err
			}
			return printVersion(c.App.Writer, buildVersion(), asJSON)
		},
	}
}

func printVersion(w io.Writer, v versionInfo, asJSON bool) error {
	if asJSON {
		return writeJSON(w, v)
	}
	_, err := fmt.Fprintln(w, v.String())
	return err
}
