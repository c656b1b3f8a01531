package agent

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The reaper makes the supervisor a child subreaper (prctl
// PR_SET_CHILD_SUBREAPER): a process of a job whose parent exits (a job
// that backgrounds a process and exits, a double fork) is reparented to the
// supervisor instead of init, so the supervisor reaps it and counts its
// rusage for the attempt whose process group it was in. A leader's own
// wait4 rusage covers only the descendants it waited for; these orphans are
// what it misses.
//
// The leaders are reaped by their attempts (os/exec, by pid): the reaper
// must never take one. It reaps only children that are not leaders and are
// not in the supervisor's own process group (a leader between its fork and
// its setsid is in it), and no scan runs while a start is between its fork
// and its leader's registration, so that none sees a leader it does not
// know. Starts do not wait for each other.
//
// Limits (see DESIGN.md): a process that left the job's process group
// (setsid, a shell's job control) is reaped but counted for no attempt; one
// that outlives its attempt's end (it left the group, so the group's kill
// missed it) is counted for none either; peak RSS is the largest single
// process's, not the sum of the job's processes.
type reaper struct {
	log  *slog.Logger
	self int // the supervisor's process group
	// strays: reap zombies of no attempt too (those that left a job's
	// group), as the supervisor's own process must; a supervisor run
	// inside another program (a test) leaves them to that program.
	strays bool

	mu       sync.Mutex                 // guards the fields below
	starting int                        // starts between their fork and their leader's registration
	skipped  bool                       // a scan was left for the last of them
	leaders  map[int]bool               // pids of the leaders the attempts reap
	groups   map[int]*orphanUsage       // by process group: what the attempt's orphans used
	waiters  map[chan struct{}]struct{} // poked after each scan

	sig  chan os.Signal
	stop chan struct{}
	done chan struct{}
}

// orphanUsage sums the rusage of the orphans of one attempt.
type orphanUsage struct {
	n         int
	cpu       time.Duration
	maxRSSKiB int64
}

// newReaper makes the calling process a child subreaper and starts the
// goroutine that reaps on SIGCHLD; close stops it and makes the process an
// ordinary one again. strays says whether it reaps the zombies of no
// attempt. It fails when the kernel refuses the prctl.
func newReaper(log *slog.Logger, strays bool) (*reaper, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, os.NewSyscallError("prctl PR_SET_CHILD_SUBREAPER", err)
	}
	r := &reaper{log: log, self: syscall.Getpgrp(), strays: strays, leaders: make(map[int]bool), groups: make(map[int]*orphanUsage),
		waiters: make(map[chan struct{}]struct{}), sig: make(chan os.Signal, 1), stop: make(chan struct{}), done: make(chan struct{})}
	signal.Notify(r.sig, syscall.SIGCHLD)
	go r.run()
	return r, nil
}

// close stops the reaper's goroutine and waits for it.
func (r *reaper) close() {
	if r == nil {
		return
	}
	signal.Stop(r.sig)
	close(r.stop)
	<-r.done
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
}

func (r *reaper) run() {
	defer close(r.done)
	// A SIGCHLD can be merged with another or come before a scan ends:
	// a slow tick catches what one missed.
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	gap := time.NewTimer(0)
	defer gap.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-r.sig:
		case <-t.C:
		}
		// Every job's end is a SIGCHLD, and a scan reads /proc: the
		// signals of a gap are served by one scan. An attempt that ends
		// does not wait for it (finish reaps its own group).
		select {
		case <-r.stop:
			return
		case <-gap.C:
		}
		r.scan()
		gap.Reset(reapScanGap)
	}
}

// reapScanGap is the least time between two scans for orphans. A scan
// reads the children file of every thread (about one per running job): at
// a thousand jobs a second, a scan every 50 ms was 3% of the supervisor's
// CPU. An orphan waits at most this long as a zombie; the attempt that
// owns it does not wait for the scan (finish reaps its own group).
const reapScanGap = 250 * time.Millisecond

// start runs fork (which starts a leader and returns its pid, 0 when it
// failed), keeping scans off until it returns, and registers the leader
// and its group. A nil reaper just runs fork.
func (r *reaper) start(fork func() int) {
	if r == nil {
		fork()
		return
	}
	r.mu.Lock()
	r.starting++
	r.mu.Unlock()
	pid := fork()
	r.mu.Lock()
	r.starting--
	if pid > 0 {
		r.leaders[pid] = true
		r.groups[pid] = new(orphanUsage)
	}
	again := r.starting == 0 && r.skipped
	r.mu.Unlock()
	if again {
		r.poke()
	}
}

// poke asks the reaper's goroutine for a scan.
func (r *reaper) poke() {
	select {
	case r.sig <- syscall.SIGCHLD:
	default:
	}
}

