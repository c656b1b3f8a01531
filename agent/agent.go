package agent

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shirou/gopsutil/v3/mem"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// Config configures an Agent. Zero fields take the defaults shown.
type Config struct {
	Server  string            // gRPC address of `hodei serve`; required
	DataDir string            // worker id, journal and spool; required
	Name    string            // default: the hostname
	Slots   int64             // job slots offered; default: the number of CPUs
	Labels  map[string]string // matched by job selectors
	// BufferLimit is how many unacknowledged output bytes one job may have
	// before its PTY stops being read; default 8 MiB.
	BufferLimit int64
	// KillGrace is the SIGTERM → SIGKILL delay for timeouts and for stops
	// that do not name one; default 10 s.
	KillGrace time.Duration
	// DefaultUser is the user (name or uid) jobs run as, on an agent
	// running as root, when their tenant names none; default DefaultUser
	// (nobody). It must exist and must not be root. An agent not running
	// as root runs every job as itself and ignores it.
	DefaultUser string
	// AllowRoot lets a root agent run the jobs of a tenant whose run-as
	// user is root; without it they fail to start. Default false.
	AllowRoot   bool
	Version     string
	Logger      *slog.Logger      // default: discard
	DialOptions []grpc.DialOption // added after the defaults (the transport below)
	// Join is an agent token and CAFingerprint the cluster CA's sha256
	// fingerprint: with both, an agent that has no certificate yet joins
	// (see transport). Later starts use the certificate kept in
	// DATA-DIR/tls and need neither.
	Join, CAFingerprint string
	// Insecure connects without TLS or a certificate, to a server run with
	// --insecure-no-auth on a loopback address. Default false.
	Insecure bool
	// OnStop says what Run does with the jobs when its ctx ends: StopJobs
	// (the zero value), Detach or Drain (see StopMode).
	OnStop StopMode
	// DrainTimeout is how long Drain waits for running jobs before it stops
	// them; default DefaultDrainTimeout.
	DrainTimeout time.Duration
	// SupervisorExe is the binary the agent starts its supervisors from
	// (as `SupervisorExe agent supervise --data-dir DIR`); default
	// os.Executable(). A test binary serves that command through
	// MaybeSupervise.
	SupervisorExe string
	// OnConnect, when not nil, is told of each welcome from a server and
	// of failed attempts to connect (not all of them: the first, each new
	// reason, and then one every 30 s). Run calls it from its own
	// goroutine; it must not block. The logger says the same.
	OnConnect func(ConnectEvent)
}

// Defaults of Config.
const (
	DefaultBufferLimit = 8 << 20
	DefaultKillGrace   = 10 * time.Second
	// DefaultDrainTimeout is the default of Config.DrainTimeout.
	DefaultDrainTimeout = 30 * time.Second
	// The agent retries a lost server every 50 ms at first, then waiting
	// twice as long each time, up to 2.5–5 s (half of maxBackoff plus a
	// random part): a server back from a restart has each agent again
	// within 5 s, well inside a lease (3 × heartbeat + 5 s), and 10,000
	// agents dial it 2,000–4,000 times a second while it is away.
	maxBackoff = 5 * time.Second
	minBackoff = 100 * time.Millisecond
)

// Agent runs the jobs the server assigns to this host. Create it with New
// and run it with Run; it owns every goroutine it starts.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	id      string
	host    string
	cap     job.Resources
	conn    *grpc.ClientConn
	journal *journal
	users   *userPolicy
	sups    *supervisors
	disk    *diskHealth // whether the data dir takes the jobs' output and results

	// reattached are the tasks of attempts a supervisor held when the agent
	// started; Run starts their watchers. journaledHeld counts the other
	// attempts the supervisors held, whose results the journal had.
	reattached    []*task
	journaledHeld int
	// detached is closed when the agent leaves its running jobs to their
	// supervisors: their watchers return without a result.
	detached chan struct{}

	// lock is the flock on DataDir/agent.lock, held until Run returns.
	lock *os.File

	mu    sync.Mutex
	tasks map[ref]*task // guarded by mu

	// welcomed is set once a server accepted a Hello from this process;
	// until then Hello says the agent restarted.
	welcomed atomic.Bool
	// supsIntact: at the start no supervisor of the data dir was found
	// dead, so whatever the previous agent process started is held (see
	// Hello.supervisors_intact).
	supsIntact bool

	// live is the session of the current stream, nil between streams;
	// tests read what it holds.
	live atomic.Pointer[session]

	watchers sync.WaitGroup // one per live attempt, until its result is journaled

	// alive is received from by the loops that wait between heartbeats
	// and between connection attempts; see Alive.
	alive chan struct{}
}

