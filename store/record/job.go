package record

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/job"
)

// Field numbers of JobRecord and SpecRecord, as in record.proto; a test
// checks them against the generated descriptors.
const (
	jobState         protowire.Number = 1
	jobAttempt       protowire.Number = 2
	jobVersion       protowire.Number = 3
	jobTenant        protowire.Number = 4
	jobSpec          protowire.Number = 5
	jobCreated       protowire.Number = 6
	jobScheduled     protowire.Number = 7
	jobStarted       protowire.Number = 8
	jobFinished      protowire.Number = 9
	jobWorker        protowire.Number = 10
	jobExitCode      protowire.Number = 11
	jobReason        protowire.Number = 12
	jobUsageCPU      protowire.Number = 13
	jobUsageMaxRSS   protowire.Number = 14
	jobNotBefore     protowire.Number = 15
	jobCancelRequest protowire.Number = 16
	jobStop          protowire.Number = 17
	jobPreemptions   protowire.Number = 18
	jobDeadlineMiss  protowire.Number = 19
	jobSignal        protowire.Number = 20
	jobUsageWall     protowire.Number = 21
	jobUsageAttempt  protowire.Number = 22

	specName              protowire.Number = 1
	specCommand           protowire.Number = 2
	specScript            protowire.Number = 3
	specLabels            protowire.Number = 4
	specEnv               protowire.Number = 5
	specSecretEnv         protowire.Number = 6
	specWorkDir           protowire.Number = 7
	specNoPTY             protowire.Number = 8
	specRows              protowire.Number = 9
	specCols              protowire.Number = 10
	specTimeout           protowire.Number = 11
	specRetries           protowire.Number = 12
	specBackoff           protowire.Number = 13
	specPriority          protowire.Number = 14
	specSlots             protowire.Number = 15
	specCPUMillis         protowire.Number = 16
	specMemoryMiB         protowire.Number = 17
	specDeadline          protowire.Number = 18
	specSelector          protowire.Number = 19
	specDependsOn         protowire.Number = 20
	specPreemptible       protowire.Number = 21
	specPipeline          protowire.Number = 22
	specStep              protowire.Number = 23
	specContinueOnFailure protowire.Number = 24
	specArray             protowire.Number = 25
	specArrayIndex        protowire.Number = 26
	specArrayLimit        protowire.Number = 27
	specStdin             protowire.Number = 28
	specOwner             protowire.Number = 29
)

// marshal is the encoding of every record. It is not deterministic (map
// entries come in Go's map order): sorting them would cost every write a few
// allocations, and nothing compares encoded records.
var marshal = proto.MarshalOptions{}

// MarshalJob encodes a job with the given version (0 leaves it out, for
// WithVersion to append). The id is not encoded: it is the record's key.
// It fails only on strings that are not valid UTF-8, which protobuf
// refuses; the error wraps job.ErrInvalid.
func MarshalJob(j *job.Job, version uint64) ([]byte, error) {
	b, err := appendJob(make([]byte, 0, 256), j, version)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w: %w", j.ID, job.ErrInvalid, err)
	}
	return b, nil
}

