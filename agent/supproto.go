package agent

// The protocol between the agent (the network process) and a supervisor
// (the process that holds the jobs): frames over a unix socket, each a
// 4-byte big-endian length and a JSON object (supMsg). JSON rather than
// protobuf keeps the protocol readable in a debugger and free of generated
// code; its fields are named by explicit tags, so that renaming a Go field
// does not change the wire, and unknown fields are ignored, so that an
// agent and a supervisor one version apart understand each other. The
// version in hello and welcome (supProto) is raised only by a change that
// an older peer would misread.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// supProto is the version of the agent ↔ supervisor protocol.
const supProto = 1

// maxSupFrame bounds a frame: a start with its env, or an input chunk
// (InputWindow) in base64, fit with room to spare. A peer sending a larger
// one is cut off.
const maxSupFrame = 1 << 20

// Operations of supMsg. Arrows say who sends each.
const (
	opHello     = "hello"      // agent → sup: Proto, Version (the agent's)
	opWelcome   = "welcome"    // sup → agent: Proto, Version, Pid, Retired, Attempts
	opStart     = "start"      // agent → sup: Job, Attempt, Spec
	opStarted   = "started"    // sup → agent: Job, Attempt, Pid, At (reply to start)
	opExit      = "exit"       // sup → agent: Job, Attempt, Exit, Out, Err (reply to a failed start, or pushed at the end)
	opProgress  = "progress"   // sup → agent: Job, Attempt, Out, Err (bytes written to the spool files so far)
	opAck       = "ack"        // agent → sup: Job, Attempt, Stream, Offset (the server holds the bytes before)
	opOpenInput = "open-input" // agent → sup: Job, Attempt; answered with a credit with Credit.Opened
	opInput     = "input"      // agent → sup: Job, Attempt, Input
	opCredit    = "credit"     // sup → agent: Job, Attempt, Credit
	opResize    = "resize"     // agent → sup: Job, Attempt, Rows, Cols
	opStop      = "stop"       // agent → sup: Job, Attempt, Reason, Grace
	opKill      = "kill"       // agent → sup: Job, Attempt (SIGKILL now: the agent no longer wants it)
	opRelease   = "release"    // agent → sup: Job, Attempt (the result is in the agent's journal: forget it)
	opRetire    = "retire"     // agent → sup: no new starts; exit once the last attempt is released
	opGoodbye   = "goodbye"    // agent → sup: the agent is leaving; Exit set: exit once idle
	opError     = "error"      // sup → agent: Reason (answer to a hello it refuses; the connection closes)
)

// supMsg is one frame. Which fields are set depends on Op (see the op
// constants); the rest are left out.
type supMsg struct {
	Op      string `json:"op"`
	Job     string `json:"job,omitempty"`
	Attempt int    `json:"attempt,omitempty"`

	Proto    int         `json:"proto,omitempty"`
	Version  string      `json:"version,omitempty"`
	Pid      int         `json:"pid,omitempty"`
	Retired  bool        `json:"retired,omitempty"`
	Attempts []supHeld   `json:"attempts,omitempty"`
	Spec     *wireSpec   `json:"spec,omitempty"`
	At       int64       `json:"at,omitempty"` // unix nanoseconds
	Exit     *wireExit   `json:"exit,omitempty"`
	Out      int64       `json:"out,omitempty"`
	Err      int64       `json:"err,omitempty"`
	Stream   int         `json:"stream,omitempty"`
	Offset   int64       `json:"offset,omitempty"`
	Input    *wireInput  `json:"input,omitempty"`
	Credit   *wireCredit `json:"credit,omitempty"`
	Rows     uint16      `json:"rows,omitempty"`
	Cols     uint16      `json:"cols,omitempty"`
	Reason   string      `json:"reason,omitempty"`
	Grace    int64       `json:"grace_ns,omitempty"`
	ExitIdle bool        `json:"exit_idle,omitempty"`
}

// supHeld is an attempt a supervisor holds, as its welcome lists it.
type supHeld struct {
	Job     string    `json:"job"`
	Attempt int       `json:"attempt"`
	Pid     int       `json:"pid,omitempty"`
	At      int64     `json:"at,omitempty"`
	NoPTY   bool      `json:"no_pty,omitempty"`
	Out     int64     `json:"out,omitempty"`
	Err     int64     `json:"err,omitempty"`
	Exit    *wireExit `json:"exit,omitempty"` // nil while it runs
	// Starting: its start was taken and the process is not yet started;
	// its started (or exit) follows on this connection. Pid, At, Out and
	// Err are not set.
	Starting bool `json:"starting,omitempty"`
}