// ref names one attempt.
type ref struct {
	job     string
	attempt int
}

// New prepares an agent: it locks DataDir (ErrLocked, at once, when
// another agent holds it), reads (or creates) the worker id there, detects
// the host's capacity, and loads the results a previous run could not
// deliver. The lock is held until Run returns.
func New(cfg Config) (_ *Agent, err error) {
	if cfg.Server == "" {
		return nil, job.Invalid("server", "is required")
	}
	if cfg.DataDir == "" {
		return nil, job.Invalid("data-dir", "is required")
	}
	if cfg.BufferLimit <= 0 {
		cfg.BufferLimit = DefaultBufferLimit
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.SupervisorExe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("supervisor binary: %w", err)
		}
		cfg.SupervisorExe = exe
	}
	if dir, err := filepath.Abs(cfg.DataDir); err == nil {
		cfg.DataDir = dir // the supervisor runs in /
	}
	host, _ := os.Hostname()
	if cfg.Name == "" {
		cfg.Name = host
	}
	if cfg.Slots <= 0 {
		cfg.Slots = int64(runtime.NumCPU())
	}
	users, err := newUserPolicy(cfg.DefaultUser, cfg.AllowRoot)
	if err != nil {
		return nil, err
	}
	cfg.DefaultUser = users.DefaultUser
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	id, err := workerID(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if users.DefaultUser == DynamicUser {
		if users.Dynamic, err = openTenantUIDs(filepath.Join(cfg.DataDir, tenantUIDsFile)); err != nil {
			return nil, err
		}
	}
	capacity := job.Resources{Slots: cfg.Slots, CPUMillis: int64(runtime.NumCPU()) * 1000}
	if vm, err := mem.VirtualMemory(); err == nil {
		capacity.MemoryMiB = int64(vm.Total >> 20)
	}
	a := &Agent{
		cfg: cfg, log: cfg.Logger.With("component", "agent", "worker", id), id: id, host: host,
		cap: capacity, users: users, tasks: make(map[ref]*task), lock: lock, detached: make(chan struct{}),
		alive: make(chan struct{}),
	}
	creds, err := a.transport(cfg)
	if err != nil {
		return nil, err
	}
	jr, err := openJournal(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(cfg.Server, append([]grpc.DialOption{creds}, cfg.DialOptions...)...)
	if err != nil {
		jr.close()
		return nil, fmt.Errorf("server %s: %w", cfg.Server, err)
	}
	a.conn, a.journal = conn, jr
	a.disk = newDiskHealth(a.log, cfg.DataDir, jr.spoolDir)
	if users.EUID != 0 && cfg.AllowRoot {
		a.log.Warn("allow-root has no effect: the agent does not run as root, so it runs every job as itself")
	}
	if users.EUID == 0 && users.DefaultUser != DynamicUser {
		a.log.Info("jobs of tenants without a run-as user all run as the default user, and can see each other's processes; "+
			"--default-user dynamic gives each tenant a user of its own", "default_user", users.DefaultUser)
	}
	a.sups = &supervisors{exe: cfg.SupervisorExe, dataDir: cfg.DataDir, version: cfg.Version, spoolDir: jr.spoolDir, a: a}
	held, keep, intact, err := a.sups.reattach()
	a.supsIntact = intact
	if err == nil {
		var recovered []*task
		if recovered, err = jr.recover(keep); err == nil {
			for _, t := range recovered {
				a.tasks[t.ref] = t
			}
		}
	}
	if err != nil {
		a.sups.leave(false)
		conn.Close()
		jr.close()
		return nil, err
	}
	for _, t := range held {
		if _, ok := a.tasks[t.ref]; ok {
			// Its result is journaled already: the journal's task delivers
			// it, and the supervisor may forget it.
			t.att.release()
			a.journaledHeld++
			continue
		}
		a.tasks[t.ref] = t
		a.reattached = append(a.reattached, t)
	}
	return a, nil
}

// ID is the worker id the agent registers under.
func (a *Agent) ID() string { return a.id }

// Name is the worker name the agent registers under (Config.Name, or the
// hostname).
func (a *Agent) Name() string { return a.cfg.Name }

// Slots is the number of job slots the agent offers.
func (a *Agent) Slots() int64 { return a.cap.Slots }

// workerID reads DataDir/worker-id, creating it on first use.
func workerID(dir string) (string, error) {
	path := filepath.Join(dir, "worker-id")
	b, err := os.ReadFile(path)
	if err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("worker id: %w", err)
	}
	var raw [8]byte
	crand.Read(raw[:])
	id := "w-" + hex.EncodeToString(raw[:])
	if err := writeFileAtomic(path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("worker id: %w", err)
	}
	return id, nil
}

