package record

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/hodei-jobs/hodei/job"
)

// The job record is written by hand, as it is read (see UnmarshalJob): a
// submit of 10,000 jobs encodes each one, and the generated marshaller's
// reflection over the spec's maps cost about as much as the commit. The
// output is the wire format of JobRecord, fields in number order and zero
// values left out as proto3 does; TestEncodeMatchesGenerated holds it to
// the generated decoder.

// errNotUTF8 is what protobuf refuses in a string field.
var errNotUTF8 = errors.New("string field contains invalid UTF-8")

// appendJob appends the record of j with the given version (0: left out).
func appendJob(b []byte, j *job.Job, version uint64) ([]byte, error) {
	w := writer{b: b}
	s := &j.Spec
	w.varint(jobState, uint64(int64(j.State)))
	w.varint(jobAttempt, uint64(int64(j.Attempt)))
	w.varint(jobVersion, version)
	w.string(jobTenant, s.Tenant)
	w.message(jobSpec, func() { w.spec(s) })
	w.fixed(jobCreated, nanos(j.CreatedAt))
	w.fixed(jobScheduled, nanos(j.ScheduledAt))
	w.fixed(jobStarted, nanos(j.StartedAt))
	w.fixed(jobFinished, nanos(j.FinishedAt))
	w.string(jobWorker, j.Worker)
	w.varint(jobExitCode, protowire.EncodeZigZag(int64(j.ExitCode)))
	w.string(jobReason, j.Reason)
	w.varint(jobUsageCPU, uint64(int64(j.Usage.CPUTime)))
	w.varint(jobUsageMaxRSS, uint64(j.Usage.MaxRSSKiB))
	w.fixed(jobNotBefore, nanos(j.NotBefore))
	w.string(jobCancelRequest, j.CancelRequested)
	w.varint(jobStop, uint64(j.Stop))
	w.varint(jobPreemptions, uint64(int64(j.Preemptions)))
	w.bool(jobDeadlineMiss, j.DeadlineMissed)
	w.varint(jobSignal, uint64(int64(j.Signal)))
	w.varint(jobUsageWall, uint64(int64(j.Usage.Wall)))
	w.varint(jobUsageAttempt, uint64(int64(j.Usage.Attempt)))
	return w.b, w.err
}

func (w *writer) spec(s *job.Spec) {
	w.string(specName, s.Name)
	for _, a := range s.Command {
		w.stringAlways(specCommand, a)
	}
	w.string(specScript, s.Script)
	w.stringMap(specLabels, s.Labels)
	w.stringMap(specEnv, s.Env)
	w.stringMap(specSecretEnv, s.SecretEnv)
	w.string(specWorkDir, s.WorkDir)
	w.bool(specNoPTY, s.NoPTY)
	w.varint(specRows, uint64(s.Rows))
	w.varint(specCols, uint64(s.Cols))
	w.varint(specTimeout, uint64(int64(s.Timeout)))
	w.varint(specRetries, uint64(int64(s.Retries)))
	w.varint(specBackoff, uint64(int64(s.Backoff)))
	w.varint(specPriority, uint64(int64(s.Priority)))
	w.varint(specSlots, uint64(s.Resources.Slots))
	w.varint(specCPUMillis, uint64(s.Resources.CPUMillis))
	w.varint(specMemoryMiB, uint64(s.Resources.MemoryMiB))
	w.fixed(specDeadline, nanos(s.Deadline))
	w.stringMap(specSelector, s.Selector)
	for _, d := range s.DependsOn {
		w.stringAlways(specDependsOn, d)
	}
	w.bool(specPreemptible, s.Preemptible)
	w.string(specPipeline, s.Pipeline)
	w.string(specStep, s.Step)
	w.bool(specContinueOnFailure, s.ContinueOnFailure)
	w.string(specArray, s.Array)
	w.varint(specArrayIndex, uint64(int64(s.ArrayIndex)))
	w.varint(specArrayLimit, uint64(int64(s.ArrayLimit)))
	w.varint(specStdin, uint64(int64(s.Stdin)))
	w.string(specOwner, s.Owner)
}

// writer appends fields to b; the first error (a string that is not
// UTF-8) sticks.
type writer struct {
	b   []byte
	err error
}

func (w *writer) varint(n protowire.Number, v uint64) {
	if v != 0 {
		w.b = protowire.AppendTag(w.b, n, protowire.VarintType)
		w.b = protowire.AppendVarint(w.b, v)
	}
}

func (w *writer) bool(n protowire.Number, v bool) {
	if v {
		w.varint(n, 1)
	}
}

func (w *writer) fixed(n protowire.Number, v int64) {
	if v != 0 {
		w.b = protowire.AppendTag(w.b, n, protowire.Fixed64Type)
		w.b = protowire.AppendFixed64(w.b, uint64(v))
	}
}

func (w *writer) string(n protowire.Number, v string) {
	if v != "" {
		w.stringAlways(n, v)
	}
}

// stringAlways writes v even when empty, as an element of a list or map.
func (w *writer) stringAlways(n protowire.Number, v string) {
	if !utf8.ValidString(v) && w.err == nil {
		w.err = fmt.Errorf("field %d: %w", n, errNotUTF8)
	}
	w.b = protowire.AppendTag(w.b, n, protowire.BytesType)
	w.b = protowire.AppendString(w.b, v)
}

// message writes the embedded message that body appends, with its length
// in front: one byte is reserved for the length, then fixed once body is
// done, and the body moved when the length needs more.
func (w *writer) message(n protowire.Number, body func()) {
	w.b = protowire.AppendTag(w.b, n, protowire.BytesType)
	at := len(w.b)
	w.b = append(w.b, 0) // room for a length under 128, which most are
	body()
	size := len(w.b) - at - 1
	if size < 0x80 {
		w.b[at] = byte(size)
		return
	}
	var lenBuf [binaryMaxVarint]byte
	l := protowire.AppendVarint(lenBuf[:0], uint64(size))
	// Move the body right to make room for the longer length.
	w.b = append(w.b, l[1:]...)
	copy(w.b[at+len(l):], w.b[at+1:at+1+size])
	copy(w.b[at:], l)
}

const binaryMaxVarint = 10

func (w *writer) stringMap(n protowire.Number, m map[string]string) {
	for k, v := range m {
		entry := protowire.SizeTag(1) + protowire.SizeBytes(len(k)) + protowire.SizeTag(2) + protowire.SizeBytes(len(v))
		w.b = protowire.AppendTag(w.b, n, protowire.BytesType)
		w.b = protowire.AppendVarint(w.b, uint64(entry))
		w.stringAlways(1, k)
		w.stringAlways(2, v)
	}
}
