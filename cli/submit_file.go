package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// A jobs file (`hodei submit --file`) holds one job per line, as a JSON
// object with the fields of a pipeline step (README.md), plus tenant and
// after. Blank lines and lines starting with '#' are skipped. Every line is
// decoded and checked by the server's own rules (job.Spec.Validate) before
// anything is sent, so a bad line anywhere fails the command with its line
// number and nothing submitted; the jobs then go in batches of up to
// job.MaxBatch (and job.MaxBatchBytes), each stored all or nothing.

// jobLine is one line of a jobs file.
type jobLine struct {
	Name        string            `json:"name"`
	Tenant      string            `json:"tenant"`
	Command     []string          `json:"command"`
	Script      string            `json:"script"`
	Env         map[string]string `json:"env"`
	SecretEnv   map[string]string `json:"secret_env"`
	Labels      map[string]string `json:"labels"`
	Selector    map[string]string `json:"selector"`
	Workdir     string            `json:"workdir"`
	NoPTY       bool              `json:"no_pty"`
	Timeout     string            `json:"timeout"` // a Go duration: 90s, 10m
	Retries     int32             `json:"retries"`
	Backoff     string            `json:"backoff"`
	Priority    *int32            `json:"priority"` // absent: the server's default
	Deadline    string            `json:"deadline"` // a duration from now or an RFC 3339 time
	Resources   *lineResources    `json:"resources"`
	Preemptible bool              `json:"preemptible"`
	After       []string          `json:"after"` // ids of stored jobs
}

type lineResources struct {
	CPU    int64 `json:"cpu"`    // millicores
	Memory int64 `json:"memory"` // MiB
	Slots  int64 `json:"slots"`
}

// maxJobLine bounds one line of a jobs file: a spec is at most 1 MiB of
// text, and JSON escapes may make it a few times longer.
const maxJobLine = 8 << 20

// fileJob is one job of a jobs file and the line it came from.
type fileJob struct {
	line int
	spec *hodeipb.JobSpec
}

// maxLineErrors is how many bad lines one run reports.
const maxLineErrors = 10

// readJobsFile reads the jobs file r, named name in errors, and checks
// every job; now is the time a deadline duration counts from. Its error
// names the file and the line of every bad job (up to maxLineErrors).
func readJobsFile(r io.Reader, name string, now time.Time) ([]fileJob, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxJobLine)
	var (
		jobs []fileJob
		errs []error
		line int
	)
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		spec, err := parseJobLine(text, now)
		if err != nil {
			if errs = append(errs, &fileError{path: name, line: line, msg: err.Error()}); len(errs) == maxLineErrors {
				errs = append(errs, fmt.Errorf("%s: stopped after %d bad lines", name, maxLineErrors))
				return nil, errors.Join(errs...)
			}
			continue
		}
		jobs = append(jobs, fileJob{line: line, spec: spec})
	}
	switch err := sc.Err(); {
	case errors.Is(err, bufio.ErrTooLong):
		errs = append(errs, &fileError{path: name, line: line + 1, msg: fmt.Sprintf("the line is longer than %d MiB", maxJobLine>>20)})
	case err != nil:
		errs = append(errs, &fileError{path: name, msg: err.Error()})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(jobs) == 0 {
		return nil, &fileError{path: name, msg: "holds no job: give one JSON object per line, e.g. {\"command\": [\"make\", \"test\"]}"}
	}
	return jobs, nil
}