// Run connects to the server and serves it until ctx ends, reconnecting
// with exponential backoff and jitter whenever the stream breaks; running
// jobs keep running meanwhile. When ctx ends it stops the running jobs
// (SIGTERM, then SIGKILL after the kill grace), journals their results for
// the next run, and returns.
func (a *Agent) Run(ctx context.Context) error {
	defer a.lock.Close()
	defer a.conn.Close()
	defer a.journal.close()
	for _, t := range a.reattached {
		a.watchers.Add(1)
		go a.watch(t)
	}
	if len(a.reattached) > 0 || a.journaledHeld > 0 {
		// The supervisors' count (logged as each is reattached) includes
		// attempts whose results the journal has already: those are
		// delivered from the journal.
		a.log.Info("reattached jobs", "jobs", len(a.reattached), "results_in_journal", a.journaledHeld, "supervisors", a.sups.pids())
	}
	a.reattached = nil
	// The sessions run on their own context, which the stop below ends once
	// the server was told (and, with Drain, the jobs delivered).
	sctx, cancelSessions := context.WithCancel(context.Background())
	defer cancelSessions()
	stopped := make(chan struct{})
	stopDone := make(chan struct{})
	go func() {
		defer close(stopDone)
		select {
		case <-ctx.Done():
		case <-stopped:
			return
		}
		a.stop(cancelSessions)
	}()
	defer func() {
		close(stopped)
		<-stopDone
		a.finish()
	}()
	backoff := minBackoff
	var reports failureReports
	for {
		start := time.Now()
		err := a.session(sctx, reports.connected)
		if ctx.Err() != nil || sctx.Err() != nil {
			<-stopDone // the stop has ended the sessions
			return nil
		}
		switch {
		case status.Code(err) == codes.PermissionDenied:
			// Revoked, or its certificate no longer speaks for it:
			// retrying cannot help, and its jobs were given up.
			return fmt.Errorf("the server refused this agent (to serve again it must join anew, with a fresh --data-dir): %w", err)
		case status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "failed to verify certificate"):
			// The server's certificate is not from the CA this agent
			// joined: another cluster, or one whose CA was remade.
			return fmt.Errorf("the server at %s is not the cluster this agent joined: %w", a.cfg.Server, err)
		}
		if time.Since(start) > maxBackoff {
			backoff = minBackoff // it was up for a while: start over
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		welcomed := a.welcomed.Load()
		if stopping, ok := errors.AsType[*serverStopping](err); ok {
			// A server that stops says so: expected, and the next
			// start is reconnected to as any outage.
			a.log.Info("the server is stopping; reconnecting to its next start", "server", a.cfg.Server,
				"reason", stopping.reason, "retry_in", wait.Round(time.Millisecond))
		} else if reports.failed(time.Now(), err) {
			msg := "cannot connect to server"
			if welcomed {
				msg = "disconnected from server"
			}
			a.log.Warn(msg, "server", a.cfg.Server, "err", err, "failures", reports.failures, "retry_in", wait.Round(time.Millisecond))
			if a.cfg.OnConnect != nil {
				a.cfg.OnConnect(ConnectEvent{Welcomed: welcomed, Err: err, Retry: wait, Failures: reports.failures})
			}
		} else {
			a.log.Debug("cannot connect to server", "server", a.cfg.Server, "err", err, "failures", reports.failures)
		}
		if !a.idle(ctx, time.After(wait)) {
			<-stopDone
			return nil
		}
		// The next try dials now: the connection's own backoff (up to two
		// minutes) would otherwise fail it at once with the last error.
		a.conn.ResetConnectBackoff()
		backoff = min(backoff*2, maxBackoff)
	}
}

// Alive returns nil once the agent's session loop (between two heartbeats)
// or its reconnect loop (between two attempts to connect) has answered, or
// ctx.Err() if ctx ends first: a loop that hangs leaves it unanswered. It
// is what the systemd watchdog pings are made of. Safe for concurrent use.
func (a *Agent) Alive(ctx context.Context) error {
	select {
	case a.alive <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// idle waits for next, answering Alive meanwhile; false when ctx ended
// first.
func (a *Agent) idle(ctx context.Context, next <-chan time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-a.alive:
		case <-next:
			return true
		}
	}
}

