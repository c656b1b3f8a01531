package hodeipb

import (
	"fmt"
	"math"
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
		Name:              s.Name,
		Tenant:            s.Tenant,
		Labels:            s.Labels,
		Command:           s.Command,
		Script:            s.Script,
		Env:               s.Env,
		SecretEnv:         s.SecretEnv,
		Workdir:           s.WorkDir,
		NoPty:             s.NoPTY,
		Rows:              s.Rows,
		Cols:              s.Cols,
		TimeoutMs:         s.Timeout.Milliseconds(),
		Retries:           int32(s.Retries),
		BackoffMs:         s.Backoff.Milliseconds(),
		Priority:          &prio,
		DeadlineUnixNano:  nanos(s.Deadline),
		Resources:         FromResources(s.Resources),
		Selector:          s.Selector,
		DependsOn:         s.DependsOn,
		Preemptible:       s.Preemptible,
		Stdin:             StdinMode(s.Stdin),
		Pipeline:          s.Pipeline,
		Step:              s.Step,
		ContinueOnFailure: s.ContinueOnFailure,
		Array:             s.Array,
		ArrayIndex:        int32(s.ArrayIndex),
		ArrayLimit:        int32(s.ArrayLimit),
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
		Name:              s.GetName(),
		Tenant:            s.GetTenant(),
		Labels:            s.GetLabels(),
		Command:           s.GetCommand(),
		Script:            s.GetScript(),
		Env:               s.GetEnv(),
		SecretEnv:         s.GetSecretEnv(),
		WorkDir:           s.GetWorkdir(),
		NoPTY:             s.GetNoPty(),
		Rows:              s.GetRows(),
		Cols:              s.GetCols(),
		Timeout:           millis(s.GetTimeoutMs()),
		Retries:           int(s.GetRetries()),
		Backoff:           millis(s.GetBackoffMs()),
		Priority:          prio,
		Deadline:          fromNanos(s.GetDeadlineUnixNano()),
		Resources:         s.GetResources().ToResources(),
		Selector:          s.GetSelector(),
		DependsOn:         s.GetDependsOn(),
		Preemptible:       s.GetPreemptible(),
		Stdin:             job.Stdin(s.GetStdin()),
		Pipeline:          s.GetPipeline(),
		Step:              s.GetStep(),
		ContinueOnFailure: s.GetContinueOnFailure(),
		Array:             s.GetArray(),
		ArrayIndex:        int(s.GetArrayIndex()),
		ArrayLimit:        int(s.GetArrayLimit()),
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
		Usage: &Usage{CpuTimeNs: int64(j.Usage.CPUTime), MaxRssKib: j.Usage.MaxRSSKiB, WallTimeNs: int64(j.Usage.Wall),
			SlotTimeNs: int64(j.Usage.SlotTime(j.Spec.Resources.Slots)), Attempt: int32(j.Usage.Attempt)},
		Requeue:        j.Stop == job.StopRequeue,
		Preemptions:    int32(j.Preemptions),
		DeadlineMissed: j.DeadlineMissed,
		Signal:         int32(j.Signal),
		Owner:          j.Spec.Owner,
	}
}

// Redacted returns FromJob(j) with secret env values replaced by "***", for
// answers to API clients.
func Redacted(j *job.Job) *Job {
	pb := FromJob(j)
	pb.Spec.SecretEnv = redactedEnv(j.Spec.SecretEnv)
	return pb
}

// redactedEnv returns env's names with "***" for every value; nil for none.
func redactedEnv(env map[string]string) map[string]string {
	if len(env) == 0 {
		return nil
	}
	m := make(map[string]string, len(env))
	for k := range env {
		m[k] = "***"
	}
	return m
}