// parseJobLine decodes one line into the wire spec and checks it as the
// server will. Its error starts with the field at fault, named as in the
// file ("timeout: …", "resources.cpu: …").
func parseJobLine(text []byte, now time.Time) (*hodeipb.JobSpec, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(text, &raw); err != nil {
		return nil, jsonLineError(err)
	}
	if err := knownFields(raw, reflect.TypeFor[jobLine](), "", "a job"); err != nil {
		return nil, err
	}
	if r, ok := raw["resources"]; ok && !bytes.Equal(r, []byte("null")) {
		var rr map[string]json.RawMessage
		if err := json.Unmarshal(r, &rr); err != nil {
			return nil, fmt.Errorf("resources: must be an object, e.g. {\"cpu\": 500, \"memory\": 256, \"slots\": 1}")
		}
		if err := knownFields(rr, reflect.TypeFor[lineResources](), "resources.", "resources"); err != nil {
			return nil, err
		}
	}
	var jl jobLine
	if err := json.Unmarshal(text, &jl); err != nil {
		return nil, jsonLineError(err)
	}
	spec := &hodeipb.JobSpec{
		Name: jl.Name, Tenant: jl.Tenant, Command: jl.Command, Script: jl.Script,
		Env: jl.Env, SecretEnv: jl.SecretEnv, Labels: jl.Labels, Selector: jl.Selector,
		Workdir: jl.Workdir, NoPty: jl.NoPTY, Retries: jl.Retries, Priority: jl.Priority,
		Preemptible: jl.Preemptible, DependsOn: jl.After,
	}
	if r := jl.Resources; r != nil {
		spec.Resources = &hodeipb.Resources{CpuMillis: r.CPU, MemoryMib: r.Memory, Slots: r.Slots}
	}
	for _, d := range []struct {
		field, value string
		dst          *int64
	}{{"timeout", jl.Timeout, &spec.TimeoutMs}, {"backoff", jl.Backoff, &spec.BackoffMs}} {
		ms, rule := parseMillis(d.value)
		if rule != "" {
			return nil, fmt.Errorf("%s: %s", d.field, rule)
		}
		*d.dst = ms
	}
	if jl.Deadline != "" {
		ns, rule := parseDeadline(jl.Deadline, now, "now", "30m, 2h")
		if rule != "" {
			return nil, fmt.Errorf("deadline: %s", rule)
		}
		if time.Unix(0, ns).Sub(now) > job.MaxDeadlineAhead {
			return nil, fmt.Errorf("deadline: %s is too far ahead: at most %d days from now", jl.Deadline, job.MaxDeadlineAhead/(24*time.Hour))
		}
		spec.DeadlineUnixNano = ns
	}
	// The server's own rules, so that a bad line fails before anything
	// is sent. What only the server knows (tenants, their limits, the jobs
	// named by after) it checks per batch.
	s := spec.ToSpec()
	s.Normalize()
	err := s.Validate()
	if fe, ok := errors.AsType[*job.FieldError](err); ok {
		return nil, fmt.Errorf("%s: %s", lineField(fe.Field), fe.Rule)
	}
	if err != nil {
		return nil, err
	}
	if n := proto.Size(spec); n > job.MaxBatchBytes {
		return nil, fmt.Errorf("the job encodes to %d bytes, more than the %d MiB one request may carry", n, job.MaxBatchBytes>>20)
	}
	return spec, nil
}

// knownFields refuses a key of raw that t (a struct with json tags) does
// not have, listing those it has; where names t in the message. JSON keys
// are matched exactly: encoding/json alone would take "Command" too.
func knownFields(raw map[string]json.RawMessage, t reflect.Type, prefix, where string) error {
	var names []string
	for f := range t.Fields() {
		names = append(names, strings.Split(f.Tag.Get("json"), ",")[0])
	}
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		if !slices.Contains(names, k) {
			slices.Sort(names)
			return fmt.Errorf("%s%s: no such field in %s; it has %s", prefix, k, where, strings.Join(names, ", "))
		}
	}
	return nil
}

// jsonLineError rewrites an error of encoding/json about one line.
func jsonLineError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("not valid JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.As(err, &typ) && typ.Field == "":
		return fmt.Errorf("a line must be a JSON object, e.g. {\"command\": [\"make\", \"test\"]}, not a JSON %s", typ.Value)
	case errors.As(err, &typ):
		if typ.Type.Kind() == reflect.String && isMapField(typ.Field) {
			return fmt.Errorf("%s: must be %s; a value is a JSON %s", typ.Field, jsonKind(reflect.TypeFor[map[string]string]()), typ.Value)
		}
		return fmt.Errorf("%s: must be %s, not a JSON %s", typ.Field, jsonKind(typ.Type), typ.Value)
	}
	return err
}

// isMapField reports whether the jobLine field with json name is a map.
func isMapField(name string) bool {
	for f := range reflect.TypeFor[jobLine]().Fields() {
		if strings.Split(f.Tag.Get("json"), ",")[0] == name {
			return f.Type.Kind() == reflect.Map
		}
	}
	return false
}

// jsonKind says what a value of Go type t looks like in a jobs file.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Slice:
		return "a list of strings"
	case reflect.Map:
		return "an object whose values are strings"
	case reflect.String:
		return "a string"
	case reflect.Int32, reflect.Int64:
		return "a whole number within range"
	case reflect.Bool:
		return "true or false"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "an object"
}

