package cluster

import (
	"log/slog"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/scheduler"
)

// Defaults of Settings. Each is declared here only; the server and the CLI
// use these names.
const (
	DefaultHeartbeat = 5 * time.Second
	DefaultKillGrace = 10 * time.Second
	// DefaultLeaseGrace is added to three heartbeats for the default lease.
	DefaultLeaseGrace = 5 * time.Second
)

// Settings are the tunable parts of a Cluster's behaviour: what an operator
// sets with `hodei serve` flags. server.Config embeds them. Zero fields take
// the defaults shown.
type Settings struct {
	Placement scheduler.Placement // default BinPack
	// Heartbeat is the interval agents are told to heartbeat at; default
	// DefaultHeartbeat.
	Heartbeat time.Duration
	// Lease is how long a worker may stay silent before it is DOWN and its
	// jobs are lost; default 3 × Heartbeat + DefaultLeaseGrace.
	Lease time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL on cancel; default
	// DefaultKillGrace.
	KillGrace time.Duration
	// AutoTenants creates the tenant of a submit when it does not exist,
	// instead of refusing the submit. Default false.
	AutoTenants bool
	// Aging is the wait that raises a pending job's priority by the whole
	// range (see scheduler.EffectivePriority); default scheduler.DefaultAging.
	Aging time.Duration
	// Preemption lets the scheduler stop preemptible jobs of tenants above
	// their share for tenants below it. Default false.
	Preemption bool
	// MaxMatrix is the most jobs one pipeline step's matrix may expand to;
	// default job.DefaultMaxMatrix.
	MaxMatrix int
	// MaxPipelineLinks is the most dependency links one pipeline may
	// create; default job.DefaultMaxPipelineLinks.
	MaxPipelineLinks int
	// WorkerGC is how long a worker stays DOWN before it is deleted, from
	// memory and from the store; default DefaultWorkerGC; negative: never.
	WorkerGC time.Duration
}

// withDefaults returns s with its zero fields set to their defaults.
func (s Settings) withDefaults() Settings {
	if s.Heartbeat <= 0 {
		s.Heartbeat = DefaultHeartbeat
	}
	if s.Lease <= 0 {
		s.Lease = 3*s.Heartbeat + DefaultLeaseGrace
	}
	if s.KillGrace <= 0 {
		s.KillGrace = DefaultKillGrace
	}
	if s.Aging <= 0 {
		s.Aging = scheduler.DefaultAging
	}
	if s.MaxMatrix <= 0 {
		s.MaxMatrix = job.DefaultMaxMatrix
	}
	if s.WorkerGC == 0 {
		s.WorkerGC = DefaultWorkerGC
	}
	if s.MaxPipelineLinks <= 0 {
		s.MaxPipelineLinks = job.DefaultMaxPipelineLinks
	}
	return s
}

// Config wires a Cluster to its store, its agents and its observers, with
// its Settings. Zero fields take the defaults shown.
type Config struct {
	Settings

	Store      Store
	Dispatcher Dispatcher
	Observer   Observer // nil: none
	// OnChange is called with every published job version, after the
	// commit; it must not block. nil: none.
	OnChange func(*job.Job)
	// OnWorker is called with a worker's id after its state, record or
	// connection changed (a Hello, a goodbye, a closed stream, drain,
	// undrain, DOWN, revoke, removal; not a heartbeat); it must not block
	// or call into the Cluster. nil: none.
	OnWorker func(id string)
	Now      func() time.Time // default time.Now
	Logger   *slog.Logger     // default: discard
	// SealSecrets is called with every new job (Submit, SubmitArray,
	// RunPipeline) once its id is set and before it is stored or published,
	// when it has secret env values. It must set j.Spec.SecretEnv to a new
	// map of sealed values: the old map may be shared with the other jobs of
	// the same call. nil: values are stored as given.
	SealSecrets func(j *job.Job)
	// SealScheduleSecrets seals the secret env values of a new schedule's
	// job template (its job's, or its pipeline's defaults' and steps') for
	// the schedule, named by its key ("tenant/name"), returning a new map;
	// OpenScheduleSecrets opens them again for each tick's jobs, which
	// SealSecrets then seals for themselves. With either nil, a schedule's
	// jobs may not have secret values.
	SealScheduleSecrets func(key string, env map[string]string) map[string]string
	OpenScheduleSecrets func(key string, env map[string]string) (map[string]string, error)
}
