package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/pki"
	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/seal"
	"github.com/hodei-jobs/hodei/store"
)

// Config configures a Server. Zero fields take the defaults shown.
type Config struct {
	// Settings are the scheduling settings (placement, heartbeat, lease,
	// kill grace, aging, preemption, limits), with the cluster's defaults.
	cluster.Settings

	DataDir  string // required; holds hodei.db and logs/
	GRPCAddr string // default 127.0.0.1:7070; port 0 picks a free one
	HTTPAddr string // default 127.0.0.1:7071; "-" turns HTTP off
	// Retention is how long finished jobs and their logs are kept; default
	// 7 days.
	Retention time.Duration

	// AuditRetention is how long audit records are kept; default
	// DefaultAuditRetention.
	AuditRetention time.Duration

	// UsageRetention is how long per-attempt usage records and daily
	// roll-ups are kept (they outlive the jobs); default
	// DefaultUsageRetention.
	UsageRetention time.Duration

	// MaxStreamsPerToken is the most streams that follow a job (attach,
	// logs -f, watch) one token may hold open at once; default
	// DefaultMaxStreamsPerToken. One more is refused with
	// ResourceExhausted (streams.go).
	MaxStreamsPerToken int

	// InsecureNoAuth turns authentication and TLS off: every caller is an
	// admin and agents are trusted by the worker id they name. Refused
	// unless both listeners are on loopback addresses. Default false.
	InsecureNoAuth bool
	// TLSCert and TLSKey are operator-given server certificate files;
	// TLSClientCA verifies agents' client certificates. Empty: the server
	// makes its own CA and certificates in DATA-DIR/tls.
	TLSCert, TLSKey, TLSClientCA string
	// TLSHosts are extra names and addresses for the server certificate it
	// makes, besides localhost, 127.0.0.1, ::1, the hostname and the
	// listen addresses.
	TLSHosts []string
	Logger   *slog.Logger // default: discard
	// Now is the clock; default time.Now. Tests may fake it.
	Now func() time.Time
	// SecretsKeyFile is the key secret env values are sealed with in the
	// database and its snapshots; default DATA-DIR/secrets.key, created on
	// the first start. Back it up beside the database: without it the
	// stored secrets are lost, and the server refuses to start.
	SecretsKeyFile string
	// SnapshotEvery is the interval of scheduled snapshots; 0 takes none.
	// SnapshotKeep is how many of them are kept (default
	// DefaultSnapshotKeep), SnapshotDir where (default DATA-DIR/snapshots).
	SnapshotEvery time.Duration
	SnapshotKeep  int
	SnapshotDir   string
}

// Defaults of Config.
const (
	DefaultGRPCAddr  = "127.0.0.1:7070"
	DefaultHTTPAddr  = "127.0.0.1:7071"
	DefaultRetention = 7 * 24 * time.Hour
	// maxRecvMsg bounds one gRPC request: a spec is at most 1 MiB and a
	// log chunk far less, so anything near this is refused early.
	maxRecvMsg = 4 << 20
)

// Server is one `hodei serve` process: the store, the scheduler, the gRPC
// and HTTP listeners. Use New, then Listen, then Serve; Serve returns after
// ctx ends and everything it started has stopped.
type Server struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	store *store.DB
	key   *seal.Key   // seals secret env values; opened only in assignMsg
	logs  *store.Logs // PTY output, or stdout
	errs  *store.Logs // stderr of jobs without a PTY
	sched *cluster.Cluster

	agents     *registry
	gate       *gate
	authority  *auth.Authority // nil with InsecureNoAuth
	ca         *pki.CA         // nil with InsecureNoAuth or operator-given certificates
	tlsConfig  *tls.Config     // nil with InsecureNoAuth
	metrics    *metrics
	auditLog   *auditLog // started by Serve, stopped by Close
	denials    denialBudget
	logSignals signals
	terms      *terminals // input of jobs with attach streams
	journal    *journal   // the events Watch streams
	following  *streamLimit

	grpc     *grpc.Server
	health   *health.Server
	http     *http.Server
	grpcLis  net.Listener
	httpLis  net.Listener
	rest     *rest          // the REST gateway; nil while HTTP is off
	wg       sync.WaitGroup // agents' reports and background loops
	closeOne sync.Once
	stopping atomic.Bool // Serve is shutting down: /readyz says so
	// stopStreams ends when Serve begins to stop: the stream interceptor
	// then ends every open stream with Unavailable (endStreams cancels it).
	stopStreams context.Context
	endStreams  context.CancelFunc
	streams     atomic.Int64 // open streams: agents, followers, attaches
	probed      atomic.Int64 // when /readyz last probed a failing store (Unix ns)
}

