package store

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// Stored values are hodeipb messages. A job is encoded by the caller's
// goroutine without its version (proto3 leaves a zero field out); the commit
// loop appends the version field, which is legal protobuf (fields may come
// in any order), so the loop never marshals a whole job. Writes read only the
// few header fields they compare, without decoding the rest.

// Field numbers of the job header, from the generated descriptors.
var (
	fieldState      = field(&hodeipb.Job{}, "state")
	fieldAttempt    = field(&hodeipb.Job{}, "attempt")
	fieldVersion    = field(&hodeipb.Job{}, "version")
	fieldFinished   = field(&hodeipb.Job{}, "finished_unix_nano")
	fieldSpec       = field(&hodeipb.Job{}, "spec")
	fieldSpecTenant = field(&hodeipb.JobSpec{}, "tenant")
)

func field(m proto.Message, name string) protowire.Number {
	d := m.ProtoReflect().Descriptor()
	fd := d.Fields().ByName(protoreflect.Name(name))
	if fd == nil {
		panic(fmt.Sprintf("store: %s has no field %s", d.FullName(), name))
	}
	return fd.Number()
}

// encodeJob and decodeJob are the stored form of a job, and encodePipeline
// and decodePipeline that of a pipeline record: their wire messages.
var (
	encodeJob      = hodeipb.MarshalJob
	decodeJob      = hodeipb.UnmarshalJob
	encodePipeline = hodeipb.MarshalPipeline
	decodePipeline = hodeipb.UnmarshalPipeline
)

// withVersion returns enc (a job encoded without a version) followed by the
// version field. It appends to enc when there is room: enc must be owned by
// the caller and not used again.
func withVersion(enc []byte, version uint64) []byte {
	b := protowire.AppendTag(enc, fieldVersion, protowire.VarintType)
	return protowire.AppendVarint(b, version)
}

func encodeWorker(w *job.Worker) ([]byte, error) {
	b, err := proto.Marshal(hodeipb.FromWorker(w))
	if err != nil {
		return nil, fmt.Errorf("encode worker %s: %w: %w", w.ID, job.ErrInvalid, err)
	}
	return b, nil
}

func decodeWorker(b []byte) (*job.Worker, error) {
	var pb hodeipb.Worker
	if err := proto.Unmarshal(b, &pb); err != nil {
		return nil, fmt.Errorf("decode worker: %w", err)
	}
	return pb.ToWorker(), nil
}

func encodeTenant(t *job.Tenant) ([]byte, error) {
	b, err := proto.Marshal(hodeipb.FromTenant(t))
	if err != nil {
		return nil, fmt.Errorf("encode tenant %s: %w: %w", t.Name, job.ErrInvalid, err)
	}
	return b, nil
}

func decodeTenant(b []byte) (*job.Tenant, error) {
	var pb hodeipb.Tenant
	if err := proto.Unmarshal(b, &pb); err != nil {
		return nil, fmt.Errorf("decode tenant: %w", err)
	}
	return pb.ToTenant(), nil
}

// header is the part of a stored job that writes compare or count.
type header struct {
	State    job.State
	Attempt  int
	Version  uint64
	Finished int64  // FinishedAt in Unix nanoseconds; 0 when unset
	Tenant   []byte // Spec.Tenant; aliases the encoded job
}

// readHeader reads the header fields of an encoded job without decoding the
// rest. A repeated field keeps its last value, as proto.Unmarshal does (a
// repeated spec merges, so its tenant is the last one set).
func readHeader(b []byte) (header, error) {
	var h header
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return h, fmt.Errorf("decode job header: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == fieldSpec && typ == protowire.BytesType {
			spec, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return h, fmt.Errorf("decode job header: %w", protowire.ParseError(n))
			}
			b = b[n:]
			tenant, err := readSpecTenant(spec)
			if err != nil {
				return h, err
			}
			if tenant != nil {
				h.Tenant = tenant
			}
			continue
		}
		if typ != protowire.VarintType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return h, fmt.Errorf("decode job header: %w", protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return h, fmt.Errorf("decode job header: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch num {
		case fieldState:
			h.State = job.State(int32(v))
		case fieldAttempt:
			h.Attempt = int(int32(v))
		case fieldVersion:
			h.Version = v
		case fieldFinished:
			h.Finished = int64(v)
		}
	}
	return h, nil
}

// readSpecTenant returns the tenant field of an encoded JobSpec, or nil when
// it has none (an empty tenant, which proto3 leaves out).
func readSpecTenant(b []byte) ([]byte, error) {
	var tenant []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("decode job spec: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == fieldSpecTenant && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, fmt.Errorf("decode job spec: %w", protowire.ParseError(n))
			}
			tenant, b = v, b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, fmt.Errorf("decode job spec: %w", protowire.ParseError(n))
		}
		b = b[n:]
	}
	return tenant, nil
}