// ToJob converts a wire job to the domain, sharing its maps and slices.
func (j *Job) ToJob() *job.Job {
	spec := j.GetSpec().ToSpec()
	spec.Owner = j.GetOwner()
	return &job.Job{
		ID:              j.GetId(),
		Spec:            spec,
		State:           job.State(j.GetState()),
		Attempt:         int(j.GetAttempt()),
		Version:         j.GetVersion(),
		Worker:          j.GetWorker(),
		ExitCode:        int(j.GetExitCode()),
		Signal:          int(j.GetSignal()),
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
			Wall:      time.Duration(j.GetUsage().GetWallTimeNs()),
			Attempt:   int(j.GetUsage().GetAttempt()),
		},
		Stop:           stopOf(j.GetRequeue(), j.GetCancelRequested()),
		Preemptions:    int(j.GetPreemptions()),
		DeadlineMissed: j.GetDeadlineMissed(),
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

		DownSinceUnixNano: nanos(w.DownSince),
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

		DownSince: fromNanos(w.GetDownSinceUnixNano()),
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

// FromTenant converts a domain tenant to the wire.
func FromTenant(t *job.Tenant) *Tenant {
	return &Tenant{
		Name:            t.Name,
		Weight:          t.Weight,
		MaxQueued:       int64(t.MaxQueued),
		MaxRunning:      FromResources(t.MaxRunning),
		Burst:           t.Burst,
		BurstForMs:      t.BurstFor.Milliseconds(),
		CooldownMs:      t.Cooldown.Milliseconds(),
		Preemptible:     t.Preemptible,
		RunAs:           t.RunAs,
		CreatedUnixNano: nanos(t.CreatedAt),
		UpdatedUnixNano: nanos(t.UpdatedAt),
	}
}

// millis converts a wire duration. One that does not fit a time.Duration
// saturates at the longest duration of its sign, so that validation
// refuses it as above its maximum (or negative), and a negative one stays
// negative (unset in a pipeline's steps and defaults).
func millis(ms int64) time.Duration {
	switch {
	case ms > int64(math.MaxInt64/time.Millisecond):
		return math.MaxInt64
	case ms < int64(math.MinInt64/time.Millisecond):
		return math.MinInt64
	}
	return time.Duration(ms) * time.Millisecond
}

// ToTenant converts a wire tenant to the domain. A max_queued beyond the
// range of int becomes -1, which Tenant.Validate refuses.
func (t *Tenant) ToTenant() *job.Tenant {
	mq := t.GetMaxQueued()
	if mq != int64(int(mq)) {
		mq = -1
	}
	return &job.Tenant{
		Name:        t.GetName(),
		Weight:      t.GetWeight(),
		MaxQueued:   int(mq),
		MaxRunning:  t.GetMaxRunning().ToResources(),
		Burst:       t.GetBurst(),
		BurstFor:    millis(t.GetBurstForMs()),
		Cooldown:    millis(t.GetCooldownMs()),
		Preemptible: t.GetPreemptible(),
		RunAs:       t.GetRunAs(),
		CreatedAt:   fromNanos(t.GetCreatedUnixNano()),
		UpdatedAt:   fromNanos(t.GetUpdatedUnixNano()),
	}
}

// FromPipeline converts a stored pipeline to the wire.
func FromPipeline(p *job.Pipeline) *Pipeline {
	pb := &Pipeline{Id: p.ID, Name: p.Name, Tenant: p.Tenant, CreatedUnixNano: nanos(p.CreatedAt), Cancelled: p.Cancelled}
	for _, st := range p.Steps {
		pb.Steps = append(pb.Steps, &Pipeline_Step{Name: st.Name, Needs: st.Needs, ContinueOnFailure: st.ContinueOnFailure, Jobs: st.Jobs})
	}
	return pb
}

// ToPipeline converts a wire pipeline to the domain.
func (p *Pipeline) ToPipeline() *job.Pipeline {
	out := &job.Pipeline{ID: p.GetId(), Name: p.GetName(), Tenant: p.GetTenant(),
		CreatedAt: fromNanos(p.GetCreatedUnixNano()), Cancelled: p.GetCancelled()}
	for _, st := range p.GetSteps() {
		out.Steps = append(out.Steps, job.PipelineStep{Name: st.GetName(), Needs: st.GetNeeds(),
			ContinueOnFailure: st.GetContinueOnFailure(), Jobs: st.GetJobs()})
	}
	return out
}

// MarshalPipeline encodes a pipeline as the store keeps it.
func MarshalPipeline(p *job.Pipeline) ([]byte, error) {
	b, err := proto.Marshal(FromPipeline(p))
	if err != nil {
		return nil, fmt.Errorf("encode pipeline %s: %w: %w", p.ID, job.ErrInvalid, err)
	}
	return b, nil
}

// UnmarshalPipeline decodes a pipeline MarshalPipeline encoded.
func UnmarshalPipeline(b []byte) (*job.Pipeline, error) {
	var p Pipeline
	if err := proto.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decode pipeline: %w", err)
	}
	return p.ToPipeline(), nil
}

