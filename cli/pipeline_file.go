package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// A pipeline file is YAML, read strictly: a field this file format does not
// have is an error, with the file and the line. README.md documents the
// format. Its types mirror the file; toSpec turns them into the wire spec.
// Rules the values must follow (step names, needs, cycles, ranges) are left
// to the server, which names the step and the field; pipelineFileError maps
// such a field back to its line.

// pipelineFile is the top level of a pipeline file.
type pipelineFile struct {
	Name     string     `yaml:"name"`
	Tenant   string     `yaml:"tenant"`
	Defaults *jobFields `yaml:"defaults"`
	Steps    []stepFile `yaml:"steps"`
}

// jobFields are the job fields the defaults may give and each step may
// override.
type jobFields struct {
	Env       map[string]string `yaml:"env"`
	Labels    map[string]string `yaml:"labels"`
	Selector  map[string]string `yaml:"selector"`
	Timeout   yaml.Node         `yaml:"timeout"` // a Go duration, read by fileDuration
	Retries   *int32            `yaml:"retries"` // absent: unset (-1 on the wire), so the defaults' applies
	Backoff   yaml.Node         `yaml:"backoff"`
	Priority  *int32            `yaml:"priority"` // absent: unset, so the defaults' or the server's applies
	Resources *resourcesFile    `yaml:"resources"`
}

// stepFile is one entry of steps.
type stepFile struct {
	Name              string            `yaml:"name"`
	Command           []string          `yaml:"command"`
	Script            string            `yaml:"script"`
	SecretEnv         map[string]string `yaml:"secret_env"`
	Workdir           string            `yaml:"workdir"`
	NoPTY             bool              `yaml:"no_pty"`
	Preemptible       bool              `yaml:"preemptible"`
	Needs             []string          `yaml:"needs"`
	ContinueOnFailure bool              `yaml:"continue_on_failure"`
	// Deadline is a duration from the run (30m) or an RFC 3339 time.
	Deadline yaml.Node `yaml:"deadline"`
	// Matrix is a mapping of keys to lists of values, kept as a node so
	// that its keys keep the file's order.
	Matrix    yaml.Node `yaml:"matrix"`
	jobFields `yaml:",inline"`
}

type resourcesFile struct {
	CPU    *int64 `yaml:"cpu"`    // millicores; absent: unset
	Memory *int64 `yaml:"memory"` // MiB; absent: unset
	Slots  *int64 `yaml:"slots"`  // absent: unset
}

// orUnset is *v, or -1, which marks a field of a pipeline step or its
// defaults as not given, so that the defaults' value, then the default,
// applies; an explicit 0 overrides.
func orUnset[T int32 | int64](v *T) T {
	if v == nil {
		return -1
	}
	return *v
}

// widen returns v as an *int64, nil when v is.
func widen(v *int32) *int64 {
	if v == nil {
		return nil
	}
	w := int64(*v)
	return &w
}

// fileError is a mistake in a pipeline file, at a line when known.
type fileError struct {
	path string
	line int // 0: unknown
	msg  string
}

func (e *fileError) Error() string {
	if e.line == 0 {
		return e.path + ": " + e.msg
	}
	return fmt.Sprintf("%s:%d: %s", e.path, e.line, e.msg)
}

