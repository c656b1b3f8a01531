package hodeipb

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/hodei-jobs/hodei/job"
)

// The marker is encoded in place of the bad text and then overwritten by
// it: protobuf-go does not encode invalid UTF-8, and both have 4 bytes.
const (
	marker = "@@@@"
	bad    = "a\xffb\xfe"
)

// badWire encodes m with every marker replaced by bad.
func badWire(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.ReplaceAll(b, []byte(marker), []byte(bad))
}

// setBad replaces every marker in m, keys of maps included, by bad.
func setBad(m protoreflect.Message) {
	fix := func(s string) string {
		if s == marker {
			return bad
		}
		return s
	}
	var fields []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		fields = append(fields, fd)
		return true
	})
	for _, fd := range fields { // not changed while Range runs
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			mp := v.Map()
			var keys []protoreflect.MapKey
			mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool { keys = append(keys, k); return true })
			for _, k := range keys {
				val := mp.Get(k)
				mp.Clear(k)
				mp.Set(protoreflect.ValueOfString(fix(k.String())).MapKey(), protoreflect.ValueOfString(fix(val.String())))
			}
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				if fd.Kind() == protoreflect.StringKind {
					l.Set(i, protoreflect.ValueOfString(fix(l.Get(i).String())))
				} else if fd.Kind() == protoreflect.MessageKind {
					setBad(l.Get(i).Message())
				}
			}
		case fd.Kind() == protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString(fix(v.String())))
		case fd.Kind() == protoreflect.MessageKind:
			setBad(v.Message())
		}
	}
}

func TestUTF8FieldIsNamed(t *testing.T) {
	spec := func(f func(*JobSpec)) *JobSpec {
		s := &JobSpec{Command: []string{"true"}}
		f(s)
		return s
	}
	tests := []struct {
		name  string
		msg   proto.Message // with marker where bad goes
		field string
		rule  string
	}{
		{"Command", &SubmitRequest{Spec: spec(func(s *JobSpec) { s.Command = []string{"echo", marker} })}, "spec.command[1]", "is not valid UTF-8"},
		{"Script", &SubmitRequest{Spec: spec(func(s *JobSpec) { s.Command, s.Script = nil, marker })}, "spec.script", "is not valid UTF-8"},
		{"EnvKey", &SubmitRequest{Spec: spec(func(s *JobSpec) { s.Env = map[string]string{marker: "v"} })}, "spec.env", `key "a\xffb\xfe" is not valid UTF-8`},
		{"EnvValue", &SubmitRequest{Spec: spec(func(s *JobSpec) { s.Env = map[string]string{"A": marker} })}, "spec.env", `value of "A" is not valid UTF-8`},
		{"SecretValue", &SubmitRequest{Spec: spec(func(s *JobSpec) { s.SecretEnv = map[string]string{"T": marker} })}, "spec.secret_env", `value of "T" is not valid UTF-8`},
		{"Array", &SubmitRequest{Spec: spec(func(*JobSpec) {}), Array: marker}, "array", "is not valid UTF-8"},
		{"MatrixValue", &RunPipelineRequest{Spec: &PipelineSpec{Steps: []*PipelineStepSpec{{Name: "a"}, {Name: "b",
			Matrix: []*MatrixAxis{{Key: "os", Values: []string{"x", marker}}}}}}}, "spec.steps[1].matrix[0].values[1]", "is not valid UTF-8"},
		{"DefaultsEnv", &RunPipelineRequest{Spec: &PipelineSpec{Defaults: &JobSpec{Env: map[string]string{"A": marker}}}}, "spec.defaults.env", `value of "A"`},
		{"Needs", &RunPipelineRequest{Spec: &PipelineSpec{Steps: []*PipelineStepSpec{{Name: "a", Needs: []string{"b", marker}}}}}, "spec.steps[0].needs[1]", "is not valid UTF-8"},
		{"TenantName", &SetTenantRequest{Tenant: &Tenant{Name: marker}}, "tenant.name", "is not valid UTF-8"},
		{"Valid", &SubmitRequest{Spec: spec(func(s *JobSpec) { s.Command = []string{"echo", "héllo ✓"} })}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := func(how string, err error) {
				t.Helper()
				var fe *job.FieldError
				switch {
				case tt.field == "" && err != nil:
					t.Fatalf("%s = %v, want nil", how, err)
				case tt.field == "":
				case !errors.As(err, &fe) || fe.Field != tt.field || !bytes.Contains([]byte(fe.Rule), []byte(tt.rule)):
					t.Fatalf("%s = %v, want %s: …%s…", how, err, tt.field, tt.rule)
				}
			}
			want("FindInvalidUTF8", FindInvalidUTF8(badWire(t, tt.msg), tt.msg.ProtoReflect().Descriptor()))
			// The same text set in a message, as a client would hold it.
			m := proto.Clone(tt.msg)
			setBad(m.ProtoReflect())
			want("CheckUTF8", CheckUTF8(m))
		})
	}
}
