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

// Field numbers of the job header, from the generated descriptor.
var (
	fieldState    = jobField("state")
	fieldAttempt  = jobField("attempt")
	fieldVersion  = jobField("version")
	fieldFinished = jobField("finished_unix_nano")
)

func jobField(name string) protowire.Number {
	fd := (&hodeipb.Job{}).ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil {
		panic("store: hodeipb.Job has no field " + name)
	}
	return fd.Number()
}

// encodeJob and decodeJob are the stored form of a job: its wire message.
var (
	encodeJob = hodeipb.MarshalJob
	decodeJob = hodeipb.UnmarshalJob
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

// header is the part of a stored job that writes compare.
type header struct {
	State    job.State
	Attempt  int
	Version  uint64
	Finished int64 // FinishedAt in Unix nanoseconds; 0 when unset
}

// readHeader reads the header fields of an encoded job without decoding the
// rest. A repeated field keeps its last value, as proto.Unmarshal does.
func readHeader(b []byte) (header, error) {
	var h header
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return h, fmt.Errorf("decode job header: %w", protowire.ParseError(n))
		}
		b = b[n:]
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