// New opens the store in cfg.DataDir and rebuilds the scheduler's memory
// from it. Close it (or run Serve) to release the file.
func New(ctx context.Context, cfg Config) (s *Server, err error) {
	// bbolt panics on a damaged page, and a page it cannot read faults; at
	// start (the store's open, the first read of every job) that is a file
	// to restore, not a crash to debug.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			s, err = nil, fmt.Errorf("%s is damaged (%v): %w; restore the last snapshot with: hodei snapshot restore FILE --data-dir %s (with secrets.key beside it)",
				filepath.Join(cfg.DataDir, store.DBFile), p, store.ErrDamaged, cfg.DataDir)
		}
	}()
	if cfg.DataDir == "" {
		return nil, job.Invalid("data-dir", "is required")
	}
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = DefaultGRPCAddr
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = DefaultHTTPAddr
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.MaxStreamsPerToken <= 0 {
		cfg.MaxStreamsPerToken = DefaultMaxStreamsPerToken
	}
	if cfg.AuditRetention <= 0 {
		cfg.AuditRetention = DefaultAuditRetention
	}
	if cfg.UsageRetention <= 0 {
		cfg.UsageRetention = DefaultUsageRetention
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SecretsKeyFile == "" {
		cfg.SecretsKeyFile = filepath.Join(cfg.DataDir, SecretsKeyName)
	}
	if cfg.SnapshotKeep <= 0 {
		cfg.SnapshotKeep = DefaultSnapshotKeep
	}
	if cfg.SnapshotDir == "" {
		cfg.SnapshotDir = filepath.Join(cfg.DataDir, SnapshotsDir)
	}
	if err := checkSecurity(cfg); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	log := cfg.Logger.With("component", "server")
	db, key, err := openStore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	logs, err := store.OpenLogs(filepath.Join(cfg.DataDir, "logs"))
	if err != nil {
		db.Close()
		return nil, err
	}
	errs, err := store.OpenStderrLogs(filepath.Join(cfg.DataDir, "logs"))
	if err != nil {
		db.Close()
		return nil, err
	}
	s = &Server{
		cfg:    cfg,
		log:    log,
		now:    cfg.Now,
		store:  db,
		key:    key,
		logs:   logs,
		errs:   errs,
		agents: newRegistry(),
	}
	s.stopStreams, s.endStreams = context.WithCancel(context.Background())
	s.agents.assign = s.assignMsg
	s.terms = newTerminals(s.agents)
	s.journal = newJournal(cfg.Now())
	s.following = newStreamLimit(cfg.MaxStreamsPerToken)
	s.metrics = newMetrics(func() *cluster.Cluster { return s.sched }, cfg.Now)
	s.metrics.reg.MustRegister(storeCollectors(db)...)
	s.auditLog = newAuditLog(db.AppendAudit, cfg.Now, cfg.Logger, s.metrics.reg, auditQueueLen)
	s.auditLog.healed = db.Healed
	s.auditLog.maxWait, s.auditLog.lingerFor = auditWait, auditLinger
	s.sched = cluster.New(cluster.Config{
		Store:       db,
		Dispatcher:  s.agents,
		Observer:    s.metrics,
		OnChange:    func(j *job.Job) { s.logSignals.fire(j.ID); s.terms.changed(j); s.journal.appendJob(j) },
		OnWorker:    s.journal.appendWorker,
		Now:         cfg.Now,
		Logger:      cfg.Logger,
		Settings:    cfg.Settings,
		SealSecrets: s.sealJob,

		SealScheduleSecrets: s.sealSchedule,
		OpenScheduleSecrets: s.openSchedule,
	})
	if err := s.sched.Recover(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.secure(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Listen binds the gRPC and HTTP addresses and sets up the gRPC server.
func (s *Server) Listen() error {
	s.newGRPC()
	var err error
	if s.grpcLis, err = net.Listen("tcp", s.cfg.GRPCAddr); err != nil {
		return fmt.Errorf("grpc-addr: %w", err)
	}
	if s.cfg.HTTPAddr != "-" {
		if s.httpLis, err = net.Listen("tcp", s.cfg.HTTPAddr); err != nil {
			s.grpcLis.Close()
			return fmt.Errorf("http-addr: %w", err)
		}
		if s.rest, err = s.newREST(); err != nil {
			s.grpcLis.Close()
			s.httpLis.Close()
			return err
		}
	}
	return nil
}

// newGRPC makes the gRPC server with its interceptors and services.
func (s *Server) newGRPC() {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxRecvMsg), grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor), grpc.ChainStreamInterceptor(s.streamInterceptor),
	}
	if s.tlsConfig != nil {
		// No 32 KiB read buffer per connection: TLS below already reads
		// whole records, and each of thousands of idle agents kept one
		// (BenchmarkIdleAgentMemory).
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tlsConfig)), grpc.ReadBufferSize(0))
	}
	// Every stream gets a context the server can end (abort.go).
	streams := make(map[string]bool)
	opts = append(opts, grpc.InTapHandle(abortableStreams(streams)))
	// Registered through gs, a request with text that is not UTF-8 is
	// answered InvalidArgument naming the field (see codec.go).
	gs := newGRPCServer(opts...)
	s.grpc = gs.Server
	pb.RegisterJobServiceServer(gs, &jobService{srv: s})
	pb.RegisterAgentServiceServer(gs, &agentService{srv: s})
	pb.RegisterAdminServiceServer(gs, &adminService{srv: s})
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(gs, s.health)
	reflection.Register(gs)
	streamMethods(gs.Server, streams)
}

