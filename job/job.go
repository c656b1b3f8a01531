package job

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
)

// Defaults applied by Spec.Normalize.
const (
	DefaultTenant   = "default"
	DefaultPriority = 500
	DefaultRows     = 24
	DefaultCols     = 80
	DefaultBackoff  = time.Second
	MaxBackoff      = 5 * time.Minute
)

// Resources is what a job asks of a worker, or what a worker offers.
type Resources struct {
	CPUMillis int64 // thousandths of a core; 0 asks for none
	MemoryMiB int64 // 0 asks for none
	Slots     int64 // job slots; a job takes at least 1
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	return Resources{r.CPUMillis + o.CPUMillis, r.MemoryMiB + o.MemoryMiB, r.Slots + o.Slots}
}

// Sub returns r - o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{r.CPUMillis - o.CPUMillis, r.MemoryMiB - o.MemoryMiB, r.Slots - o.Slots}
}

// Scale returns r with every dimension multiplied by f, rounded down.
func (r Resources) Scale(f float64) Resources {
	return Resources{int64(float64(r.CPUMillis) * f), int64(float64(r.MemoryMiB) * f), int64(float64(r.Slots) * f)}
}

// IsZero reports whether every dimension of r is zero.
func (r Resources) IsZero() bool { return r == Resources{} }

// Covers reports whether r has room for o in every dimension.
func (r Resources) Covers(o Resources) bool {
	return r.CPUMillis >= o.CPUMillis && r.MemoryMiB >= o.MemoryMiB && r.Slots >= o.Slots
}

// Spec is what the user asked to run. It does not change after submit.
type Spec struct {
	Name      string
	Tenant    string            // default "default"
	Labels    map[string]string // k=v, searchable with List
	Command   []string          // argv; exactly one of Command and Script
	Script    string            // run by /bin/sh -c
	Env       map[string]string
	SecretEnv map[string]string // values masked in logs; sealed (package seal) once the server has given the job its id
	WorkDir   string
	NoPTY     bool   // capture stdout/stderr as pipes instead of a PTY
	Rows      uint32 // PTY size; default 24x80
	Cols      uint32
	Timeout   time.Duration // 0: none
	Retries   int           // extra attempts after the first fails
	Backoff   time.Duration // first retry delay, doubled each attempt
	Priority  int           // 0–1000, higher first
	Deadline  time.Time     // optional SLA: the job should start by then; zero: none
	Resources Resources
	Selector  map[string]string // labels a worker must have
	DependsOn []string          // job ids that must complete first
	// Preemptible lets the scheduler stop this job for a tenant below its
	// share, even when its tenant is not preemptible.
	Preemptible bool
	// Stdin says what feeds the job's standard input (hodei run sets it).
	Stdin Stdin

	// Set by the server for jobs of a pipeline or an array.
	Pipeline          string // pipeline id
	Step              string // step name
	ContinueOnFailure bool   // dependents run even when this job failed
	Array             string // array id
	ArrayIndex        int    // index in the array; also HODEI_ARRAY_INDEX in Env
	ArrayLimit        int    // most jobs of the array running at once; 0: no limit

	// Owner is who submitted the job: the name of the caller's token (or
	// of its certificate), set by the server from the call's credentials,
	// never from the request; "" when the server runs without
	// authentication. Usage accounting groups by it (hodei usage
	// --group-by user).
	Owner string
}

// Stdin says what feeds a job's standard input. Input reaches the job
// through the server's Attach stream and the agent; see DESIGN.md.
type Stdin int

// What feeds a job's standard input.
const (
	// StdinNone: nothing. Without a PTY the job's stdin is /dev/null; a
	// PTY still takes what `hodei attach` types.
	StdinNone Stdin = iota
	// StdinTerminal: keys typed at a terminal (`hodei run` from one).
	// Without a PTY the job's stdin is a pipe.
	StdinTerminal
	// StdinStream: bytes from a pipe or file, ended by EOF. Without a PTY
	// the job's stdin is a pipe; with one, the PTY does not echo them.
	StdinStream
)

// Valid reports whether s is one of the defined values.
func (s Stdin) Valid() bool { return s >= StdinNone && s <= StdinStream }

// String is the name `jobs get` shows: none, terminal or stream.
func (s Stdin) String() string {
	switch s {
	case StdinNone:
		return "none"
	case StdinTerminal:
		return "terminal"
	case StdinStream:
		return "stream"
	}
	return fmt.Sprintf("stdin(%d)", int(s))
}

