package agent

// How an attempt's process is started: its environment, the lookup of its
// command, a PTY or pipes for its output, and the raw reads of that output.

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// defaultPath is the job's PATH when the agent has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// agentUser is the name of the user the agent (and so every job) runs as.
var agentUser = sync.OnceValue(func() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := lookupUser(strconv.Itoa(os.Getuid())); err == nil {
		return u.Username
	}
	return ""
})

// buildEnv returns the job's environment, sorted: a minimal base (LANG from
// the agent's environment or its default; PATH, HOME, USER and LOGNAME of
// u — the system PATH — or with u nil of the agent's user and environment;
// TERM with a PTY),
// then spec.Env, then spec.SecretEnv, then HODEI_JOB_ID and HODEI_ATTEMPT.
// The agent's own environment is not inherited beyond the base, so nothing
// of the agent's (tokens, proxies) leaks into jobs by accident.
func buildEnv(spec attemptSpec, u *runUser) []string {
	env := map[string]string{
		"PATH": getenvOr("PATH", defaultPath),
		"HOME": getenvOr("HOME", "/"),
		"LANG": getenvOr("LANG", "C.UTF-8"),
	}
	switch {
	case u != nil:
		// Another user's job gets the system PATH, not the agent's,
		// which may name the agent user's own directories.
		env["PATH"] = defaultPath
		env["HOME"], env["USER"], env["LOGNAME"] = cmp.Or(u.Home, "/"), u.Name, u.Name
	case agentUser() != "":
		env["USER"], env["LOGNAME"] = agentUser(), agentUser()
	}
	if !spec.NoPTY {
		// Not the agent's TERM: the job's terminal is the PTY, and what
		// renders its output later is an xterm-compatible viewer.
		env["TERM"] = "xterm-256color"
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

// isDir reports whether path is a directory the agent can see.
func isDir(path string) bool {
	fi, err := os.Stat(path)
	return path != "" && err == nil && fi.IsDir()
}

// startPTY starts cmd in a new session whose controlling terminal is a new
// PTY and returns the PTY's master side. With cred the process runs as that
// user, who is given the PTY's slave side as login gives a terminal to the
// user who logs in: programs that open /dev/tty or check its owner (ssh,
// sudo, mesg) expect it. The master, which the agent reads, stays the
// agent's. Without echo the terminal does not echo its input (for bytes
// piped to the job, which would otherwise come back in its output).
func startPTY(cmd *exec.Cmd, rows, cols uint16, cred *syscall.Credential, echo bool) ([]*os.File, error) {
	if rows == 0 {
		rows = defaultRows
	}
	if cols == 0 {
		cols = defaultCols
	}
	// What pty.StartWithSize does, with the chown between the open and
	// the start.
	ptmx, tty, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("pty: %w", err)
	}
	defer tty.Close() // the child has its own copy
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: rows, Cols: cols}); err != nil {
		_ = ptmx.Close()
		return nil, fmt.Errorf("pty size: %w", err)
	}
	if !echo {
		if err := noEcho(tty); err != nil {
			_ = ptmx.Close()
			return nil, fmt.Errorf("pty echo: %w", err)
		}
	}
	if cred != nil {
		if err := tty.Chown(int(cred.Uid), -1); err != nil {
			_ = ptmx.Close()
			return nil, fmt.Errorf("pty: give %s to uid %d: %w", tty.Name(), cred.Uid, err)
		}
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Credential: cred}
	if err := cmd.Start(); err != nil {
		_ = ptmx.Close()
		return nil, err
	}
	// creack/pty leaves the master in blocking mode (its ioctls go through
	// Fd). Non-blocking, reads go through the poller and honour deadlines,
	// which bound the drain after the job is gone.
	if err := syscall.SetNonblock(int(ptmx.Fd()), true); err != nil {
		_ = ptmx.Close()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return nil, fmt.Errorf("pty: %w", err)
	}
	return []*os.File{ptmx}, nil
}

// noEcho turns off the echo of a terminal's input.
func noEcho(tty *os.File) error {
	t, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		return err
	}
	t.Lflag &^= unix.ECHO | unix.ECHONL
	return unix.IoctlSetTermios(int(tty.Fd()), unix.TCSETS, t)
}

// startPipes starts cmd in a new session with stdout and stderr on pipes,
// as cred's user when cred is not nil, and returns the pipes' read ends.
// With stdin the job's stdin is a pipe too, whose write end it returns;
// otherwise it is /dev/null and stdinW is nil.
func startPipes(cmd *exec.Cmd, cred *syscall.Credential, stdin bool) (readers []*os.File, stdinW *os.File, err error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		_, _ = outR.Close(), outW.Close()
		return nil, nil, err
	}
	var inR *os.File
	if stdin {
		if inR, stdinW, err = os.Pipe(); err != nil {
			_, _, _, _ = outR.Close(), outW.Close(), errR.Close(), errW.Close()
			return nil, nil, err
		}
		cmd.Stdin = inR
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: cred}
	err = cmd.Start()
	_, _ = outW.Close(), errW.Close() // the child has its own copies
	if inR != nil {
		_ = inR.Close()
	}
	if err != nil {
		_, _ = outR.Close(), errR.Close()
		if stdinW != nil {
			_ = stdinW.Close()
		}
		return nil, nil, err
	}
	return []*os.File{outR, errR}, stdinW, nil
}

// readAvailable reads into buf everything that is there now, up to
// len(buf), waiting (through the poller, so deadlines apply) only until the
// first byte. A PTY hands out about 4 KiB per read; taking all that is
// buffered at once saves the spool a write and its reader a wakeup for each.
func readAvailable(rc syscall.RawConn, buf []byte) (n int, err error) {
	cerr := rc.Read(func(fd uintptr) bool {
		for n < len(buf) {
			m, e := syscall.Read(int(fd), buf[n:])
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				return n > 0 // nothing yet: wait for the fd to be readable
			case e != nil:
				err = e
				return true
			case m == 0:
				err = io.EOF
				return true
			}
			n += m
		}
		return true
	})
	if err == nil {
		err = cerr
	}
	return n, err
}