// wireSpec is an attemptSpec and the options to run it with. The agent
// resolves the user (User; nil: the supervisor's own) so that the policy
// and its state stay in the agent.
type wireSpec struct {
	Argv        []string          `json:"argv"`
	Env         map[string]string `json:"env,omitempty"`
	SecretEnv   map[string]string `json:"secret_env,omitempty"`
	Dir         string            `json:"dir,omitempty"`
	NoPTY       bool              `json:"no_pty,omitempty"`
	Stdin       int               `json:"stdin,omitempty"`
	Rows        uint16            `json:"rows,omitempty"`
	Cols        uint16            `json:"cols,omitempty"`
	Timeout     int64             `json:"timeout_ns,omitempty"`
	User        *wireUser         `json:"user,omitempty"`
	BufferLimit int64             `json:"buffer_limit,omitempty"`
	KillGrace   int64             `json:"kill_grace_ns,omitempty"`
}

// wireUser is a runUser.
type wireUser struct {
	Name   string   `json:"name"`
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups,omitempty"`
	Home   string   `json:"home,omitempty"`
}

// wireExit is an exit.
type wireExit struct {
	Outcome   int    `json:"outcome"`
	ExitCode  int    `json:"exit_code"`
	Signal    int    `json:"signal,omitempty"`
	Reason    string `json:"reason,omitempty"`
	CPUTime   int64  `json:"cpu_ns,omitempty"`
	MaxRSSKiB int64  `json:"max_rss_kib,omitempty"`
	Finished  int64  `json:"finished"` // unix nanoseconds
	// Wall and Orphans (usage accounting) are new in this version of the
	// protocol without raising supProto: a supervisor of an older binary
	// sends neither (the agent then takes the wall time from the start
	// and end times it has), and an older agent ignores them.
	Wall    int64 `json:"wall_ns,omitempty"`
	Orphans int   `json:"orphans,omitempty"`
	// OutputLost and WriteErr are exit's; a supervisor of an older
	// binary sends neither.
	OutputLost string `json:"output_lost,omitempty"`
	WriteErr   string `json:"write_err,omitempty"`
}

// wireInput is a piece of a job's input (jobInput.put's arguments).
type wireInput struct {
	Offset       int64  `json:"offset"`
	Data         []byte `json:"data,omitempty"`
	EOF          bool   `json:"eof,omitempty"`
	Source       string `json:"source,omitempty"`
	SourceOffset int64  `json:"source_offset,omitempty"`
}

// wireCredit is a jobInput's credit (the InputCredit fields it sets).
type wireCredit struct {
	Opened       bool   `json:"opened,omitempty"`
	Offset       int64  `json:"offset,omitempty"`
	Limit        int64  `json:"limit,omitempty"`
	Closed       bool   `json:"closed,omitempty"`
	Written      int64  `json:"written,omitempty"`
	Source       string `json:"source,omitempty"`
	SourceOffset int64  `json:"source_offset,omitempty"`
}

func toWireExit(e exit) *wireExit {
	return &wireExit{Outcome: int(e.Outcome), ExitCode: e.ExitCode, Signal: e.Signal, Reason: e.Reason,
		CPUTime: int64(e.CPUTime), MaxRSSKiB: e.MaxRSSKiB, Finished: e.Finished.UnixNano(),
		OutputLost: e.OutputLost, WriteErr: e.WriteErr, Wall: int64(e.Wall), Orphans: e.Orphans}
}

func (w *wireExit) exit() exit {
	return exit{Outcome: outcome(w.Outcome), ExitCode: w.ExitCode, Signal: w.Signal, Reason: w.Reason,
		CPUTime: time.Duration(w.CPUTime), MaxRSSKiB: w.MaxRSSKiB, Finished: time.Unix(0, w.Finished),
		OutputLost: w.OutputLost, WriteErr: w.WriteErr, Wall: time.Duration(w.Wall), Orphans: w.Orphans}
}

// supReadBuffer is the read buffer of each end of a supervisor connection.
const supReadBuffer = 64 << 10

// errFrameTooLarge is returned by readFrame for a frame over maxSupFrame.
var errFrameTooLarge = errors.New("frame too large")

// appendFrame appends m as one frame to buf and returns it.
func appendFrame(buf []byte, m *supMsg) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return buf, fmt.Errorf("encode %s: %w", m.Op, err)
	}
	if len(b) > maxSupFrame {
		return buf, fmt.Errorf("encode %s: %d bytes: %w", m.Op, len(b), errFrameTooLarge)
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(b)))
	return append(buf, b...), nil
}

// readFrame reads one frame from r into m (reset first), reusing buf.
func readFrame(r io.Reader, buf []byte, m *supMsg) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxSupFrame {
		return buf, fmt.Errorf("%d bytes: %w", n, errFrameTooLarge)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return buf, err
	}
	*m = supMsg{}
	if err := json.Unmarshal(buf, m); err != nil {
		return buf, fmt.Errorf("decode frame: %w", err)
	}
	if m.Op == "" {
		return buf, errors.New("decode frame: no op")
	}
	return buf, nil
}