// Normalize fills defaults in place. It is idempotent.
func (s *Spec) Normalize() {
	if s.Tenant == "" {
		s.Tenant = DefaultTenant
	}
	if s.Resources.Slots == 0 {
		s.Resources.Slots = 1
	}
	if s.Rows == 0 {
		s.Rows = DefaultRows
	}
	if s.Cols == 0 {
		s.Cols = DefaultCols
	}
	if s.Backoff == 0 {
		s.Backoff = DefaultBackoff
	}
}

// Argv returns the process argument vector the spec describes.
func (s *Spec) Argv() []string {
	if s.Script != "" {
		return []string{"/bin/sh", "-c", s.Script}
	}
	return s.Command
}

// Job is one submitted spec and its status. Shared values are immutable:
// change a Clone and publish the clone.
type Job struct {
	ID   string // ULID, time-ordered
	Spec Spec

	State   State
	Attempt int    // 1 for the first run; +1 on every retry
	Version uint64 // bumped by every write
	Worker  string // worker id of the current or last attempt
	// ExitCode of the last finished attempt; -1 when it did not exit normally.
	ExitCode int
	// Signal that ended the last finished attempt's process (ExitCode is
	// then -1), whoever sent it; 0 when it exited by itself or never ran.
	Signal int
	Reason string // why the job is where it is (failure, cancel, retry)
	// CancelRequested holds the reason of a stop sent to the agent of a
	// Running job, as people read it; Stop says what the stop is for, and
	// the final state follows Stop.
	CancelRequested string
	// Stop is the kind of the stop under way (NoStop when none).
	Stop StopKind
	// Preemptions counts the attempts that ended by preemption; they do not
	// count against Spec.Retries.
	Preemptions int
	// DeadlineMissed is set when the job was first dispatched after its
	// Spec.Deadline (an SLA miss).
	DeadlineMissed bool

	CreatedAt   time.Time
	ScheduledAt time.Time
	StartedAt   time.Time
	FinishedAt  time.Time
	NotBefore   time.Time // backoff: not eligible before this instant

	Usage Usage // of the last finished attempt
}

// Usage is what a finished attempt consumed, as the agent measured it.
type Usage struct {
	// Attempt is the attempt measured; 0 when none has ended. The store
	// records an attempt's usage (store/usage.go) only from the update
	// that ends that attempt and carries its number here.
	Attempt int
	// Wall is how long the attempt's process ran, from its start to its
	// leader's exit, by the agent's monotonic clock; for an attempt the
	// server ended on its own (worker lost), from its start to then by
	// the server's clock.
	Wall time.Duration
	// CPUTime is user+system time of the attempt's processes: its leader
	// with the descendants it waited for, plus the orphans of its process
	// group that the agent's supervisor reaped (see DESIGN.md).
	CPUTime time.Duration
	// MaxRSSKiB is the largest resident set of any one of those processes.
	MaxRSSKiB int64
}

// SlotTime is slots × Wall: what the attempt held of its worker's slots.
func (u Usage) SlotTime(slots int64) time.Duration {
	if slots < 1 {
		slots = 1
	}
	return time.Duration(slots) * u.Wall
}

// Clone returns a deep copy of j.
func (j *Job) Clone() *Job {
	c := *j
	c.Spec.Labels = maps.Clone(j.Spec.Labels)
	c.Spec.Command = slices.Clone(j.Spec.Command)
	c.Spec.Env = maps.Clone(j.Spec.Env)
	c.Spec.SecretEnv = maps.Clone(j.Spec.SecretEnv)
	c.Spec.Selector = maps.Clone(j.Spec.Selector)
	c.Spec.DependsOn = slices.Clone(j.Spec.DependsOn)
	return &c
}

// AttemptsLeft reports whether a failed attempt may be retried.
func (j *Job) AttemptsLeft() bool { return j.Attempt-j.Preemptions <= j.Spec.Retries }