// readPipelineFile reads and decodes the pipeline file at path. Its errors
// name the file and, where yaml or this reader knows it, the line.
func readPipelineFile(path string) (*hodeipb.PipelineSpec, *fileIndex, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, nil, &fileError{path: path, msg: pe.Err.Error()}
		}
		return nil, nil, err
	}
	var f pipelineFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	switch err := dec.Decode(&f); {
	case errors.Is(err, io.EOF):
		return nil, nil, &fileError{path: path, msg: "the file is empty; a pipeline needs at least its steps"}
	case err != nil:
		return nil, nil, yamlFileError(path, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, nil, &fileError{path: path, line: extra.Line, msg: "a second YAML document; a pipeline file holds one pipeline"}
	case !errors.Is(err, io.EOF):
		return nil, nil, yamlFileError(path, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, yamlFileError(path, err)
	}
	ix := newFileIndex(&root)
	spec, err := f.toSpec(path, ix)
	if err != nil {
		return nil, nil, err
	}
	return spec, ix, nil
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlTypeNames are the words decoding errors use for the file's types.
var yamlTypeNames = strings.NewReplacer(
	"type cli.pipelineFile", "the pipeline",
	"cli.pipelineFile", "a pipeline",
	"type cli.stepFile", "a step",
	"cli.stepFile", "a step",
	"type cli.jobFields", "the defaults",
	"cli.jobFields", "the defaults",
	"type cli.resourcesFile", "resources",
	"cli.resourcesFile", "resources",
)

// yamlFileError rewrites an error of the yaml package as file:line:
// message, one per line when it holds several.
func yamlFileError(path string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var out []error
	for _, m := range msgs {
		fe := &fileError{path: path, msg: strings.TrimPrefix(m, "yaml: ")}
		if sub := yamlLineRE.FindStringSubmatch(m); sub != nil {
			fe.line, _ = strconv.Atoi(sub[1])
			fe.msg = sub[2]
		}
		fe.msg = yamlTypeNames.Replace(fe.msg)
		if name, where, ok := unknownField(fe.msg); ok {
			fe.msg = fmt.Sprintf("field %s not found in %s; it has %s", name, where, strings.Join(fieldNames(where), ", "))
		}
		out = append(out, fe)
	}
	return errors.Join(out...)
}

// unknownField parses "field foo not found in a step".
func unknownField(msg string) (name, where string, ok bool) {
	rest, ok := strings.CutPrefix(msg, "field ")
	if !ok {
		return "", "", false
	}
	name, where, ok = strings.Cut(rest, " not found in ")
	return name, where, ok
}

// fieldNames lists the fields the file format has where yamlTypeNames
// says an unknown one was found.
func fieldNames(where string) []string {
	var t reflect.Type
	switch where {
	case "the pipeline":
		t = reflect.TypeFor[pipelineFile]()
	case "a step":
		t = reflect.TypeFor[stepFile]()
	case "the defaults":
		t = reflect.TypeFor[jobFields]()
	case "resources":
		t = reflect.TypeFor[resourcesFile]()
	default:
		return nil
	}
	names := yamlFields(t)
	slices.Sort(names)
	return names
}

// yamlFields are the yaml names of t's fields, inline ones included.
func yamlFields(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		tag := f.Tag.Get("yaml")
		switch {
		case tag == ",inline":
			out = append(out, yamlFields(f.Type)...)
		case tag != "" && tag != "-":
			out = append(out, strings.Split(tag, ",")[0])
		}
	}
	return out
}

// toSpec converts the decoded file to the wire spec, checking what the
// server cannot name a line for: durations and the shape of matrices.
func (f *pipelineFile) toSpec(path string, ix *fileIndex) (*hodeipb.PipelineSpec, error) {
	out := &hodeipb.PipelineSpec{Name: f.Name, Tenant: f.Tenant}
	if f.Defaults != nil {
		out.Defaults = &hodeipb.JobSpec{}
		if err := f.Defaults.apply(out.Defaults, path, ix, "defaults"); err != nil {
			return nil, err
		}
	}
	for i, st := range f.Steps {
		field := "steps." + st.Name
		if st.Name == "" {
			field = fmt.Sprintf("steps[%d]", i)
		}
		js := &hodeipb.JobSpec{
			Command: st.Command, Script: st.Script, SecretEnv: st.SecretEnv,
			Workdir: st.Workdir, NoPty: st.NoPTY, Preemptible: st.Preemptible,
		}
		if err := st.apply(js, path, ix, field); err != nil {
			return nil, err
		}
		var err error
		if js.DeadlineUnixNano, err = fileDeadline(&st.Deadline, path, field+".deadline", time.Now()); err != nil {
			return nil, err
		}
		matrix, err := matrixAxes(&st.Matrix, path, field+".matrix")
		if err != nil {
			return nil, err
		}
		out.Steps = append(out.Steps, &hodeipb.PipelineStepSpec{
			Name: st.Name, Spec: js, Needs: st.Needs, ContinueOnFailure: st.ContinueOnFailure, Matrix: matrix,
		})
	}
	return out, nil
}

// apply sets the fields of js that jf gives; field names jf in errors
// ("defaults", "steps.build").
func (jf *jobFields) apply(js *hodeipb.JobSpec, path string, ix *fileIndex, field string) error {
	// The wire says unset with -1, so a negative number in the file
	// would silently read as unset: refuse it here, at its line.
	var cpu, memory, slots *int64
	if r := jf.Resources; r != nil {
		cpu, memory, slots = r.CPU, r.Memory, r.Slots
	}
	for _, n := range []struct {
		name string
		v    *int64
	}{
		{"retries", widen(jf.Retries)}, {"resources.cpu", cpu}, {"resources.memory", memory}, {"resources.slots", slots},
	} {
		if n.v != nil && *n.v < 0 {
			f := field + "." + n.name
			return &fileError{path: path, line: ix.line(f), msg: fmt.Sprintf("%s: %d must not be negative (leave it out for the default)", f, *n.v)}
		}
	}
	js.Env, js.Labels, js.Selector = jf.Env, jf.Labels, jf.Selector
	js.Retries = orUnset(jf.Retries)
	if jf.Priority != nil {
		js.Priority = proto.Int32(*jf.Priority)
	}
	js.Resources = &hodeipb.Resources{CpuMillis: -1, MemoryMib: -1, Slots: -1}
	if r := jf.Resources; r != nil {
		js.Resources = &hodeipb.Resources{CpuMillis: orUnset(r.CPU), MemoryMib: orUnset(r.Memory), Slots: orUnset(r.Slots)}
	}
	var err error
	if js.TimeoutMs, err = fileDuration(&jf.Timeout, path, field+".timeout"); err != nil {
		return err
	}
	js.BackoffMs, err = fileDuration(&jf.Backoff, path, field+".backoff")
	return err
}

// fileDeadline reads a step's deadline, a duration from now or an RFC 3339
// time, as Unix nanoseconds; absent is 0, none.
func fileDeadline(n *yaml.Node, path, field string, now time.Time) (int64, error) {
	if absent(n) {
		return 0, nil
	}
	n = resolve(n)
	bad := func(format string, args ...any) error {
		return &fileError{path: path, line: n.Line, msg: field + ": " + fmt.Sprintf(format, args...)}
	}
	if n.Kind != yaml.ScalarNode {
		return 0, bad("must be a duration from the run (30m) or an RFC 3339 time (2026-11-28T10:00:00Z)")
	}
	ns, rule := parseDeadline(n.Value, now, "the run", "30m")
	if rule != "" {
		return 0, bad("%s", rule)
	}
	return ns, nil
}

// absent reports whether a node was left out or given no value.
func absent(n *yaml.Node) bool {
	return n.Kind == 0 || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// fileDuration reads a Go duration ("90s", "10m") as whole milliseconds;
// absent is -1, unset.
func fileDuration(n *yaml.Node, path, field string) (int64, error) {
	if absent(n) {
		return -1, nil
	}
	n = resolve(n)
	bad := func(format string, args ...any) error {
		return &fileError{path: path, line: n.Line, msg: field + ": " + fmt.Sprintf(format, args...)}
	}
	if n.Kind != yaml.ScalarNode {
		return 0, bad("must be a duration, e.g. 30s, 10m, 1h30m")
	}
	d, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		return 0, bad("%q is not a duration; use a number with a unit, e.g. 30s, 10m, 1h30m", n.Value)
	case d < 0:
		return 0, bad("%s must not be negative", n.Value)
	case d > 0 && d < time.Millisecond:
		return 0, bad("%s is shorter than the resolution of 1ms", n.Value)
	}
	return d.Milliseconds(), nil
}

// matrixAxes reads a matrix mapping, keeping its keys in file order.
func matrixAxes(n *yaml.Node, path, field string) ([]*hodeipb.MatrixAxis, error) {
	if absent(n) {
		return nil, nil
	}
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		return nil, &fileError{path: path, line: n.Line, msg: field + ": must be a mapping of keys to lists of values, e.g. {os: [linux, mac]}"}
	}
	var axes []*hodeipb.MatrixAxis
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return nil, &fileError{path: path, line: k.Line, msg: field + ": a key must be a word, e.g. os"}
		}
		bad := &fileError{path: path, line: v.Line, msg: field + "." + k.Value + ": must be a list of values, e.g. [linux, mac]"}
		if v.Kind != yaml.SequenceNode {
			return nil, bad
		}
		ax := &hodeipb.MatrixAxis{Key: k.Value}
		for _, item := range v.Content {
			if item = resolve(item); item.Kind != yaml.ScalarNode {
				bad.line = item.Line
				return nil, bad
			}
			ax.Values = append(ax.Values, item.Value)
		}
		axes = append(axes, ax)
	}
	return axes, nil
}