// UnmarshalJob decodes the job MarshalJob encoded and the store keeps under
// id. It reads the wire format itself (see the package doc): every string
// of the job is a substring of one copy of b. A field it does not know is
// skipped; a known field with another wire type is an error, as is a
// truncated record.
func UnmarshalJob(id string, b []byte) (*job.Job, error) {
	r := reader{b: b, s: string(b), end: len(b)}
	j := &job.Job{ID: id}
	for r.next() {
		switch r.num {
		case jobState:
			j.State = job.State(int32(r.uvarint()))
		case jobAttempt:
			j.Attempt = int(r.int64())
		case jobVersion:
			j.Version = r.uvarint()
		case jobTenant:
			j.Spec.Tenant = r.string()
		case jobSpec:
			spec := r.sub()
			decodeSpec(&spec, &j.Spec)
			r.join(&spec)
		case jobCreated:
			j.CreatedAt = r.time()
		case jobScheduled:
			j.ScheduledAt = r.time()
		case jobStarted:
			j.StartedAt = r.time()
		case jobFinished:
			j.FinishedAt = r.time()
		case jobWorker:
			j.Worker = r.string()
		case jobExitCode:
			j.ExitCode = int(protowire.DecodeZigZag(r.uvarint()))
		case jobReason:
			j.Reason = r.string()
		case jobUsageCPU:
			j.Usage.CPUTime = time.Duration(r.int64())
		case jobUsageMaxRSS:
			j.Usage.MaxRSSKiB = r.int64()
		case jobNotBefore:
			j.NotBefore = r.time()
		case jobCancelRequest:
			j.CancelRequested = r.string()
		case jobStop:
			j.Stop = job.StopKind(r.uvarint())
		case jobPreemptions:
			j.Preemptions = int(r.int64())
		case jobDeadlineMiss:
			j.DeadlineMissed = r.bool()
		case jobSignal:
			j.Signal = int(r.int64())
		case jobUsageWall:
			j.Usage.Wall = time.Duration(r.int64())
		case jobUsageAttempt:
			j.Usage.Attempt = int(r.int64())
		default:
			r.skip()
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("decode job %s: %w", id, r.err)
	}
	return j, nil
}

// decodeSpec decodes a SpecRecord into s. A spec that occurs twice in a
// job merges, as protobuf says: later scalars win, lists and maps add up.
func decodeSpec(r *reader, s *job.Spec) {
	n := r.counts()
	if n.command > 0 {
		s.Command = append(make([]string, 0, len(s.Command)+n.command), s.Command...)
	}
	if n.dependsOn > 0 {
		s.DependsOn = append(make([]string, 0, len(s.DependsOn)+n.dependsOn), s.DependsOn...)
	}
	for r.next() {
		switch r.num {
		case specName:
			s.Name = r.string()
		case specCommand:
			s.Command = append(s.Command, r.string())
		case specScript:
			s.Script = r.string()
		case specLabels:
			s.Labels = r.mapEntry(s.Labels, n.labels)
		case specEnv:
			s.Env = r.mapEntry(s.Env, n.env)
		case specSecretEnv:
			s.SecretEnv = r.mapEntry(s.SecretEnv, n.secretEnv)
		case specWorkDir:
			s.WorkDir = r.string()
		case specNoPTY:
			s.NoPTY = r.bool()
		case specRows:
			s.Rows = uint32(r.uvarint())
		case specCols:
			s.Cols = uint32(r.uvarint())
		case specTimeout:
			s.Timeout = time.Duration(r.int64())
		case specRetries:
			s.Retries = int(r.int64())
		case specBackoff:
			s.Backoff = time.Duration(r.int64())
		case specPriority:
			s.Priority = int(r.int64())
		case specSlots:
			s.Resources.Slots = r.int64()
		case specCPUMillis:
			s.Resources.CPUMillis = r.int64()
		case specMemoryMiB:
			s.Resources.MemoryMiB = r.int64()
		case specDeadline:
			s.Deadline = r.time()
		case specSelector:
			s.Selector = r.mapEntry(s.Selector, n.selector)
		case specDependsOn:
			s.DependsOn = append(s.DependsOn, r.string())
		case specPreemptible:
			s.Preemptible = r.bool()
		case specPipeline:
			s.Pipeline = r.string()
		case specStep:
			s.Step = r.string()
		case specContinueOnFailure:
			s.ContinueOnFailure = r.bool()
		case specArray:
			s.Array = r.string()
		case specArrayIndex:
			s.ArrayIndex = int(r.int64())
		case specArrayLimit:
			s.ArrayLimit = int(r.int64())
		case specStdin:
			s.Stdin = job.Stdin(r.int64())
		case specOwner:
			s.Owner = r.string()
		default:
			r.skip()
		}
	}
}

// specCounts counts the elements of a SpecRecord's lists and maps, so that
// each is allocated once at its size.
type specCounts struct {
	command, dependsOn, labels, env, secretEnv, selector int
}

// counts walks a copy of r and counts its lists' and maps' elements. It
// ignores errors: the decode that follows meets them.
func (r reader) counts() specCounts {
	var n specCounts
	for r.next() {
		switch r.num {
		case specCommand:
			n.command++
		case specDependsOn:
			n.dependsOn++
		case specLabels:
			n.labels++
		case specEnv:
			n.env++
		case specSecretEnv:
			n.secretEnv++
		case specSelector:
			n.selector++
		}
		r.skip()
	}
	return n
}

// Header is the part of a stored job that writes compare or count.
type Header struct {
	State    job.State
	Attempt  int
	Version  uint64
	Finished int64  // FinishedAt in Unix nanoseconds; 0 when unset
	Tenant   []byte // Spec.Tenant; aliases the encoded job
}

// ReadHeader reads the header of an encoded job (and its finish time)
// without decoding the rest. A field that occurs twice keeps its last
// value, as in a full decode.
func ReadHeader(b []byte) (Header, error) {
	var h Header
	r := reader{b: b, end: len(b)}
	for r.next() {
		switch r.num {
		case jobState:
			h.State = job.State(int32(r.uvarint()))
		case jobAttempt:
			h.Attempt = int(r.int64())
		case jobVersion:
			h.Version = r.uvarint()
		case jobTenant:
			start, end := r.span()
			h.Tenant = b[start:end:end]
		case jobFinished:
			h.Finished = int64(r.fixed64())
		default:
			r.skip()
		}
	}
	if r.err != nil {
		return Header{}, fmt.Errorf("decode job header: %w", r.err)
	}
	return h, nil
}

// WithVersion returns enc (a job encoded without a version) followed by the
// version field, which is legal protobuf: fields may come in any order, and
// the last of a field's occurrences wins. It appends to enc when there is
// room: enc must be owned by the caller and not used again.
func WithVersion(enc []byte, version uint64) []byte {
	b := protowire.AppendTag(enc, jobVersion, protowire.VarintType)
	return protowire.AppendVarint(b, version)
}

// reader walks the fields of one encoded message, b[pos:end]. Its strings
// are substrings of s, the copy of b made once for the whole record, or
// when s is "" (a reader that keeps few strings) copies of their own. The
// first error sticks: next then returns false, and every read after it
// returns a zero value.
type reader struct {
	b        []byte
	s        string // string(b), or "" when no string is read
	pos, end int
	num      protowire.Number // the field being read
	typ      protowire.Type
	err      error
}

// next reads the next field's tag, and reports whether there is one to read.
func (r *reader) next() bool {
	if r.err != nil || r.pos >= r.end {
		return false
	}
	num, typ, n := protowire.ConsumeTag(r.b[r.pos:r.end])
	if n < 0 {
		r.err = protowire.ParseError(n)
		return false
	}
	r.pos += n
	r.num, r.typ = num, typ
	return true
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// wire reports whether the field has wire type want, failing r if not.
func (r *reader) wire(want protowire.Type) bool {
	if r.typ == want {
		return true
	}
	r.fail(fmt.Errorf("field %d has wire type %d, want %d", r.num, r.typ, want))
	return false
}

func (r *reader) uvarint() uint64 {
	if !r.wire(protowire.VarintType) {
		return 0
	}
	v, n := protowire.ConsumeVarint(r.b[r.pos:r.end])
	if n < 0 {
		r.fail(protowire.ParseError(n))
		return 0
	}
	r.pos += n
	return v
}

func (r *reader) int64() int64 { return int64(r.uvarint()) }

func (r *reader) bool() bool { return r.uvarint() != 0 }

func (r *reader) fixed64() uint64 {
	if !r.wire(protowire.Fixed64Type) {
		return 0
	}
	v, n := protowire.ConsumeFixed64(r.b[r.pos:r.end])
	if n < 0 {
		r.fail(protowire.ParseError(n))
		return 0
	}
	r.pos += n
	return v
}

func (r *reader) time() time.Time { return fromNanos(int64(r.fixed64())) }

// span reads a length-delimited field and returns where its bytes are in b.
func (r *reader) span() (start, end int) {
	if !r.wire(protowire.BytesType) {
		return 0, 0
	}
	v, n := protowire.ConsumeBytes(r.b[r.pos:r.end])
	if n < 0 {
		r.fail(protowire.ParseError(n))
		return 0, 0
	}
	end = r.pos + n
	start = end - len(v)
	r.pos = end
	return start, end
}

// string reads a length-delimited field: a substring of s, or, for a
// reader without s, a string of its own.
func (r *reader) string() string {
	start, end := r.span()
	if r.s == "" {
		return string(r.b[start:end])
	}
	return r.s[start:end]
}

// sub returns a reader of the embedded message in the current field; pass
// it to join when done with it.
func (r *reader) sub() reader {
	start, end := r.span()
	return reader{b: r.b, s: r.s, pos: start, end: end}
}

// join takes on the error of a reader sub returned.
func (r *reader) join(sub *reader) {
	if sub.err != nil {
		r.fail(fmt.Errorf("field %d: %w", r.num, sub.err))
	}
}

// mapEntry reads a map<string, string> entry into m, made with room for
// size entries when nil, and returns m.
func (r *reader) mapEntry(m map[string]string, size int) map[string]string {
	e := r.sub()
	var k, v string
	for e.next() {
		switch e.num {
		case 1:
			k = e.string()
		case 2:
			v = e.string()
		default:
			e.skip()
		}
	}
	r.join(&e)
	if r.err != nil {
		return m
	}
	if m == nil {
		m = make(map[string]string, size)
	}
	m[k] = v
	return m
}

// skip skips the current field's value.
func (r *reader) skip() {
	n := protowire.ConsumeFieldValue(r.num, r.typ, r.b[r.pos:r.end])
	if n < 0 {
		r.fail(protowire.ParseError(n))
		return
	}
	r.pos += n
}

// UnmarshalBrief decodes what job.Brief holds of the job stored under id,
// skipping the rest (command, environment, labels, output fields). Unlike
// UnmarshalJob it copies only the strings it keeps, so a caller that reads
// a million of them at start leaves little garbage.
func UnmarshalBrief(id string, b []byte) (job.Brief, error) {
	r := reader{b: b, end: len(b)}
	j := job.Brief{ID: id}
	for r.next() {
		switch r.num {
		case jobState:
			j.State = job.State(int32(r.uvarint()))
		case jobAttempt:
			j.Attempt = int(r.int64())
		case jobVersion:
			j.Version = r.uvarint()
		case jobTenant:
			j.Tenant = r.string()
		case jobSpec:
			spec := r.sub()
			decodeBriefSpec(&spec, &j)
			r.join(&spec)
		case jobCreated:
			j.CreatedAt = r.time()
		case jobNotBefore:
			j.NotBefore = r.time()
		default:
			r.skip()
		}
	}
	if r.err != nil {
		return job.Brief{}, fmt.Errorf("decode job %s: %w", id, r.err)
	}
	return j, nil
}

func decodeBriefSpec(r *reader, j *job.Brief) {
	for r.next() {
		switch r.num {
		case specPriority:
			j.Priority = int(r.int64())
		case specSlots:
			j.Resources.Slots = r.int64()
		case specCPUMillis:
			j.Resources.CPUMillis = r.int64()
		case specMemoryMiB:
			j.Resources.MemoryMiB = r.int64()
		case specDeadline:
			j.Deadline = r.time()
		case specSelector:
			j.Selector = r.mapEntry(j.Selector, 1)
		case specDependsOn:
			j.DependsOn = append(j.DependsOn, r.string())
		case specArray:
			j.Array = r.string()
		case specArrayLimit:
			j.ArrayLimit = int(r.int64())
		case specPipeline:
			j.Pipeline = r.string()
		default:
			r.skip()
		}
	}
}