// lineFields maps the fields the server's rules name to the keys of a
// jobs file where they differ.
var lineFields = strings.NewReplacer(
	"resources.cpu_millis", "resources.cpu",
	"resources.memory_mib", "resources.memory",
)

// lineField names a spec field of the rules as a jobs file does.
func lineField(field string) string { return lineFields.Replace(field) }

// openJobsFile opens path, or stdin for "-", and returns the name errors
// give it.
func openJobsFile(c *ucli.Context, path string) (io.ReadCloser, string, error) {
	if path == "-" {
		return io.NopCloser(c.App.Reader), "stdin", nil
	}
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, "", &fileError{path: path, msg: pe.Err.Error()}
		}
		return nil, "", err
	}
	return f, path, nil
}

// submitFile submits the jobs of --file and prints their ids, one per line
// as each batch is stored (or, with asJSON, {"ids": […]} at the end).
func submitFile(c *ucli.Context, e *env, asJSON bool) error {
	if err := fileOnly(c); err != nil {
		return err
	}
	r, name, err := openJobsFile(c, c.String("file"))
	if err != nil {
		return err
	}
	jobs, err := readJobsFile(r, name, e.now())
	r.Close()
	if err != nil {
		return err
	}
	return withClient(c, func(cl *client.Client) error {
		var ids []string
		err := submitBatches(c, cl, name, jobs, func(batch []string) error {
			ids = append(ids, batch...)
			if asJSON {
				return nil
			}
			for _, id := range batch {
				if _, err := fmt.Fprintln(c.App.Writer, id); err != nil {
					return err
				}
			}
			return nil
		})
		if asJSON && (err == nil || len(ids) > 0) {
			if werr := writeJSON(c.App.Writer, struct {
				IDs []string `json:"ids"`
			}{ids}); werr != nil && err == nil {
				err = werr
			}
		}
		return err
	})
}

// fileOnly refuses what --file cannot be combined with: a command, --array
// and the flags of one job, which the file's lines give instead.
func fileOnly(c *ucli.Context) error {
	if c.Args().Present() {
		return usagef(c, "give either --file or a command, not both")
	}
	if c.IsSet("array") {
		return usagef(c, "--array cannot be combined with --file")
	}
	for _, f := range specFlags() {
		if name := f.Names()[0]; c.IsSet(name) {
			return usagef(c, "--%s cannot be combined with --file: give each job's fields in its line", name)
		}
	}
	return nil
}

// submitBatches sends jobs in batches of at most job.MaxBatch specs and
// job.MaxBatchBytes of encoded specs, in file order, and calls done with
// the ids of each batch once it is stored. A refused batch stops it: the
// error names the line when the server named the spec, the lines of the
// batch otherwise, and what earlier batches stored.
func submitBatches(c *ucli.Context, cl *client.Client, name string, jobs []fileJob, done func([]string) error) error {
	for start := 0; start < len(jobs); {
		end, size := start, 0
		for end < len(jobs) && end-start < job.MaxBatch {
			n := proto.Size(jobs[end].spec)
			if end > start && size+n > job.MaxBatchBytes {
				break
			}
			size += n
			end++
		}
		specs := make([]*hodeipb.JobSpec, end-start)
		for i := range specs {
			specs[i] = jobs[start+i].spec
		}
		ids, err := cl.SubmitBatch(c.Context, specs, client.RequireFit(c.Bool("require-fit")))
		if err != nil {
			return batchError(name, jobs, start, end, err)
		}
		if err := done(ids); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// batchError is the error of the batch jobs[start:end]: at the line of the
// spec the server named, or for the batch's lines. An unreachable server's
// error passes unchanged, so that withClient names the address.
func batchError(name string, jobs []fileJob, start, end int, err error) error {
	if status.Code(err) == codes.Unavailable && start == 0 {
		return err
	}
	msg := status.Convert(err).Message()
	fe := &fileError{path: name, msg: fmt.Sprintf("lines %d–%d: %s", jobs[start].line, jobs[end-1].line, msg)}
	if i, field, rule, ok := client.BatchFieldOf(err); ok && i < end-start {
		fe.line, fe.msg = jobs[start+i].line, rule
		if field != "" {
			fe.msg = lineField(field) + ": " + rule
		}
	}
	if start > 0 {
		fe.msg += fmt.Sprintf(" (the %d jobs of the lines before %d were submitted and their ids printed; nothing from line %d on was)",
			start, jobs[start].line, jobs[start].line)
	}
	return fe
}