// ToPipelineSpec converts a wire pipeline spec to the domain. A step or
// defaults without a priority gets -1 (unset), so that the defaults'
// priority, then job.DefaultPriority, applies.
func (p *PipelineSpec) ToPipelineSpec() job.PipelineSpec {
	spec := func(s *JobSpec) job.Spec {
		if s == nil {
			return job.Spec{Priority: -1}
		}
		out := s.ToSpec()
		if s.Priority == nil {
			out.Priority = -1
		}
		return out
	}
	out := job.PipelineSpec{Name: p.GetName(), Tenant: p.GetTenant(), Defaults: spec(p.GetDefaults())}
	for _, st := range p.GetSteps() {
		step := job.Step{Name: st.GetName(), Spec: spec(st.GetSpec()), Needs: st.GetNeeds(), ContinueOnFailure: st.GetContinueOnFailure()}
		for _, ax := range st.GetMatrix() {
			step.Matrix = append(step.Matrix, job.MatrixAxis{Key: ax.GetKey(), Values: ax.GetValues()})
		}
		out.Steps = append(out.Steps, step)
	}
	return out
}

// PipelineStateName is the domain name of a wire pipeline state.
func PipelineStateName(s PipelineState) string { return job.PipelineState(s).String() }

// FromAuditEntry converts a domain audit entry to the wire.
func FromAuditEntry(e *job.AuditEntry) *AuditRecord {
	return &AuditRecord{
		TimeUnixNano: nanos(e.Time),
		TokenId:      e.TokenID,
		TokenName:    e.TokenName,
		Role:         e.Role,
		Scope:        e.Scope,
		Tenant:       e.Tenant,
		Action:       e.Action,
		Target:       e.Target,
		Result:       e.Result,
		Message:      e.Message,
		Peer:         e.Peer,
	}
}

// ToAuditEntry converts a wire audit record to the domain; nil is the zero
// entry.
func (r *AuditRecord) ToAuditEntry() job.AuditEntry {
	return job.AuditEntry{
		Time:      fromNanos(r.GetTimeUnixNano()),
		TokenID:   r.GetTokenId(),
		TokenName: r.GetTokenName(),
		Role:      r.GetRole(),
		Scope:     r.GetScope(),
		Tenant:    r.GetTenant(),
		Action:    r.GetAction(),
		Target:    r.GetTarget(),
		Result:    r.GetResult(),
		Message:   r.GetMessage(),
		Peer:      r.GetPeer(),
	}
}

// FromAuditFilter converts a domain audit filter to a ListAudit request.
func FromAuditFilter(f job.AuditFilter) *ListAuditRequest {
	return &ListAuditRequest{
		SinceUnixNano: nanos(f.Since),
		Actor:         f.Actor,
		Action:        f.Action,
		Limit:         int32(min(max(f.Limit, math.MinInt32), math.MaxInt32)),
	}
}

// ToAuditFilter converts a ListAudit request to the domain, not normalized.
func (r *ListAuditRequest) ToAuditFilter() job.AuditFilter {
	return job.AuditFilter{
		Since:  fromNanos(r.GetSinceUnixNano()),
		Actor:  r.GetActor(),
		Action: r.GetAction(),
		Limit:  int(r.GetLimit()),
	}
}

// stopOf is the kind of a stop as the wire (and files of schema 1) carry
// it: a flag for a requeue, and the reason, "timeout" for a timeout.
func stopOf(requeue bool, reason string) job.StopKind {
	switch {
	case requeue:
		return job.StopRequeue
	case reason == "timeout":
		return job.StopTimeout
	case reason != "":
		return job.StopCancel
	}
	return job.NoStop
}
