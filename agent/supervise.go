package agent

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// supStageEnv marks the second stage of `hodei agent supervise`: the
// process that is the supervisor (the first stage starts it and exits).
const supStageEnv = "HODEI_SUPERVISOR_STAGE"

// supReadyEnv says that file descriptor 3 is the pipe for the supervisor's
// pid (the agent sets it to "3").
const supReadyEnv = "HODEI_SUPERVISOR_READY_FD"

// supLogFile is the supervisors' log in DATA-DIR/supervisor.
const supLogFile = "supervisor.log"

// Supervise is `hodei agent supervise --data-dir DIR`, which the agent runs
// when no supervisor of its version serves the data dir. Started by the
// agent, it starts the supervisor again as a process of its own — in a new
// session, its output appended to DIR/supervisor/supervisor.log, its parent
// gone at once so that it belongs to no agent — and returns; that second
// process serves until it holds no job and no agent is connected. File
// descriptor 3, when HODEI_SUPERVISOR_READY_FD says so, is the pipe on which the supervisor writes its
// pid once it listens. version is the binary's version, which the agent
// compares with its own to retire a supervisor of an older binary.
func Supervise(dataDir, version string) error {
	if dataDir == "" {
		return errors.New("--data-dir is required")
	}
	var ready *os.File
	if os.Getenv(supReadyEnv) == "3" {
		ready = os.NewFile(3, "ready")
	}
	if os.Getenv(supStageEnv) != "" {
		os.Unsetenv(supStageEnv)
		os.Unsetenv(supReadyEnv)
		// What comes with the agent's going is caught and dropped, not
		// ignored: an ignored signal stays ignored in every job the
		// supervisor starts, and a job expects SIGPIPE and SIGHUP to act.
		signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP, syscall.SIGPIPE)
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
		if ready == nil {
			return runSupervisor(dataDir, version, log, nil, true)
		}
		return runSupervisor(dataDir, version, log, ready, true)
	}
	dir := filepath.Join(dataDir, supDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("supervisor dir: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, supLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("supervisor log: %w", err)
	}
	defer logf.Close()
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), supStageEnv+"=2")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	if ready != nil {
		cmd.ExtraFiles = []*os.File{ready}
	}
	// Its own session: no terminal's ^C or hangup, and no signal to the
	// agent's process group, reaches it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}
	return cmd.Process.Release()
}

// MaybeSupervise runs Supervise and exits when the process's arguments are
// `agent supervise --data-dir DIR`: a test binary that runs agents calls it
// first thing in TestMain, so that the supervisor the agent starts (from
// os.Executable) is the test binary itself. version is what the supervisor
// reports.
func MaybeSupervise(version string) {
	args := os.Args
	if len(args) < 3 || args[1] != "agent" || args[2] != "supervise" {
		return
	}
	dir := ""
	for i := 3; i < len(args); i++ {
		if v, ok := strings.CutPrefix(args[i], "--data-dir="); ok {
			dir = v
		} else if args[i] == "--data-dir" && i+1 < len(args) {
			dir = args[i+1]
			i++
		}
	}
	if err := Supervise(dir, version); err != nil {
		fmt.Fprintln(os.Stderr, "hodei agent supervise:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// spawnSupervisor starts a supervisor for dataDir from exe and returns its
// pid once it listens on its socket.
func spawnSupervisor(exe, dataDir string) (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("start supervisor: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(exe, "agent", "supervise", "--data-dir", dataDir)
	cmd.ExtraFiles = []*os.File{w}
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), supReadyEnv+"=3")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Start()
	w.Close()
	if err != nil {
		return 0, fmt.Errorf("start supervisor %s: %w", exe, err)
	}
	// The first stage exits once the supervisor is started; the pipe
	// gives the pid once it listens, or EOF if it failed.
	werr := cmd.Wait()
	_ = r.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, rerr := bufio.NewReader(r).ReadString('\n')
	pid, perr := strconv.Atoi(strings.TrimSpace(line))
	if rerr != nil || perr != nil || pid <= 0 {
		why := strings.TrimSpace(stderr.String())
		if why == "" && werr != nil {
			why = werr.Error()
		}
		if why == "" {
			why = "it exited before listening; see " + filepath.Join(dataDir, supDir, supLogFile)
		}
		return 0, fmt.Errorf("start supervisor: %s", why)
	}
	return pid, nil
}
