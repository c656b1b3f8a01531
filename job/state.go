package job

import (
	"fmt"
	"strings"
)

// State is where a job is in its life. The zero value is not a state.
type State int32

const (
	// Pending: accepted and durable. Waits for its dependencies, its backoff
	// (NotBefore), quota and a worker. Left by the scheduler (to Scheduled),
	// by a cancel, or by a failed dependency (to Cancelled).
	Pending State = iota + 1
	// Scheduled: assigned to a worker, written durably before the assignment
	// is sent. Left when the agent reports the process started (Running),
	// when it cannot start it (Failed), or when the worker is lost.
	Scheduled
	// Running: the agent reported the process started. Left when the agent
	// reports its end, or when the worker is lost.
	Running
	// Completed: the process exited 0. Terminal.
	Completed
	// Failed: non-zero exit, start error, timeout or worker lost, with no
	// retries left; Reason says which. Terminal.
	Failed
	// Cancelled: by a user, or because a dependency did not complete. Terminal.
	Cancelled
)

var stateNames = [...]string{
	Pending:   "PENDING",
	Scheduled: "SCHEDULED",
	Running:   "RUNNING",
	Completed: "COMPLETED",
	Failed:    "FAILED",
	Cancelled: "CANCELLED",
}

// States lists every state in order.
var States = []State{Pending, Scheduled, Running, Completed, Failed, Cancelled}

func (s State) String() string {
	if s >= Pending && s <= Cancelled {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Valid reports whether s is one of the six states.
func (s State) Valid() bool { return s >= Pending && s <= Cancelled }

// Terminal reports whether no transition leaves s.
func (s State) Terminal() bool { return s == Completed || s == Failed || s == Cancelled }

// Active reports whether a job in s holds resources on a worker.
func (s State) Active() bool { return s == Scheduled || s == Running }

// ParseState reads a state name, case-insensitively.
func ParseState(name string) (State, error) {
	for _, s := range States {
		if strings.EqualFold(name, s.String()) {
			return s, nil
		}
	}
	return 0, Invalid("state", "%q is not a state; use one of PENDING, SCHEDULED, RUNNING, COMPLETED, FAILED, CANCELLED", name)
}

// transitions is the one table of legal moves. A move back to Pending is a
// retry and must come with attempt+1.
var transitions = map[State][]State{
	Pending:   {Scheduled, Cancelled, Failed},
	Scheduled: {Running, Pending, Completed, Failed, Cancelled},
	Running:   {Pending, Completed, Failed, Cancelled},
}

// CanTransition reports whether a job may move from one state to another.
// A Running job may also be rewritten in place (from == to == Running) to
// record a cancel request; no other self-move is legal.
func CanTransition(from, to State) bool {
	if from == Running && to == Running {
		return true
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}
