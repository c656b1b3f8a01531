package record

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/job"
)

// Converters between the records and the domain types, for every record
// but the job's (job.go). Each Marshal function leaves out the record's key
// (an id or a name) and each Unmarshal function takes it back as an
// argument. Marshal fails only on strings that are not valid UTF-8, with an
// error wrapping job.ErrInvalid; Unmarshal fails on a malformed record.

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

func encode(what, key string, m proto.Message) ([]byte, error) {
	b, err := marshal.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s %s: %w: %w", what, key, job.ErrInvalid, err)
	}
	return b, nil
}

func decode(what, key string, b []byte, m proto.Message) error {
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("decode %s %s: %w", what, key, err)
	}
	return nil
}

// MarshalPipeline encodes a pipeline record; its id is the key.
func MarshalPipeline(p *job.Pipeline) ([]byte, error) {
	rec := &PipelineRecord{Name: p.Name, Tenant: p.Tenant, CreatedUnixNano: nanos(p.CreatedAt), Cancelled: p.Cancelled}
	for _, st := range p.Steps {
		rec.Steps = append(rec.Steps, &PipelineRecord_Step{
			Name: st.Name, Needs: st.Needs, ContinueOnFailure: st.ContinueOnFailure, Jobs: st.Jobs,
		})
	}
	return encode("pipeline", p.ID, rec)
}

// UnmarshalPipeline decodes the pipeline record stored under id.
func UnmarshalPipeline(id string, b []byte) (*job.Pipeline, error) {
	var rec PipelineRecord
	if err := decode("pipeline", id, b, &rec); err != nil {
		return nil, err
	}
	p := &job.Pipeline{ID: id, Name: rec.Name, Tenant: rec.Tenant, CreatedAt: fromNanos(rec.CreatedUnixNano), Cancelled: rec.Cancelled}
	for _, st := range rec.Steps {
		p.Steps = append(p.Steps, job.PipelineStep{
			Name: st.GetName(), Needs: st.GetNeeds(), ContinueOnFailure: st.GetContinueOnFailure(), Jobs: st.GetJobs(),
		})
	}
	return p, nil
}

// MarshalWorker encodes the persisted part of a worker; its id is the key.
func MarshalWorker(w *job.Worker) ([]byte, error) {
	return encode("worker", w.ID, &WorkerRecord{
		Name:              w.Name,
		Hostname:          w.Hostname,
		Labels:            w.Labels,
		CpuMillis:         w.Capacity.CPUMillis,
		MemoryMib:         w.Capacity.MemoryMiB,
		Slots:             w.Capacity.Slots,
		Version:           w.Version,
		Drained:           w.Drained,
		DownSinceUnixNano: nanos(w.DownSince),
	})
}

// UnmarshalWorker decodes the worker record stored under id.
func UnmarshalWorker(id string, b []byte) (*job.Worker, error) {
	var rec WorkerRecord
	if err := decode("worker", id, b, &rec); err != nil {
		return nil, err
	}
	return &job.Worker{
		ID:        id,
		Name:      rec.Name,
		Hostname:  rec.Hostname,
		Labels:    rec.Labels,
		Capacity:  job.Resources{CPUMillis: rec.CpuMillis, MemoryMiB: rec.MemoryMib, Slots: rec.Slots},
		Version:   rec.Version,
		Drained:   rec.Drained,
		DownSince: fromNanos(rec.DownSinceUnixNano),
	}, nil
}

// MarshalTenant encodes a tenant record; its name is the key.
func MarshalTenant(t *job.Tenant) ([]byte, error) {
	return encode("tenant", t.Name, &TenantRecord{
		Weight:          t.Weight,
		MaxQueued:       int64(t.MaxQueued),
		MaxSlots:        t.MaxRunning.Slots,
		MaxCpuMillis:    t.MaxRunning.CPUMillis,
		MaxMemoryMib:    t.MaxRunning.MemoryMiB,
		Burst:           t.Burst,
		BurstForNanos:   int64(t.BurstFor),
		CooldownNanos:   int64(t.Cooldown),
		Preemptible:     t.Preemptible,
		RunAs:           t.RunAs,
		CreatedUnixNano: nanos(t.CreatedAt),
		UpdatedUnixNano: nanos(t.UpdatedAt),
	})
}