// finish is called once the leader pid has been reaped and what was left
// of its group killed. It reaps the group's members (dying orphans now
// children of the supervisor) until none is left or deadline passes, and
// returns what the group's orphans used. A nil reaper returns zero.
func (r *reaper) finish(pid int, deadline time.Time) orphanUsage {
	if r == nil {
		return orphanUsage{}
	}
	r.mu.Lock()
	delete(r.leaders, pid)
	// Most groups are empty once their leader is reaped: one look, with
	// no timer and no place among the waiters.
	if !r.reapGroup(pid) {
		defer r.mu.Unlock()
		return r.endGroupLocked(pid)
	}
	poke := make(chan struct{}, 1)
	r.waiters[poke] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiters, poke)
		r.mu.Unlock()
	}()
	// A member whose parent is still dying is not ours to reap yet: it is
	// reparented when its parent exits. Look again on each scan, and
	// every few milliseconds.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-poke:
		case <-tick.C:
		}
		r.mu.Lock()
		left := r.reapGroup(pid)
		if !left || !time.Now().Before(deadline) {
			u := r.endGroupLocked(pid)
			r.mu.Unlock()
			if left {
				r.log.Warn("processes of a job's group outlived its end; their usage is not counted", "pgid", pid)
			}
			return u
		}
		r.mu.Unlock()
	}
}

// endGroupLocked forgets group pgid and returns what its orphans used. mu
// is held.
func (r *reaper) endGroupLocked(pgid int) orphanUsage {
	u := *r.groups[pgid]
	delete(r.groups, pgid)
	return u
}

// reapGroup reaps the zombies of group pgid among the supervisor's
// children, adding their usage, and reports whether members are left
// (children of the supervisor still running, or processes of the group
// that are someone else's children). The leader is reaped already. mu is
// held.
func (r *reaper) reapGroup(pgid int) bool {
	g := r.groups[pgid]
	for {
		var ru syscall.Rusage
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-pgid, &ws, syscall.WNOHANG, &ru)
		switch {
		case err == syscall.EINTR:
			continue
		case pid > 0:
			g.add(&ru)
			continue
		case errors.Is(err, syscall.ECHILD):
			// None of the group is our child: gone, unless a member is
			// another's child that will be ours once its parent is
			// reaped. A zombie whose parent left the group (setsid) and
			// lives on is no member that runs: it is not waited for.
			return syscall.Kill(-pgid, 0) != syscall.ESRCH && groupRuns(pgid)
		}
		return true // children of the group still running
	}
}

func (g *orphanUsage) add(ru *syscall.Rusage) {
	g.n++
	g.cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	g.maxRSSKiB = max(g.maxRSSKiB, ru.Maxrss)
}

// scan reaps the supervisor's zombie children that are not leaders, each
// counted for the attempt of its process group (when there is one), and
// pokes the attempts that wait in finish.
func (r *reaper) scan() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.skipped = r.starting > 0; r.skipped {
		return // the last start asks again
	}
	for _, pid := range children() {
		if r.leaders[pid] {
			continue
		}
		zombie, pgid, ok := procState(pid)
		if !ok || !zombie || pgid == r.self || !r.strays && r.groups[pgid] == nil {
			continue
		}
		var ru syscall.Rusage
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, &ru)
		if err != nil || got != pid {
			continue
		}
		if g := r.groups[pgid]; g != nil {
			g.add(&ru)
		} else {
			r.log.Debug("reaped an orphan of no attempt", "pid", pid, "pgid", pgid)
		}
	}
	for w := range r.waiters {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// children lists the pids of the calling process's children, from every
// thread's /proc children file (a child belongs to the thread that forked
// it, or that it was reparented to).
func children() []int {
	tasks, _ := os.ReadDir("/proc/self/task")
	var pids []int
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
		if err != nil {
			continue
		}
		for _, s := range bytes.Fields(b) {
			if pid, err := strconv.Atoi(string(s)); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// groupRuns reports whether a process of group pgid is alive and not a
// zombie, from /proc: called only once the group has no child of ours
// left and kill still finds a member.
func groupRuns(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true // cannot tell: as if it ran
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if zombie, g, ok := procState(pid); ok && g == pgid && !zombie {
			return true
		}
	}
	return false
}

// procState reads from /proc/PID/stat whether pid is a zombie and its
// process group.
func procState(pid int) (zombie bool, pgid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false, 0, false
	}
	// pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false, 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 4 {
		return false, 0, false
	}
	pgid, err = strconv.Atoi(string(f[2]))
	if err != nil {
		return false, 0, false
	}
	return string(f[0]) == "Z", pgid, true
}
