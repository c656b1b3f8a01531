package hodeipb

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/job"
)

// Converters between the wire messages and the domain types. The generated
// types stop here: nothing past server/, store/ and agent/ sees them.

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// FromResources converts domain resources to the wire.
func FromResources(r job.Resources) *Resources {
	return &Resources{CpuMillis: r.CPUMillis, MemoryMib: r.MemoryMiB, Slots: r.Slots}
}

// ToResources converts wire resources to the domain; nil is zero.
func (r *Resources) ToResources() job.Resources {
	return job.Resources{CPUMillis: r.GetCpuMillis(), MemoryMiB: r.GetMemoryMib(), Slots: r.GetSlots()}
}

// FromSpec converts a domain spec to the wire.
func FromSpec(s *job.Spec) *JobSpec {
	prio := int32(s.Priority)
	return &JobSpec{
		Name:             s.Name,
		Tenant:           s.Tenant,
		Labels:           s.Labels,
		Command:          s.Command,
		Script:           s.Script,
		Env:              s.Env,
		SecretEnv:        s.SecretEnv,
		Workdir:          s.WorkDir,
		NoPty:            s.NoPTY,
		Rows:             s.Rows,
		Cols:             s.Cols,
		TimeoutMs:        s.Timeout.Milliseconds(),
		Retries:          int32(s.Retries),
		BackoffMs:        s.Backoff.Milliseconds(),
		Priority:         &prio,
		DeadlineUnixNano: nanos(s.Deadline),
		Resources:        FromResources(s.Resources),
		Selector:         s.Selector,
		DependsOn:        s.DependsOn,
	}
}

// ToSpec converts a wire spec to the domain. An absent priority becomes
// job.DefaultPriority; other defaults are left to Spec.Normalize.
func (s *JobSpec) ToSpec() job.Spec {
	prio := job.DefaultPriority
	if s.Priority != nil {
		prio = int(*s.Priority)
	}
	return job.Spec{
		Name:      s.GetName(),
		Tenant:    s.GetTenant(),
		Labels:    s.GetLabels(),
		Command:   s.GetCommand(),
		Script:    s.GetScript(),
		Env:       s.GetEnv(),
		SecretEnv: s.GetSecretEnv(),
		WorkDir:   s.GetWorkdir(),
		NoPTY:     s.GetNoPty(),
		Rows:      s.GetRows(),
		Cols:      s.GetCols(),
		Timeout:   time.Duration(s.GetTimeoutMs()) * time.Millisecond,
		Retries:   int(s.GetRetries()),
		Backoff:   time.Duration(s.GetBackoffMs()) * time.Millisecond,
		Priority:  prio,
		Deadline:  fromNanos(s.GetDeadlineUnixNano()),
		Resources: s.GetResources().ToResources(),
		Selector:  s.GetSelector(),
		DependsOn: s.GetDependsOn(),
	}
}

// FromJob converts a domain job to the wire, sharing its maps and slices.
func FromJob(j *job.Job) *Job {
	return &Job{
		Id:                j.ID,
		Spec:              FromSpec(&j.Spec),
		State:             JobState(j.State),
		Attempt:           int32(j.Attempt),
		Version:           j.Version,
		Worker:            j.Worker,
		ExitCode:          int32(j.ExitCode),
		Reason:            j.Reason,
		CancelRequested:   j.CancelRequested,
		CreatedUnixNano:   nanos(j.CreatedAt),
		ScheduledUnixNano: nanos(j.ScheduledAt),
		StartedUnixNano:   nanos(j.StartedAt),
		FinishedUnixNano:  nanos(j.FinishedAt),
		NotBeforeUnixNano: nanos(j.NotBefore),
		Usage:             &Usage{CpuTimeNs: int64(j.Usage.CPUTime), MaxRssKib: j.Usage.MaxRSSKiB},
	}
}

// Redacted returns FromJob(j) with secret env values replaced by "***", for
// answers to API clients.
func Redacted(j *job.Job) *Job {
	pb := FromJob(j)
	if len(j.Spec.SecretEnv) > 0 {
		m := make(map[string]string, len(j.Spec.SecretEnv))
		for k := range j.Spec.SecretEnv {
			m[k] = "***"
		}
		pb.Spec.SecretEnv = m
	}
	return pb
}

// ToJob converts a wire job to the domain, sharing its maps and slices.
func (j *Job) ToJob() *job.Job {
	return &job.Job{
		ID:              j.GetId(),
		Spec:            j.GetSpec().ToSpec(),
		State:           job.State(j.GetState()),
		Attempt:         int(j.GetAttempt()),
		Version:         j.GetVersion(),
		Worker:          j.GetWorker(),
		ExitCode:        int(j.GetExitCode()),
		Reason:          j.GetReason(),
		CancelRequested: j.GetCancelRequested(),
		CreatedAt:       fromNanos(j.GetCreatedUnixNano()),
		ScheduledAt:     fromNanos(j.GetScheduledUnixNano()),
		StartedAt:       fromNanos(j.GetStartedUnixNano()),
		FinishedAt:      fromNanos(j.GetFinishedUnixNano()),
		NotBefore:       fromNanos(j.GetNotBeforeUnixNano()),
		Usage: job.Usage{
			CPUTime:   time.Duration(j.GetUsage().GetCpuTimeNs()),
			MaxRSSKiB: j.GetUsage().GetMaxRssKib(),
		},
	}
}

// ParseJobState converts a state name ("running", "RUNNING") to the wire enum.
func ParseJobState(name string) (JobState, error) {
	s, err := job.ParseState(name)
	return JobState(s), err
}

// StateName is the domain name of a wire state ("RUNNING").
func StateName(s JobState) string { return job.State(s).String() }

// WorkerStateName is the short name of a worker state ("READY"); the wire
// numbers equal job.WorkerState.
func WorkerStateName(s WorkerState) string { return job.WorkerState(s).String() }

// FromWorker converts the persisted part of a worker to the wire; the
// caller fills the live fields (state, allocation, heartbeat).
func FromWorker(w *job.Worker) *Worker {
	st := WorkerState_WORKER_STATE_READY
	if w.Drained {
		st = WorkerState_WORKER_STATE_DRAINING
	}
	return &Worker{
		Id:       w.ID,
		Name:     w.Name,
		Hostname: w.Hostname,
		Labels:   w.Labels,
		State:    st,
		Capacity: FromResources(w.Capacity),
		Version:  w.Version,
	}
}

// ToWorker converts the persisted part of a wire worker to the domain.
func (w *Worker) ToWorker() *job.Worker {
	return &job.Worker{
		ID:       w.GetId(),
		Name:     w.GetName(),
		Hostname: w.GetHostname(),
		Labels:   w.GetLabels(),
		Capacity: w.GetCapacity().ToResources(),
		Version:  w.GetVersion(),
		Drained:  w.GetState() == WorkerState_WORKER_STATE_DRAINING,
	}
}

// MarshalJob encodes a job as the store keeps it, with the given version
// (0 leaves it out). It fails only on strings that are not valid UTF-8,
// which protobuf refuses; the error wraps job.ErrInvalid.
func MarshalJob(j *job.Job, version uint64) ([]byte, error) {
	p := FromJob(j)
	p.Version = version
	b, err := proto.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w: %w", j.ID, job.ErrInvalid, err)
	}
	return b, nil
}

// UnmarshalJob decodes a job MarshalJob encoded. It copies what it keeps,
// so b may be memory that is reused afterwards.
func UnmarshalJob(b []byte) (*job.Job, error) {
	var p Job
	if err := proto.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decode job: %w", err)
	}
	return p.ToJob(), nil
}