// RetryDelay is the backoff before the attempt after j.Attempt: Backoff
// doubled for every earlier retry, capped at MaxBackoff.
func (j *Job) RetryDelay() time.Duration {
	d := j.Spec.Backoff
	if d <= 0 {
		d = DefaultBackoff
	}
	for i := 1; i < j.Attempt-j.Preemptions && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// MaxIDLen bounds job and worker ids in the store.
const MaxIDLen = 256

// CheckNew checks jobs about to be inserted: each must have an id and be
// Pending on its first attempt.
func CheckNew(jobs []*Job) error {
	for _, j := range jobs {
		switch {
		case j == nil:
			return Invalid("job", "must not be nil")
		case j.ID == "" || len(j.ID) > MaxIDLen:
			return Invalid("id", "%q must be 1 to %d bytes", j.ID, MaxIDLen)
		case j.State != Pending:
			return Invalid("state", "job %s: a new job must be PENDING, not %s", j.ID, j.State)
		case j.Attempt != 1:
			return Invalid("attempt", "job %s: a new job must have attempt 1, not %d", j.ID, j.Attempt)
		}
	}
	return nil
}

// Expect is the compare-and-swap key of a transition: the state and attempt
// the writer read — the attempt is the fencing token that rejects reports
// of an old attempt — and, when not zero, the exact version, so that two
// writers that both read the same Running job (a cancel request and a
// result, say) cannot both win. A write whose Expect no longer matches
// fails with ErrConflict.
type Expect struct {
	State   State
	Attempt int
	Version uint64 // 0: any version
}

// Expected returns the CAS key of j as it is now, version included.
func (j *Job) Expected() Expect { return Expect{j.State, j.Attempt, j.Version} }

// Matches reports whether a stored job in state at attempt and version
// satisfies e.
func (e Expect) Matches(state State, attempt int, version uint64) bool {
	return state == e.State && attempt == e.Attempt && (e.Version == 0 || version == e.Version)
}

// Update is one compare-and-swap write: replace the job Next.ID if it is
// still in Expect. The store bumps Next.Version.
type Update struct {
	Expect Expect
	Next   *Job
	// Create materializes a task of an array (see Array): the record must
	// not exist yet, and Expect is the task as it was before (Pending on
	// attempt 1, or Cancelled with its array).
	Create bool
	// Prev is the version the writer read, when it has it (nil: not
	// given). When its Version is the stored one, the store takes what it
	// needs of the old record (its index keys) from Prev instead of reading
	// and decoding it again.
	Prev *Job
}

// Change is the update that replaces cur, as the writer read it, by next.
func Change(cur, next *Job) Update {
	return Update{Expect: cur.Expected(), Next: next, Prev: cur}
}

// Check validates an update against the transition table: the move must be
// legal and a move back to Pending must bump the attempt, any other keep it.
func (u Update) Check() error {
	from, to := u.Expect.State, u.Next.State
	if !CanTransition(from, to) {
		return Conflict(u.Next.ID, "illegal transition %s → %s", from, to)
	}
	want := u.Expect.Attempt
	if to == Pending {
		want++
	}
	if u.Next.Attempt != want {
		return Conflict(u.Next.ID, "%s → %s with attempt %d, want %d", from, to, u.Next.Attempt, want)
	}
	return nil
}

// StopKind says why a Running job is being stopped, and so how its attempt
// ends once its agent confirms.
type StopKind uint8

const (
	// NoStop: no stop is under way.
	NoStop StopKind = iota
	// StopCancel: a user's or a pipeline's cancel; the job ends Cancelled.
	StopCancel
	// StopTimeout: the spec's timeout passed; the attempt fails as timed
	// out and retries per the policy.
	StopTimeout
	// StopRequeue: a preemption or the end of a burst; the job goes back to
	// Pending on a new attempt that does not use a retry.
	StopRequeue
)

// String names the kind as logs show it.
func (k StopKind) String() string {
	switch k {
	case NoStop:
		return "none"
	case StopCancel:
		return "cancel"
	case StopTimeout:
		return "timeout"
	case StopRequeue:
		return "requeue"
	}
	return "StopKind(" + strconv.Itoa(int(k)) + ")"
}

// Brief is what recovery needs of a stored job, read without decoding all
// of it: enough to queue and count a waiting job and to know which array
// task it is. Active jobs are read in full. Its strings and maps are its
// own (not aliases of a buffer), so keeping a Brief keeps nothing else.
type Brief struct {
	ID         string
	State      State
	Attempt    int
	Version    uint64
	Tenant     string
	Priority   int
	Resources  Resources
	Selector   map[string]string
	DependsOn  []string
	Array      string
	ArrayLimit int
	Pipeline   string
	CreatedAt  time.Time
	NotBefore  time.Time
	Deadline   time.Time
}

// Brief returns the brief of j; it shares j's selector and dependencies.
func (j *Job) Brief() Brief {
	return Brief{
		ID: j.ID, State: j.State, Attempt: j.Attempt, Version: j.Version, Tenant: j.Spec.Tenant,
		Priority: j.Spec.Priority, Resources: j.Spec.Resources, Selector: j.Spec.Selector,
		DependsOn: j.Spec.DependsOn, Array: j.Spec.Array, ArrayLimit: j.Spec.ArrayLimit, Pipeline: j.Spec.Pipeline,
		CreatedAt: j.CreatedAt, NotBefore: j.NotBefore, Deadline: j.Spec.Deadline,
	}
}