// snapshotTasks returns the current tasks.
func (a *Agent) snapshotTasks() []*task {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*task, 0, len(a.tasks))
	for _, t := range a.tasks {
		out = append(out, t)
	}
	return out
}

func (a *Agent) task(r ref) *task {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tasks[r]
}

// reserve returns the task of an assigned attempt, creating it (not yet
// started) when the agent does not hold it; fresh reports that.
func (a *Agent) reserve(r ref) (t *task, fresh bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t, ok := a.tasks[r]; ok {
		return t, false
	}
	t = newTask(r)
	a.tasks[r] = t
	a.watchers.Add(1)
	return t, true
}

// start runs a reserved task's attempt, as the user a.users chooses for
// it. It is a fork and an exec: several run at once, outside a.mu.
func (a *Agent) start(t *task, as *pb.Assign) {
	spec := as.GetJob().GetSpec().ToSpec()
	spec.Normalize()
	var att *remoteAttempt
	if u, err := a.users.choose(spec.Tenant, as.GetRunAs()); err != nil {
		att = failedAttempt(err.Error())
	} else if sup, err := a.sups.current(); err != nil {
		a.log.Error("no supervisor to run jobs", "err", err)
		att = failedAttempt(err.Error())
	} else {
		att = sup.start(t.ref, a.wireSpecOf(spec, u))
	}
	t.started(att, att.Output(), att.Stderr())
	a.log.Debug("job started", "job", t.ref.job, "attempt", t.ref.attempt)
	go a.watch(t)
}

// watch waits for a live attempt to end and journals its result, so that
// it survives an agent restart until the server acknowledges it.
func (a *Agent) watch(t *task) {
	defer a.watchers.Done()
	select {
	case <-t.att.Done():
	case <-a.detached:
		select {
		case <-t.att.Done(): // ended already: journal it all the same
		default:
			return // its supervisor keeps it for the next agent
		}
	}
	e := t.att.Exit()
	res := resultOf(t.ref, e, t.out.Size(), t.errs.Size())
	if e.WriteErr != "" {
		// The result says so (output_lost); the log says it once per
		// episode, not once per job.
		a.disk.fail("job output", e.WriteErr)
		a.log.Debug("output lost", "job", t.ref.job, "attempt", t.ref.attempt, "err", e.OutputLost)
	}
	if err := a.journal.save(res); err != nil {
		// Not durable across an agent restart; this session still
		// delivers it.
		a.disk.fail("the result journal", errnoText(err))
		a.log.Debug("journal result", "job", t.ref.job, "attempt", t.ref.attempt, "err", err)
	} else {
		t.att.release()
		if e.WriteErr == "" {
			a.disk.recheck()
		}
	}
	t.finish(res)
}

// forget drops a task whose result the server acknowledged, and with it
// everything the agent keeps of it: its entry in the task table, its pumps
// (through t.gone), its spools and their files, and its journaled result.
// A task still running (the server no longer wants it) is killed first,
// and its result journaled by watch, so that removing it from the journal
// is not undone by a late save.
func (a *Agent) forget(t *task) {
	a.mu.Lock()
	if a.tasks[t.ref] == t {
		delete(a.tasks, t.ref)
	}
	a.mu.Unlock()
	t.delivered()
	if t.att != nil {
		t.att.Close()
	} else {
		t.out.Close()
		t.errs.Close()
	}
	<-t.ended
	if err := a.journal.remove(t.ref); err != nil {
		a.disk.fail("the result journal", errnoText(err))
		a.log.Debug("journal remove", "job", t.ref.job, "err", err)
	}
}

func resultOf(r ref, e exit, outSize, errSize int64) *pb.JobFinished {
	o := pb.Outcome_OUTCOME_EXITED
	switch e.Outcome {
	case startFailed:
		o = pb.Outcome_OUTCOME_START_FAILED
	case killed:
		o = pb.Outcome_OUTCOME_KILLED
	case timedOut:
		o = pb.Outcome_OUTCOME_TIMED_OUT
	}
	return &pb.JobFinished{
		JobId: r.job, Attempt: int32(r.attempt), Outcome: o, ExitCode: int32(e.ExitCode), Signal: int32(e.Signal), Reason: e.Reason,
		Usage:            &pb.Usage{CpuTimeNs: int64(e.CPUTime), MaxRssKib: e.MaxRSSKiB, WallTimeNs: int64(e.Wall), Orphans: int32(e.Orphans)},
		FinishedUnixNano: e.Finished.UnixNano(), LogSize: outSize, StderrSize: errSize, OutputLost: e.OutputLost,
	}
}