// GRPCAddr is the bound gRPC address (after Listen).
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr is the bound HTTP address (after Listen), or "" when HTTP is off.
func (s *Server) HTTPAddr() string {
	if s.httpLis == nil {
		return ""
	}
	return s.httpLis.Addr().String()
}

// HTTPURL is the base URL of the HTTP listener (after Listen): https:// when
// it serves TLS (see httpsOn), or "" when HTTP is off.
func (s *Server) HTTPURL() string {
	if s.httpLis == nil {
		return ""
	}
	if s.httpsOn() {
		return "https://" + s.HTTPAddr()
	}
	return "http://" + s.HTTPAddr()
}

// httpsOn reports whether the HTTP listener serves HTTPS: whenever the
// server has TLS (it does unless --insecure-no-auth) and the listener is
// not on a loopback address, so that tokens never cross a network in
// clear. On loopback it serves plain HTTP, which browsers treat as secure
// (a secure context) and which needs no certificate trusted by them; the
// bytes never leave the host.
func (s *Server) httpsOn() bool {
	return s.tlsConfig != nil && s.httpLis != nil && !pki.Loopback(s.httpLis.Addr().String())
}

// logsOf returns the log store of one output stream.
func (s *Server) logsOf(stream pb.LogStream) *store.Logs {
	if stream == pb.LogStream_LOG_STREAM_STDERR {
		return s.errs
	}
	return s.logs
}

// Scheduler returns the server's scheduler, for in-process callers.
func (s *Server) Scheduler() *cluster.Cluster { return s.sched }

// StoreStats returns the store's commit counters, for in-process callers.
func (s *Server) StoreStats() store.Stats { return s.store.Stats() }

// Serve runs the listeners, the dispatch loop and retention until ctx ends,
// then stops them all, waits for them and closes the store.
func (s *Server) Serve(ctx context.Context) error {
	if s.grpcLis == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	defer s.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	var loops sync.WaitGroup
	s.auditLog.start() // stopped by Close, after every caller of audit
	loops.Add(4)
	go func() { defer loops.Done(); s.sched.Run(ctx) }()
	go func() { defer loops.Done(); s.retain(ctx) }()
	go func() { defer loops.Done(); s.gate.runTouch(ctx) }()
	if s.cfg.SnapshotEvery > 0 {
		loops.Add(1)
		go func() { defer loops.Done(); s.snapshotLoop(ctx) }()
	}
	go func() {
		defer loops.Done()
		if err := s.grpc.Serve(s.grpcLis); err != nil {
			errc <- fmt.Errorf("grpc: %w", err)
		}
	}()
	if s.httpLis != nil {
		s.http = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(s.log.With("component", "http").Handler(), slog.LevelDebug)}
		loops.Add(2)
		go func() {
			defer loops.Done()
			// The REST gateway's in-process connection (rest.go).
			if err := s.grpc.Serve(s.rest.lis); err != nil {
				errc <- fmt.Errorf("grpc (in-process): %w", err)
			}
		}()
		go func() {
			defer loops.Done()
			lis := s.httpLis
			if s.httpsOn() {
				lis = tls.NewListener(lis, s.tlsConfig)
			}
			if err := s.http.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http: %w", err)
			}
		}()
	}
	s.log.Info("serving", "grpc", s.GRPCAddr(), "http", s.HTTPURL(), "data", s.cfg.DataDir)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.stop(cancel, &loops)
	return err
}

