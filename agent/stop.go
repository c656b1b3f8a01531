package agent

// What the agent does when it is told to stop (Run's ctx ends: SIGTERM).

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// StopMode says what Run does with the jobs when its ctx ends.
type StopMode int

// Stop modes.
const (
	// StopJobs stops every running job (SIGTERM, SIGKILL after the kill
	// grace), journals the results for the next run, and lets the
	// supervisors exit. The zero value: an agent embedded in another
	// program (serve --dev, tests) leaves nothing behind.
	StopJobs StopMode = iota
	// Detach tells the server (Goodbye), leaves the running jobs to their
	// supervisor and returns: the next agent process on the data dir
	// reattaches them, resumes their output and reports their results.
	// What `hodei agent` does on SIGTERM by default.
	Detach
	// Drain tells the server (Goodbye with drain: it sends no new work),
	// waits up to Config.DrainTimeout for the running jobs to end and be
	// delivered, stops the rest with the kill grace, delivers them, and
	// lets the supervisors exit (`hodei agent --drain-on-stop D`).
	Drain
)

// stopPoll is how often a drain looks whether its jobs are all delivered.
const stopPoll = 50 * time.Millisecond

// goodbyeWait bounds how long a detaching agent waits for the server to
// end the stream after its Goodbye.
const goodbyeWait = 5 * time.Second

// stop runs when Run's ctx ends: it does what the stop mode says and then
// ends the sessions (endSessions).
func (a *Agent) stop(endSessions func()) {
	running := a.taskCount()
	switch a.cfg.OnStop {
	case Detach:
		a.log.Info("stopping: detaching from the jobs", "jobs", running)
		a.goodbye(false, running, goodbyeWait)
		endSessions()
	case Drain:
		a.log.Info("stopping: draining", "jobs", running, "wait", a.cfg.DrainTimeout)
		a.goodbye(true, running, 0)
		a.waitDelivered(time.Now().Add(a.cfg.DrainTimeout))
		left := a.snapshotTasks()
		stopped := 0
		for _, t := range left {
			<-t.ready
			if t.att != nil && !t.att.isDone() {
				t.att.Stop("agent draining: --drain-on-stop ran out", a.cfg.KillGrace)
				stopped++
			}
		}
		if stopped > 0 {
			a.log.Info("drain time ran out: stopping the jobs left", "jobs", stopped, "grace", a.cfg.KillGrace)
			a.waitDelivered(time.Now().Add(a.cfg.KillGrace + goodbyeWait))
		}
		undelivered := a.taskCount()
		a.log.Info("drained", "jobs_ended", running-stopped, "jobs_stopped", stopped, "undelivered", undelivered)
		endSessions()
	default:
		endSessions()
		for _, t := range a.snapshotTasks() {
			<-t.ready
			if t.att != nil {
				t.att.Stop("agent stopping", a.cfg.KillGrace)
			}
		}
	}
}

// finish ends Run: it waits for the watchers (with Detach, those of
// running jobs return at once) and leaves the supervisors.
func (a *Agent) finish() {
	detach := a.cfg.OnStop == Detach
	if detach {
		close(a.detached)
	}
	a.watchers.Wait()
	pids := a.sups.pids()
	running, ended := 0, 0
	for _, t := range a.snapshotTasks() {
		switch {
		case t.att != nil && !t.att.isDone():
			running++
		case t.att != nil:
			ended++ // its result is journaled, not yet delivered
		}
	}
	a.sups.leave(!detach)
	if detach {
		msg := fmt.Sprintf("detached, %d jobs keep running", running)
		if len(pids) > 0 {
			msg += " under supervisor pid " + joinPids(pids)
		}
		if ended > 0 {
			msg += fmt.Sprintf("; %d ended before the agent stopped, and their results wait in its journal for the next agent", ended)
		}
		a.log.Info(msg, "jobs", running, "undelivered", ended)
	}
}

// goodbye tells the server the agent is going, when it is connected, and
// waits up to wait for the server to end the stream.
func (a *Agent) goodbye(drain bool, running int, wait time.Duration) {
	s := a.live.Load()
	if s == nil {
		return
	}
	if !s.send(s.ctrl, &pb.AgentMessage{Msg: &pb.AgentMessage_Goodbye{Goodbye: &pb.Goodbye{Drain: drain, Running: int32(running)}}}) {
		return
	}
	if wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
	case <-t.C:
	}
}

// waitDelivered waits until the agent holds no task (every result
// delivered and acknowledged) or the deadline passes.
func (a *Agent) waitDelivered(deadline time.Time) {
	tick := time.NewTicker(stopPoll)
	defer tick.Stop()
	for a.taskCount() > 0 && time.Now().Before(deadline) {
		<-tick.C
	}
}

// taskCount returns the number of tasks the agent holds, without copying
// them (a drain polls it).
func (a *Agent) taskCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.tasks)
}

// joinPids is "12" or "12, 34".
func joinPids(pids []int) string {
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ", ")
}
