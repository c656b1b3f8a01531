package record

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/hodei-jobs/hodei/job"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

// filler sets every field of a struct, recursively, to a value that is not
// zero, so that a round trip through a record loses any field the record
// does not carry: a field added to the domain type and not to the record
// (or its converters) fails the round trip. Integers take the sign of sign.
type filler struct {
	t    testing.TB
	n    int
	sign int64
}

func (f *filler) fill(v reflect.Value, path string) {
	f.n++
	if v.Type() == reflect.TypeFor[time.Time]() {
		v.Set(reflect.ValueOf(t0.Add(time.Duration(f.n)*time.Hour + time.Duration(f.n))))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			f.fill(v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d-ü", f.n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int32, reflect.Int64:
		x := f.sign * (int64(f.n)*1_000_000_007 + 1)
		if v.OverflowInt(x) {
			x = f.sign * int64(f.n)
		}
		v.SetInt(x)
	case reflect.Uint8, reflect.Uint32, reflect.Uint64:
		x := uint64(f.n)*1_000_000_007 + 1
		if v.OverflowUint(x) {
			x = uint64(f.n)
		}
		v.SetUint(x)
	case reflect.Float64:
		v.SetFloat(float64(f.n) + 0.25)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for range 2 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			f.fill(k, path+"[key]")
			f.fill(e, path+"[value]")
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			f.fill(s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	default:
		f.t.Fatalf("fill %s: a field of kind %s; teach fill (and the record) about it", path, v.Kind())
	}
}

// filled returns a new T with every field set.
func filled[T any](t testing.TB, sign int64) *T {
	t.Helper()
	v := new(T)
	f := filler{t: t, sign: sign}
	f.fill(reflect.ValueOf(v).Elem(), reflect.TypeFor[T]().Name())
	return v
}

// roundTrip checks that decode(key, encode(v)) is v, for a fully set v of
// both signs.
func roundTrip[T any](t *testing.T, key func(*T) string, enc func(*T) ([]byte, error), dec func(string, []byte) (*T, error)) {
	t.Helper()
	for _, sign := range []int64{1, -1} {
		want := filled[T](t, sign)
		b, err := enc(want)
		require.NoError(t, err)
		got, err := dec(key(want), b)
		require.NoError(t, err)
		require.Equal(t, want, got, "sign %d", sign)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Run("Job", func(t *testing.T) {
		roundTrip(t, func(j *job.Job) string { return j.ID },
			func(j *job.Job) ([]byte, error) { return MarshalJob(j, j.Version) }, UnmarshalJob)
	})
	t.Run("Pipeline", func(t *testing.T) {
		roundTrip(t, func(p *job.Pipeline) string { return p.ID }, MarshalPipeline, UnmarshalPipeline)
	})
	t.Run("Worker", func(t *testing.T) {
		roundTrip(t, func(w *job.Worker) string { return w.ID }, MarshalWorker, UnmarshalWorker)
	})
	t.Run("Tenant", func(t *testing.T) {
		roundTrip(t, func(tn *job.Tenant) string { return tn.Name }, MarshalTenant, UnmarshalTenant)
	})
	t.Run("Token", func(t *testing.T) {
		roundTrip(t, func(tk *job.Token) string { return tk.ID }, MarshalToken, UnmarshalToken)
	})
	t.Run("Agent", func(t *testing.T) {
		roundTrip(t, func(a *job.AgentBinding) string { return a.WorkerID }, MarshalAgent, UnmarshalAgent)
	})
	t.Run("Array", func(t *testing.T) {
		roundTrip(t, func(a *job.Array) string { return a.ID }, MarshalArray, UnmarshalArray)
	})
	t.Run("Brief", func(t *testing.T) {
		// A brief reads the same values as the whole job, copying them.
		for _, sign := range []int64{1, -1} {
			j := filled[job.Job](t, sign)
			b, err := MarshalJob(j, j.Version)
			require.NoError(t, err)
			got, err := UnmarshalBrief(j.ID, b)
			require.NoError(t, err)
			want := j.Brief()
			want.CreatedAt, want.NotBefore, want.Deadline = want.CreatedAt.UTC(), want.NotBefore.UTC(), want.Deadline.UTC()
			got.CreatedAt, got.NotBefore, got.Deadline = got.CreatedAt.UTC(), got.NotBefore.UTC(), got.Deadline.UTC()
			require.Equal(t, want, got, "sign %d", sign)
		}
	})
	t.Run("ZeroJob", func(t *testing.T) {
		b, err := MarshalJob(&job.Job{ID: "j"}, 0)
		require.NoError(t, err)
		got, err := UnmarshalJob("j", b)
		require.NoError(t, err)
		require.Equal(t, &job.Job{ID: "j"}, got)
	})
	t.Run("InvalidUTF8", func(t *testing.T) {
		j := &job.Job{ID: "j", Spec: job.Spec{Name: "\xff"}}
		_, err := MarshalJob(j, 0)
		require.ErrorIs(t, err, job.ErrInvalid)
		_, err = MarshalTenant(&job.Tenant{Name: "t", RunAs: "\xff"})
		require.ErrorIs(t, err, job.ErrInvalid)
	})
}

// TestFieldNumbers checks the walker's field numbers (job.go) against the
// generated descriptors, both ways: every constant names its field, and
// every field of the records has a constant.
func TestFieldNumbers(t *testing.T) {
	check := func(t *testing.T, m proto.Message, want map[string]protowire.Number) {
		t.Helper()
		fields := m.ProtoReflect().Descriptor().Fields()
		require.Equal(t, fields.Len(), len(want), "a field of %s without a constant in job.go, or the reverse",
			m.ProtoReflect().Descriptor().FullName())
		for name, num := range want {
			fd := fields.ByName(protoreflect.Name(name))
			require.NotNil(t, fd, "no field %s", name)
			require.Equal(t, num, fd.Number(), "field %s", name)
		}
	}
	check(t, &JobRecord{}, map[string]protowire.Number{
		"state": jobState, "attempt": jobAttempt, "version": jobVersion, "tenant": jobTenant,
		"spec": jobSpec, "created_unix_nano": jobCreated, "scheduled_unix_nano": jobScheduled,
		"started_unix_nano": jobStarted, "finished_unix_nano": jobFinished, "worker": jobWorker,
		"exit_code": jobExitCode, "reason": jobReason, "usage_cpu_time_nanos": jobUsageCPU,
		"usage_max_rss_kib": jobUsageMaxRSS, "not_before_unix_nano": jobNotBefore,
		"cancel_requested": jobCancelRequest, "stop": jobStop, "preemptions": jobPreemptions,
		"deadline_missed": jobDeadlineMiss, "signal": jobSignal,
		"usage_wall_nanos": jobUsageWall, "usage_attempt": jobUsageAttempt,
	})
	check(t, &SpecRecord{}, map[string]protowire.Number{
		"name": specName, "command": specCommand, "script": specScript, "labels": specLabels,
		"env": specEnv, "secret_env": specSecretEnv, "workdir": specWorkDir, "no_pty": specNoPTY,
		"rows": specRows, "cols": specCols, "timeout_nanos": specTimeout, "retries": specRetries,
		"backoff_nanos": specBackoff, "priority": specPriority, "slots": specSlots,
		"cpu_millis": specCPUMillis, "memory_mib": specMemoryMiB, "deadline_unix_nano": specDeadline,
		"selector": specSelector, "depends_on": specDependsOn, "preemptible": specPreemptible,
		"pipeline": specPipeline, "step": specStep, "continue_on_failure": specContinueOnFailure,
		"array": specArray, "array_index": specArrayIndex, "array_limit": specArrayLimit,
		"stdin": specStdin, "owner": specOwner,
	})
}

// set sets field fd of m to a value that is not its default.
func set(t *testing.T, m protoreflect.Message, fd protoreflect.FieldDescriptor) {
	t.Helper()
	switch {
	case fd.IsMap():
		m.Mutable(fd).Map().Set(protoreflect.ValueOfString("k").MapKey(), protoreflect.ValueOfString("v"))
		return
	case fd.IsList():
		m.Mutable(fd).List().Append(protoreflect.ValueOfString("x"))
		return
	}
	var v protoreflect.Value
	switch fd.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		v = protoreflect.ValueOfInt32(-3)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		v = protoreflect.ValueOfInt64(-3)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		v = protoreflect.ValueOfUint32(3)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		v = protoreflect.ValueOfUint64(3)
	case protoreflect.BoolKind:
		v = protoreflect.ValueOfBool(true)
	case protoreflect.StringKind:
		v = protoreflect.ValueOfString("x")
	default:
		t.Fatalf("field %s of kind %s: teach this test about it", fd.FullName(), fd.Kind())
	}
	m.Set(fd, v)
}

// TestUnmarshalJobReadsEveryField sets each field of JobRecord and
// SpecRecord alone and checks that the walker does not skip it.
func TestUnmarshalJobReadsEveryField(t *testing.T) {
	base := func() *JobRecord { return &JobRecord{Spec: &SpecRecord{}} }
	empty, err := UnmarshalJob("j", mustMarshal(t, base()))
	require.NoError(t, err)
	try := func(t *testing.T, rec *JobRecord, fd protoreflect.FieldDescriptor) {
		got, err := UnmarshalJob("j", mustMarshal(t, rec))
		require.NoError(t, err)
		require.NotEqual(t, empty, got, "field %s was not read", fd.FullName())
	}
	fields := (&JobRecord{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Number() == jobSpec {
			continue
		}
		rec := base()
		set(t, rec.ProtoReflect(), fd)
		try(t, rec, fd)
	}
	fields = (&SpecRecord{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		rec := base()
		set(t, rec.Spec.ProtoReflect(), fields.Get(i))
		try(t, rec, fields.Get(i))
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}

func TestUnmarshalJob(t *testing.T) {
	t.Run("Merges", func(t *testing.T) {
		// Two encodings one after the other are one merged record, as in
		// protobuf: later scalars win, lists and maps add up. The version
		// appended by WithVersion relies on it.
		a := &JobRecord{State: 1, Attempt: 1, Tenant: "a", Spec: &SpecRecord{
			Name: "first", Command: []string{"echo"}, Env: map[string]string{"A": "1"},
		}}
		b := &JobRecord{State: 3, Spec: &SpecRecord{
			Name: "second", Command: []string{"hi"}, Env: map[string]string{"B": "2"},
		}}
		enc := WithVersion(append(mustMarshal(t, a), mustMarshal(t, b)...), 9)
		got, err := UnmarshalJob("j", enc)
		require.NoError(t, err)
		require.Equal(t, &job.Job{ID: "j", State: job.Running, Attempt: 1, Version: 9, Spec: job.Spec{
			Name: "second", Tenant: "a", Command: []string{"echo", "hi"}, Env: map[string]string{"A": "1", "B": "2"},
		}}, got)
	})
	t.Run("UnknownFieldsSkipped", func(t *testing.T) {
		enc := mustMarshal(t, &JobRecord{State: 2})
		enc = protowire.AppendTag(enc, 999, protowire.BytesType)
		enc = protowire.AppendString(enc, "from a newer hodei")
		got, err := UnmarshalJob("j", enc)
		require.NoError(t, err)
		require.Equal(t, job.Scheduled, got.State)
	})
	t.Run("Errors", func(t *testing.T) {
		full := mustMarshal(t, fromJob(filled[job.Job](t, 1), 3))
		wrongType := protowire.AppendTag(nil, jobTenant, protowire.VarintType)
		wrongType = protowire.AppendVarint(wrongType, 1)
		badSpec := protowire.AppendTag(nil, jobSpec, protowire.BytesType)
		badSpec = protowire.AppendBytes(badSpec, []byte{0xff})
		for name, b := range map[string][]byte{
			"Truncated": full[:len(full)-1],
			"BadTag":    {0xff},
			"WrongType": wrongType,
			"BadSpec":   badSpec,
		} {
			t.Run(name, func(t *testing.T) {
				_, err := UnmarshalJob("01J", b)
				require.ErrorContains(t, err, "decode job 01J")
			})
		}
		_, err := UnmarshalJob("j", wrongType)
		require.ErrorContains(t, err, "field 4 has wire type 0, want 2")
	})
	t.Run("DoesNotAliasInput", func(t *testing.T) {
		enc := mustMarshal(t, fromJob(filled[job.Job](t, 1), 0))
		want, err := UnmarshalJob("j", enc)
		require.NoError(t, err)
		got, err := UnmarshalJob("j", enc)
		require.NoError(t, err)
		clear(enc)
		require.Equal(t, want, got)
	})
}

func TestReadHeader(t *testing.T) {
	j := filled[job.Job](t, 1)
	j.State, j.Attempt = job.Running, 7
	enc, err := MarshalJob(j, 0)
	require.NoError(t, err)
	for _, v := range []uint64{0, 1, 300, 1 << 40} {
		b := WithVersion(append([]byte(nil), enc...), v)
		h, err := ReadHeader(b)
		require.NoError(t, err)
		require.Equal(t, Header{State: job.Running, Attempt: 7, Version: v, Finished: j.FinishedAt.UnixNano(),
			Tenant: []byte(j.Spec.Tenant)}, h)
		full, err := UnmarshalJob(j.ID, b)
		require.NoError(t, err)
		require.Equal(t, v, full.Version)
	}
	_, err = ReadHeader([]byte{0xff})
	require.ErrorContains(t, err, "decode job header")
	_, err = ReadHeader(protowire.AppendTag(nil, jobFinished, protowire.VarintType))
	require.Error(t, err)
}

// referenceJob converts a JobRecord decoded by the generated code, the
// reference the walker is fuzzed against.
func referenceJob(id string, r *JobRecord) *job.Job {
	s := r.GetSpec()
	return &job.Job{
		ID: id,
		Spec: job.Spec{
			Name:              s.GetName(),
			Tenant:            r.GetTenant(),
			Labels:            s.GetLabels(),
			Command:           s.GetCommand(),
			Script:            s.GetScript(),
			Env:               s.GetEnv(),
			SecretEnv:         s.GetSecretEnv(),
			WorkDir:           s.GetWorkdir(),
			NoPTY:             s.GetNoPty(),
			Rows:              s.GetRows(),
			Cols:              s.GetCols(),
			Timeout:           time.Duration(s.GetTimeoutNanos()),
			Retries:           int(s.GetRetries()),
			Backoff:           time.Duration(s.GetBackoffNanos()),
			Priority:          int(s.GetPriority()),
			Deadline:          fromNanos(s.GetDeadlineUnixNano()),
			Resources:         job.Resources{CPUMillis: s.GetCpuMillis(), MemoryMiB: s.GetMemoryMib(), Slots: s.GetSlots()},
			Selector:          s.GetSelector(),
			DependsOn:         s.GetDependsOn(),
			Preemptible:       s.GetPreemptible(),
			Pipeline:          s.GetPipeline(),
			Step:              s.GetStep(),
			ContinueOnFailure: s.GetContinueOnFailure(),
			Array:             s.GetArray(),
			ArrayIndex:        int(s.GetArrayIndex()),
			ArrayLimit:        int(s.GetArrayLimit()),
			Stdin:             job.Stdin(s.GetStdin()),
			Owner:             s.GetOwner(),
		},
		State:           job.State(r.GetState()),
		Attempt:         int(r.GetAttempt()),
		Version:         r.GetVersion(),
		Worker:          r.GetWorker(),
		ExitCode:        int(r.GetExitCode()),
		Reason:          r.GetReason(),
		CancelRequested: r.GetCancelRequested(),
		Stop:            job.StopKind(r.GetStop()),
		Preemptions:     int(r.GetPreemptions()),
		DeadlineMissed:  r.GetDeadlineMissed(),
		Signal:          int(r.GetSignal()),
		CreatedAt:       fromNanos(r.GetCreatedUnixNano()),
		ScheduledAt:     fromNanos(r.GetScheduledUnixNano()),
		StartedAt:       fromNanos(r.GetStartedUnixNano()),
		FinishedAt:      fromNanos(r.GetFinishedUnixNano()),
		NotBefore:       fromNanos(r.GetNotBeforeUnixNano()),
		Usage: job.Usage{CPUTime: time.Duration(r.GetUsageCpuTimeNanos()), MaxRSSKiB: r.GetUsageMaxRssKib(),
			Wall: time.Duration(r.GetUsageWallNanos()), Attempt: int(r.GetUsageAttempt())},
	}
}

// FuzzUnmarshalJob checks that the walker never panics, and that whenever
// it and the generated code both accept a record they agree on the job and
// its header. (They may disagree on acceptance: the generated code refuses
// invalid UTF-8 and skips a known field of the wrong wire type, which the
// walker refuses.)
func FuzzUnmarshalJob(f *testing.F) {
	for _, sign := range []int64{1, -1} {
		b, err := MarshalJob(filled[job.Job](f, sign), 7)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add(WithVersion(nil, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := UnmarshalJob("j", b)
		h, herr := ReadHeader(b)
		if err != nil {
			return
		}
		require.NoError(t, herr, "the job decodes, its header must too")
		require.Equal(t, Header{State: got.State, Attempt: got.Attempt, Version: got.Version,
			Finished: nanos(got.FinishedAt), Tenant: h.Tenant}, h)
		require.Equal(t, got.Spec.Tenant, string(h.Tenant))
		var rec JobRecord
		if proto.Unmarshal(b, &rec) != nil {
			return
		}
		want := referenceJob("j", &rec)
		require.Equal(t, want, got)
	})
}

// The hand-written job encoder writes what the generated one would: the
// generated decoder reads it back as fromJob's message.
func TestEncodeMatchesGenerated(t *testing.T) {
	for _, sign := range []int64{1, -1} {
		j := filled[job.Job](t, sign)
		b, err := MarshalJob(j, j.Version)
		require.NoError(t, err)
		var got JobRecord
		require.NoError(t, proto.Unmarshal(b, &got))
		require.True(t, proto.Equal(fromJob(j, j.Version), &got), "sign %d:\n%v\nwant\n%v", sign, &got, fromJob(j, j.Version))
	}
	// Embedded messages of every length size: the length's byte reserved
	// before the body is widened after it.
	for _, n := range []int{0, 100, 126, 127, 128, 200, 16_370, 16_383, 16_384, 20_000} {
		j := &job.Job{ID: "j", Spec: job.Spec{Script: strings.Repeat("y", n), Name: "n"}, State: job.Running}
		b, err := MarshalJob(j, 3)
		require.NoError(t, err)
		var got JobRecord
		require.NoError(t, proto.Unmarshal(b, &got), "script of %d bytes", n)
		require.True(t, proto.Equal(fromJob(j, 3), &got), "script of %d bytes", n)
	}
	big := &job.Job{ID: "j", Spec: job.Spec{Script: strings.Repeat("x", 3_000_000)}}
	b, err := MarshalJob(big, 1)
	require.NoError(t, err)
	back, err := UnmarshalJob("j", b)
	require.NoError(t, err)
	require.Equal(t, big.Spec.Script, back.Spec.Script, "a spec whose length takes 4 bytes")
	_, err = MarshalJob(&job.Job{ID: "j", Reason: "\xff"}, 1)
	require.ErrorIs(t, err, job.ErrInvalid)
}

// fromJob is the generated message of a job record: the reference the
// hand-written encoder is held to.
func fromJob(j *job.Job, version uint64) *JobRecord {
	s := &j.Spec
	return &JobRecord{
		State:   int32(j.State),
		Attempt: int64(j.Attempt),
		Version: version,
		Tenant:  s.Tenant,
		Spec: &SpecRecord{
			Name:              s.Name,
			Command:           s.Command,
			Script:            s.Script,
			Labels:            s.Labels,
			Env:               s.Env,
			SecretEnv:         s.SecretEnv,
			Workdir:           s.WorkDir,
			NoPty:             s.NoPTY,
			Rows:              s.Rows,
			Cols:              s.Cols,
			TimeoutNanos:      int64(s.Timeout),
			Retries:           int64(s.Retries),
			BackoffNanos:      int64(s.Backoff),
			Priority:          int64(s.Priority),
			Slots:             s.Resources.Slots,
			CpuMillis:         s.Resources.CPUMillis,
			MemoryMib:         s.Resources.MemoryMiB,
			DeadlineUnixNano:  nanos(s.Deadline),
			Selector:          s.Selector,
			DependsOn:         s.DependsOn,
			Preemptible:       s.Preemptible,
			Pipeline:          s.Pipeline,
			Step:              s.Step,
			ContinueOnFailure: s.ContinueOnFailure,
			Array:             s.Array,
			ArrayIndex:        int64(s.ArrayIndex),
			ArrayLimit:        int64(s.ArrayLimit),
			Stdin:             int64(s.Stdin),
			Owner:             s.Owner,
		},
		CreatedUnixNano:   nanos(j.CreatedAt),
		ScheduledUnixNano: nanos(j.ScheduledAt),
		StartedUnixNano:   nanos(j.StartedAt),
		FinishedUnixNano:  nanos(j.FinishedAt),
		Worker:            j.Worker,
		ExitCode:          int64(j.ExitCode),
		Reason:            j.Reason,
		UsageCpuTimeNanos: int64(j.Usage.CPUTime),
		UsageMaxRssKib:    j.Usage.MaxRSSKiB,
		UsageWallNanos:    int64(j.Usage.Wall),
		UsageAttempt:      int64(j.Usage.Attempt),
		NotBeforeUnixNano: nanos(j.NotBefore),
		CancelRequested:   j.CancelRequested,
		Stop:              int32(j.Stop),
		Preemptions:       int64(j.Preemptions),
		DeadlineMissed:    j.DeadlineMissed,
		Signal:            int64(j.Signal),
	}
}

// TestSignalNeedsNoNewSchema checks why JobRecord.signal came without a
// schema version: a record written before it decodes with no signal, as
// the job had, and one written with it keeps it.
func TestSignalNeedsNoNewSchema(t *testing.T) {
	old, err := proto.Marshal(&JobRecord{State: int32(job.Failed), Attempt: 1, ExitCode: -1, Reason: "signal: killed"})
	require.NoError(t, err)
	j, err := UnmarshalJob("01J", old)
	require.NoError(t, err)
	require.Equal(t, 0, j.Signal)
	require.Equal(t, -1, j.ExitCode)

	j.Signal = 9
	b, err := MarshalJob(j, 1)
	require.NoError(t, err)
	var rec JobRecord
	require.NoError(t, proto.Unmarshal(b, &rec))
	require.Equal(t, int64(9), rec.GetSignal())
}