// stop shuts the server down in the order that loses nothing: refuse new
// calls and say not ready; end the open streams, so that agents and
// followers reconnect to the next start; let the unary calls in flight
// finish their commits; stop the loops (a pass in flight commits first);
// then it flushes the audit queue and closes the store (Close). It logs what it does, with counts.
func (s *Server) stop(cancelLoops context.CancelFunc, loops *sync.WaitGroup) {
	began := time.Now()
	s.stopping.Store(true)
	s.health.Shutdown()
	agents, streams := s.agents.conns.Size(), s.streams.Load()
	s.log.Info("stopping: refusing new calls, telling agents and clients to reconnect to the next start",
		"agents", agents, "streams", streams)
	s.tellAgentsToReconnect()
	s.endStreams()
	cut := s.stopGRPC()
	cancelLoops()
	if s.http != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.http.Shutdown(sctx)
		scancel()
	}
	loops.Wait()
	s.wg.Wait()
	var pending, running int
	for _, t := range s.sched.Tenants() {
		pending += t.PendingJobs + t.Scheduled
		running += t.RunningJobs
	}
	if err := s.Close(); err != nil {
		s.log.Error("stopped, but closing the store failed", "err", err)
		return
	}
	// Running jobs go on on their agents, which report to the next start.
	s.log.Info("stopped: every commit is on disk and the store is closed",
		"pending", pending, "running", running, "calls_cut", cut, "took", time.Since(began).Round(time.Millisecond))
}

// tellAgentsToReconnect sends every connected agent a Reconnect and waits,
// for at most agentsLeaveWithin, until their streams have closed; those
// still open then are ended with the other streams.
func (s *Server) tellAgentsToReconnect() {
	msg := &pb.ServerMessage{Msg: &pb.ServerMessage_Reconnect{Reconnect: &pb.Reconnect{Reason: "the server is stopping"}}}
	s.agents.conns.Range(func(_ string, c *agentConn) bool {
		c.enqueue(msg)
		return true
	})
	deadline := time.Now().Add(agentsLeaveWithin)
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for s.agents.conns.Size() > 0 && time.Now().Before(deadline) {
		<-poll.C
	}
}

// agentsLeaveWithin bounds how long a stopping server waits for its agents
// to close their streams once told to reconnect.
const agentsLeaveWithin = 2 * time.Second

// stopGRPC refuses new calls and waits for those in flight, for at most
// stopCallsWithin; then it cuts what is left and reports that it had to.
func (s *Server) stopGRPC() (cut bool) {
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	t := time.NewTimer(stopCallsWithin)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		s.grpc.Stop()
		<-done
		return true
	}
}

// stopCallsWithin bounds how long a stopping server waits for the calls in
// flight; a unary call waits at most for one commit, so this is ample.
const stopCallsWithin = 5 * time.Second

// Close stores the audit records still queued, then releases the store and
// the log files. Serve calls it; it is safe to call more than once.
func (s *Server) Close() error {
	var err error
	s.closeOne.Do(func() {
		if s.rest != nil {
			_ = s.rest.close() // its calls ended with the gRPC server's
		}
		s.auditLog.stop()
		err = errors.Join(s.logs.CloseAll(), s.errs.CloseAll(), s.store.Close())
	})
	return err
}

// retain deletes finished jobs older than the retention, with their logs,
// audit records older than the audit retention and usage older than the
// usage retention, a batch at a time.
func (s *Server) retain(ctx context.Context) {
	every := min(min(s.cfg.Retention, s.cfg.AuditRetention, s.cfg.UsageRetention)/10, time.Hour)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep runs one retention round: finished jobs, audit records, usage.
func (s *Server) sweep(ctx context.Context) {
	s.sweepJobs(ctx)
	s.sweepAudit(ctx)
	s.sweepUsage(ctx)
}

// sweepJobs deletes finished jobs older than the retention, with their logs.
func (s *Server) sweepJobs(ctx context.Context) {
	before := s.now().Add(-s.cfg.Retention)
	for ctx.Err() == nil {
		ids, err := s.store.DeleteFinished(ctx, before, 1000, s.sched.Retain(ctx, before))
		if err != nil {
			s.log.Log(ctx, job.StoreErrLevel(err), "retention", "err", err)
			return
		}
		s.sched.Forget(ctx, ids)
		if len(ids) < 1000 {
			s.sched.SweepArrays(ctx, before)
		}
		for _, id := range ids {
			if err := errors.Join(s.logs.Remove(id), s.errs.Remove(id)); err != nil {
				s.log.Warn("retention: remove logs", "job", id, "err", err)
			}
		}
		if len(ids) < 1000 {
			return
		}
	}
}