// UnmarshalTenant decodes the tenant record stored under name. A max_queued
// beyond the range of int becomes -1, which Tenant.Validate refuses.
func UnmarshalTenant(name string, b []byte) (*job.Tenant, error) {
	var rec TenantRecord
	if err := decode("tenant", name, b, &rec); err != nil {
		return nil, err
	}
	mq := rec.MaxQueued
	if mq != int64(int(mq)) {
		mq = -1
	}
	return &job.Tenant{
		Name:        name,
		Weight:      rec.Weight,
		MaxQueued:   int(mq),
		MaxRunning:  job.Resources{CPUMillis: rec.MaxCpuMillis, MemoryMiB: rec.MaxMemoryMib, Slots: rec.MaxSlots},
		Burst:       rec.Burst,
		BurstFor:    time.Duration(rec.BurstForNanos),
		Cooldown:    time.Duration(rec.CooldownNanos),
		Preemptible: rec.Preemptible,
		RunAs:       rec.RunAs,
		CreatedAt:   fromNanos(rec.CreatedUnixNano),
		UpdatedAt:   fromNanos(rec.UpdatedUnixNano),
	}, nil
}

// MarshalToken encodes a token record; its id is the key.
func MarshalToken(t *job.Token) ([]byte, error) {
	return encode("token", t.ID, &TokenRecord{
		Name:             t.Name,
		Role:             t.Role,
		Tenants:          t.Tenants,
		CreatedBy:        t.CreatedBy,
		CreatedUnixNano:  nanos(t.CreatedAt),
		ExpiresUnixNano:  nanos(t.ExpiresAt),
		LastUsedUnixNano: nanos(t.LastUsed),
		RevokedUnixNano:  nanos(t.RevokedAt),
	})
}

// UnmarshalToken decodes the token record stored under id.
func UnmarshalToken(id string, b []byte) (*job.Token, error) {
	var rec TokenRecord
	if err := decode("token", id, b, &rec); err != nil {
		return nil, err
	}
	return &job.Token{
		ID:        id,
		Name:      rec.Name,
		Role:      rec.Role,
		Tenants:   rec.Tenants,
		CreatedBy: rec.CreatedBy,
		CreatedAt: fromNanos(rec.CreatedUnixNano),
		ExpiresAt: fromNanos(rec.ExpiresUnixNano),
		LastUsed:  fromNanos(rec.LastUsedUnixNano),
		RevokedAt: fromNanos(rec.RevokedUnixNano),
	}, nil
}

// MarshalAgent encodes an agent binding; its worker id is the key.
func MarshalAgent(a *job.AgentBinding) ([]byte, error) {
	return encode("agent", a.WorkerID, &AgentRecord{
		Serial:          a.Serial,
		TokenId:         a.TokenID,
		Hostname:        a.Hostname,
		JoinedUnixNano:  nanos(a.JoinedAt),
		RevokedUnixNano: nanos(a.RevokedAt),
	})
}

// UnmarshalAgent decodes the agent binding stored under workerID.
func UnmarshalAgent(workerID string, b []byte) (*job.AgentBinding, error) {
	var rec AgentRecord
	if err := decode("agent", workerID, b, &rec); err != nil {
		return nil, err
	}
	return &job.AgentBinding{
		WorkerID:  workerID,
		Serial:    rec.Serial,
		TokenID:   rec.TokenId,
		Hostname:  rec.Hostname,
		JoinedAt:  fromNanos(rec.JoinedUnixNano),
		RevokedAt: fromNanos(rec.RevokedUnixNano),
	}, nil
}

// MarshalArray encodes an array record; its id is the key. The tasks'
// spec is kept as a job record's, so one converter serves both.
func MarshalArray(a *job.Array) ([]byte, error) {
	tmpl, err := MarshalJob(&job.Job{ID: a.ID, Spec: a.Spec}, 0)
	if err != nil {
		return nil, err
	}
	return encode("array", a.ID, &ArrayRecord{
		Template: tmpl, First: int64(a.First), Last: int64(a.Last), Limit: int64(a.Limit),
		CreatedUnixNano: nanos(a.CreatedAt), Cancelled: a.Cancelled, CancelReason: a.CancelReason,
		CancelledUnixNano: nanos(a.CancelledAt),
	})
}

// UnmarshalArray decodes the array record stored under id.
func UnmarshalArray(id string, b []byte) (*job.Array, error) {
	var rec ArrayRecord
	if err := decode("array", id, b, &rec); err != nil {
		return nil, err
	}
	tmpl, err := UnmarshalJob(id, rec.Template)
	if err != nil {
		return nil, fmt.Errorf("decode array %s: %w", id, err)
	}
	return &job.Array{
		ID: id, Spec: tmpl.Spec, First: int(rec.First), Last: int(rec.Last), Limit: int(rec.Limit),
		CreatedAt: fromNanos(rec.CreatedUnixNano), Cancelled: rec.Cancelled, CancelReason: rec.CancelReason,
		CancelledAt: fromNanos(rec.CancelledUnixNano),
	}, nil
}
