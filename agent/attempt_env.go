package agent

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// defaultPath is the job's PATH when the agent has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// agentUser is the name of the user the agent (and so every job) runs as.
var agentUser = sync.OnceValue(func() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
})

// buildEnv returns the job's environment, sorted: a minimal base, then
// spec.Env, then spec.SecretEnv, then HODEI_JOB_ID and HODEI_ATTEMPT.
// The agent's own environment is not inherited beyond the base, so nothing
// of the agent's (tokens, proxies) leaks into jobs by accident.
func buildEnv(spec attemptSpec) []string {
	env := map[string]string{
		"PATH": getenvOr("PATH", defaultPath),
		"HOME": getenvOr("HOME", "/"),
		"LANG": getenvOr("LANG", "C.UTF-8"),
	}
	if u := agentUser(); u != "" {
		env["USER"], env["LOGNAME"] = u, u
	}
	if !spec.NoPTY {
		env["TERM"] = getenvOr("TERM", "xterm")
		if env["TERM"] == "dumb" {
			env["TERM"] = "xterm"
		}
	}
	maps.Copy(env, spec.Env)
	maps.Copy(env, spec.SecretEnv)
	env["HODEI_JOB_ID"] = spec.JobID
	env["HODEI_ATTEMPT"] = strconv.Itoa(spec.Attempt)

	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

func getenvOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// envValue returns the value of key in env ("k=v" entries), "" if unset.
func envValue(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// lookPath resolves the command name the way a shell would, but with the
// job's PATH rather than the agent's: a name with a slash is a path (relative
// to dir), otherwise the first executable file in a PATH entry. Its errors
// name the command and say what is wrong with it.
func lookPath(name, pathEnv, dir string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("command %q: %w", name, err)
		}
		return p, nil
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		p := filepath.Join(d, name)
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %q not found in PATH %s", name, pathEnv)
}

// errNotExecutable says a command exists but has no execute permission.
var errNotExecutable = errors.New("not executable (permission denied)")

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return pe.Err // the caller names the command
		}
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return errNotExecutable
	}
	return nil
}
