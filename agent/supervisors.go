package agent

// How the agent finds, starts, reattaches to and retires its supervisors.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/hodei-jobs/hodei/job"
)

// supervisors is the agent's set of supervisors: the one that takes new
// jobs, and retired ones (of another binary version) that keep the jobs
// they had until those are released.
type supervisors struct {
	exe      string // the binary supervisors are started from
	dataDir  string
	version  string
	spoolDir string
	a        *Agent

	mu  sync.Mutex
	cur *supClient   // takes new jobs; nil until needed; guarded by mu
	all []*supClient // every connection, cur included; guarded by mu
}

// reattach connects to every supervisor of the data dir and returns the
// tasks of the attempts they hold, and the names of their spool files. A
// supervisor of another version is retired: it keeps its jobs and takes no
// new ones. A socket nobody answers on is stale and removed. intact is
// false when a supervisor was found dead (a stale socket) or could not be
// reattached: jobs the previous agent process started may then be gone.
func (ss *supervisors) reattach() (tasks []*task, keep map[string]bool, intact bool, err error) {
	dir := filepath.Join(ss.dataDir, supDir)
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, false, fmt.Errorf("supervisors: %w", err)
	}
	keep, intact = map[string]bool{}, true
	for _, e := range entries {
		name := e.Name()
		pid, err := strconv.Atoi(strings.TrimSuffix(name, ".sock"))
		if !strings.HasSuffix(name, ".sock") || err != nil {
			continue
		}
		sock := filepath.Join(dir, name)
		sc, err := dialSupervisor(sock, ss.version, ss.spoolDir, ss.a.log, ss.a.credit)
		if err != nil {
			intact = false
			if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
				os.Remove(sock) // its supervisor is gone
				continue
			}
			ss.a.log.Warn("supervisor not reattached", "pid", pid, "err", err)
			continue
		}
		ss.mu.Lock()
		ss.all = append(ss.all, sc)
		switch {
		case sc.version != ss.version:
			ss.a.log.Info("supervisor of another version: its jobs stay with it, new jobs go to a new one",
				"pid", sc.pid, "its_version", sc.version, "version", ss.version)
			ss.retire(sc)
		case sc.retired.Load():
		case ss.cur == nil:
			ss.cur = sc
		default:
			ss.retire(sc) // two of this version: the first takes new jobs
		}
		ss.mu.Unlock()
		for _, ra := range sc.adopt() {
			t := newTask(ra.ref)
			t.started(ra, ra.out, ra.errs)
			tasks = append(tasks, t)
			keep[filepath.Base(ra.out.Path())], keep[filepath.Base(ra.errs.Path())] = true, true
		}
		ss.a.log.Info("reattached to supervisor", "pid", sc.pid, "version", sc.version, "jobs", len(sc.welcome.Attempts))
	}
	return tasks, keep, intact, nil
}

// retire tells sc to take no new jobs. Called with mu held.
func (ss *supervisors) retire(sc *supClient) {
	sc.retired.Store(true)
	if err := sc.send(&supMsg{Op: opRetire}); err != nil {
		ss.a.log.Warn("retire supervisor", "pid", sc.pid, "err", err)
	}
}

// current returns the supervisor that takes new jobs, starting one when
// there is none (or it is gone).
func (ss *supervisors) current() (*supClient, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.cur != nil && ss.cur.alive() {
		return ss.cur, nil
	}
	ss.cur = nil
	pid, err := spawnSupervisor(ss.exe, ss.dataDir)
	if err != nil {
		return nil, err
	}
	sc, err := dialSupervisor(filepath.Join(ss.dataDir, supDir, strconv.Itoa(pid)+".sock"), ss.version, ss.spoolDir, ss.a.log, ss.a.credit)
	if err != nil {
		return nil, fmt.Errorf("supervisor pid %d: %w", pid, err)
	}
	sc.adopt() // holds nothing yet; starts its reader
	ss.a.log.Info("supervisor started", "pid", pid)
	ss.cur = sc
	ss.all = append(ss.all, sc)
	return sc, nil
}

// pids returns the pids of the supervisors the agent is connected to.
func (ss *supervisors) pids() []int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var out []int
	for _, sc := range ss.all {
		if sc.alive() {
			out = append(out, sc.pid)
		}
	}
	return out
}

// leave closes every connection; with exitIdle each supervisor exits once
// it holds nothing.
func (ss *supervisors) leave(exitIdle bool) {
	ss.mu.Lock()
	all := ss.all
	ss.all, ss.cur = nil, nil
	ss.mu.Unlock()
	for _, sc := range all {
		sc.leave(exitIdle)
	}
}

// wireSpecOf is what a supervisor needs to start an attempt: the spec,
// the user the agent chose for it, and the agent's limits.
func (a *Agent) wireSpecOf(spec job.Spec, u *runUser) *wireSpec {
	w := &wireSpec{Argv: spec.Argv(), Env: spec.Env, SecretEnv: spec.SecretEnv, Dir: spec.WorkDir, NoPTY: spec.NoPTY,
		Stdin: int(spec.Stdin), Rows: uint16(spec.Rows), Cols: uint16(spec.Cols), Timeout: int64(spec.Timeout),
		BufferLimit: a.cfg.BufferLimit, KillGrace: int64(a.cfg.KillGrace)}
	if u != nil {
		w.User = &wireUser{Name: u.Name, UID: u.UID, GID: u.GID, Groups: u.Groups, Home: u.Home}
	}
	return w
}

// credit passes an attempt's input credit on to the server.
func (a *Agent) credit(r ref, written int64, closed bool) {
	a.creditSender(r)(written, closed)
}
