package job

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of pipelines and arrays, checked by PipelineSpec.Validate and
// ParseArray.
const (
	// DefaultMaxMatrix is the default of the most jobs one step's matrix
	// may expand to; the server makes it configurable.
	DefaultMaxMatrix = 256
	// DefaultMaxPipelineLinks is the default of the most dependency links
	// one pipeline may create (see PipelineSpec.Validate); the server
	// makes it configurable.
	DefaultMaxPipelineLinks = 100_000
	// MaxPipelineJobs bounds the jobs of one pipeline, matrices expanded.
	MaxPipelineJobs = 20_000
	// MaxArrayJobs bounds the jobs of one array.
	MaxArrayJobs = MaxArrayIndex + 1
	// MaxArrayIndex bounds the indices of an array.
	MaxArrayIndex = 1_000_000
	// MaxPipelineBytes bounds the specs of a pipeline's jobs, summed after
	// expansion, so that a small request cannot write gigabytes.
	MaxPipelineBytes = 64 << 20
)

// PipelineSpec is what a pipeline file describes: named steps, each a job
// spec with the steps it needs, run as a DAG.
type PipelineSpec struct {
	Name   string
	Tenant string // default DefaultTenant
	// Defaults applies to every step: its env, labels and selector are
	// merged under the step's own, and its timeout, retries, backoff,
	// priority and each resource apply where the step's is negative
	// (unset); zero on a step is a value like any other. Negative in both
	// means the job default (0, or DefaultPriority for the priority).
	Defaults Spec
	Steps    []Step
}

// Step is one node of a pipeline.
type Step struct {
	Name string
	Spec Spec // the job fields; Tenant, DependsOn and the pipeline fields are set from the pipeline
	// Needs names the steps that must complete before this one starts.
	Needs []string
	// ContinueOnFailure lets the steps that need this one run even when it
	// failed.
	ContinueOnFailure bool
	// Matrix expands the step into one job per combination of its values;
	// each job gets MATRIX_<KEY>=<value> in its env for every axis.
	Matrix []MatrixAxis
}

// MatrixAxis is one key of a step's matrix and the values it takes.
type MatrixAxis struct {
	Key    string
	Values []string
}

// stepField names a field of a step in an error: steps.<name>.<field>.
func stepField(step, field string) string {
	if field == "" {
		return "steps." + step
	}
	return "steps." + step + "." + field
}

// PipelineLimits are the configurable bounds of PipelineSpec.Validate. The
// zero value takes the defaults.
type PipelineLimits struct {
	// MaxMatrix is the most jobs one step's matrix may expand to; <= 0:
	// DefaultMaxMatrix.
	MaxMatrix int
	// MaxLinks is the most dependency links the expansion may create (see
	// PipelineSpec.Validate); <= 0: DefaultMaxPipelineLinks.
	MaxLinks int
}

func (l PipelineLimits) withDefaults() PipelineLimits {
	if l.MaxMatrix <= 0 {
		l.MaxMatrix = DefaultMaxMatrix
	}
	if l.MaxLinks <= 0 {
		l.MaxLinks = DefaultMaxPipelineLinks
	}
	return l
}

// Validate checks a pipeline spec before anything is stored: step names
// unique and well formed, needs naming other existing steps, matrices
// within lim.MaxMatrix jobs, the whole within MaxPipelineJobs and
// lim.MaxLinks dependency links (every job of a step depends on every job
// of each step it needs, so a step of m jobs that needs steps of n₁, n₂ …
// jobs makes m × (n₁ + n₂ …) links), no cycle, and every step's job spec
// (defaults merged) by the rules of Spec.Validate. The first broken rule
// comes back as a *FieldError whose field names the step
// ("steps.test.needs"). The links are counted from the steps alone, before
// anything is expanded, so a pipeline refused for its size costs time in
// proportion to its request, not to its expansion.
func (p *PipelineSpec) Validate(lim PipelineLimits) error {
	_, err := p.Jobs(lim)
	return err
}

// Jobs validates the spec as Validate does and returns its expansion
// (Expand), which the validation computes anyway.
func (p *PipelineSpec) Jobs(lim PipelineLimits) ([][]StepJob, error) {
	lim = lim.withDefaults()
	if err := p.checkText(); err != nil {
		return nil, err
	}
	if len(p.Name) > MaxNameLen {
		return nil, Invalid("name", "must be at most %d bytes", MaxNameLen)
	}
	if p.Tenant != "" && !ValidTenant(p.Tenant) {
		return nil, Invalid("tenant", "%q must be 1–63 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit", p.Tenant)
	}
	if f := p.Defaults.notDefaultable(); f != "" {
		return nil, Invalid("defaults."+f, "cannot have a default; only env, labels, selector, timeout, retries, backoff, priority and resources can")
	}
	if err := p.Defaults.validateAsDefaults(); err != nil {
		return nil, err
	}
	if len(p.Steps) == 0 {
		return nil, Invalid("steps", "a pipeline needs at least one step")
	}
	index := make(map[string]int, len(p.Steps))
	for i, st := range p.Steps {
		if !validStepName(st.Name) {
			return nil, Invalid(fmt.Sprintf("steps[%d].name", i), "%q must be 1–63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", st.Name)
		}
		if _, dup := index[st.Name]; dup {
			return nil, Invalid(stepField(st.Name, "name"), "duplicate step name %q", st.Name)
		}
		index[st.Name] = i
	}
	sizes := make([]int, len(p.Steps))
	jobs := 0
	for i, st := range p.Steps {
		n, err := st.matrixSize(lim.MaxMatrix)
		if err != nil {
			return nil, err
		}
		sizes[i] = n
		jobs += n
		if jobs > MaxPipelineJobs {
			return nil, Invalid("steps", "expand to more than %d jobs", MaxPipelineJobs)
		}
	}
	// Each need adds at least the size of its step: refuse what is over
	// the limit already by that count before looking any need up, so that
	// a refusal costs one pass over the steps.
	atLeast, exact := 0, true // at most MaxPipelineJobs × len(needs), far from overflow
	for i, st := range p.Steps {
		atLeast += sizes[i] * len(st.Needs)
		exact = exact && sizes[i] == 1
	}
	if atLeast > lim.MaxLinks {
		return nil, tooManyLinks(atLeast, exact, lim.MaxLinks)
	}
	deps, err := p.needs(index, sizes)
	if err != nil {
		return nil, err
	}
	links := 0
	for i, d := range deps {
		links += sizes[i] * d
	}
	if links > lim.MaxLinks {
		return nil, tooManyLinks(links, true, lim.MaxLinks)
	}
	if cycle := p.cycle(index); cycle != nil {
		return nil, Invalid("steps", "cycle: %s", strings.Join(cycle, " → "))
	}
	for _, st := range p.Steps {
		spec := p.stepSpec(st)
		spec.Normalize()
		if err := spec.Validate(); err != nil {
			if fe, ok := err.(*FieldError); ok {
				return nil, Invalid(stepField(st.Name, fe.Field), "%s", fe.Rule)
			}
			return nil, err
		}
	}
	for i, d := range deps {
		if d > MaxDependsOn {
			return nil, Invalid(stepField(p.Steps[i].Name, "needs"), "waits for %d jobs, more than the limit of %d", d, MaxDependsOn)
		}
	}
	// The expanded jobs have names and env the steps did not: check them
	// too, and what they add up to.
	total := 0
	expanded := p.Expand()
	for _, jobs := range expanded {
		for _, sj := range jobs {
			spec := sj.Spec
			spec.Normalize()
			if err := spec.Validate(); err != nil {
				if fe, ok := err.(*FieldError); ok {
					return nil, Invalid(stepField(sj.Step, fe.Field), "%s (as expanded: %s)", fe.Rule, sj.Spec.Name)
				}
				return nil, err
			}
			if total += spec.Size(); total > MaxPipelineBytes {
				return nil, Invalid("steps", "expand to more than %d MiB of job specs", MaxPipelineBytes>>20)
			}
		}
	}
	return expanded, nil
}

// needs checks every step's needs — other steps of the pipeline, each
// listed once — and returns, by step, how many jobs each of its jobs waits
// for: the sum of the sizes of the steps it needs. It costs one map lookup
// per need.
func (p *PipelineSpec) needs(index map[string]int, sizes []int) ([]int, error) {
	deps := make([]int, len(p.Steps))
	listed := make([]int, len(p.Steps)) // step index + 1 of the last step that listed it
	for i, st := range p.Steps {
		for j, n := range st.Needs {
			k, ok := index[n]
			switch {
			case n == st.Name:
				return nil, Invalid(stepField(st.Name, "needs"), "a step cannot need itself")
			case !ok && !utf8.ValidString(n):
				return nil, Invalid(fmt.Sprintf("%s[%d]", stepField(st.Name, "needs"), j), "is not valid UTF-8")
			case !ok:
				return nil, Invalid(stepField(st.Name, "needs"), "%q is not a step of this pipeline", n)
			case listed[k] == i+1:
				return nil, Invalid(stepField(st.Name, "needs"), "%q is listed twice", n)
			}
			listed[k] = i + 1
			deps[i] += sizes[k]
		}
	}
	return deps, nil
}

// tooManyLinks is the error of a pipeline with more than max dependency
// links: n of them, or at least n when not exact.
func tooManyLinks(n int, exact bool, max int) error {
	atLeast := ""
	if !exact {
		atLeast = "at least "
	}
	return Invalid("steps", "the pipeline has %s%s dependency links; at most %s are allowed (--max-pipeline-links)",
		atLeast, Thousands(int64(n)), Thousands(int64(max)))
}

// checkText refuses strings of the pipeline that are not valid UTF-8 and
// are not checked by Spec.Validate on the steps: names and matrix keys and
// values. (needs checks the needs, which name steps.)
func (p *PipelineSpec) checkText() error {
	if !utf8.ValidString(p.Name) {
		return Invalid("name", "is not valid UTF-8")
	}
	if !utf8.ValidString(p.Tenant) {
		return Invalid("tenant", "is not valid UTF-8")
	}
	for i, st := range p.Steps {
		if !utf8.ValidString(st.Name) {
			return Invalid(fmt.Sprintf("steps[%d].name", i), "is not valid UTF-8")
		}
		for _, ax := range st.Matrix {
			if !utf8.ValidString(ax.Key) {
				return Invalid(stepField(st.Name, "matrix"), "key %q is not valid UTF-8", ax.Key)
			}
			for k, v := range ax.Values {
				switch {
				case !utf8.ValidString(v):
					return Invalid(fmt.Sprintf("%s[%d]", stepField(st.Name, "matrix."+ax.Key), k), "is not valid UTF-8")
				case strings.IndexByte(v, 0) >= 0:
					// It becomes a MATRIX_ variable of the job's environment.
					return Invalid(fmt.Sprintf("%s[%d]", stepField(st.Name, "matrix."+ax.Key), k), "contains a NUL byte")
				}
			}
		}
	}
	return nil
}

// validateAsDefaults checks the values of a defaults spec by the job-spec
// rules, naming the field under "defaults".
func (d *Spec) validateAsDefaults() error {
	c := *d
	c.Command = []string{"true"}
	if c.Priority < 0 {
		c.Priority = DefaultPriority
	}
	// Negative is unset in defaults.
	c.Timeout, c.Retries, c.Backoff = max(c.Timeout, 0), max(c.Retries, 0), max(c.Backoff, 0)
	c.Resources = Resources{max(c.Resources.CPUMillis, 0), max(c.Resources.MemoryMiB, 0), max(c.Resources.Slots, 0)}
	c.Normalize()
	if err := c.Validate(); err != nil {
		if fe, ok := err.(*FieldError); ok {
			return Invalid("defaults."+fe.Field, "%s", fe.Rule)
		}
		return err
	}
	return nil
}

// matrixSize returns how many jobs the step expands to, or an error naming
// the step when its matrix is malformed or larger than limit.
func (st *Step) matrixSize(limit int) (int, error) {
	n := 1
	seen := make(map[string]bool, len(st.Matrix))
	for _, ax := range st.Matrix {
		field := stepField(st.Name, "matrix."+ax.Key)
		switch {
		case !validEnvKey(ax.Key):
			return 0, Invalid(stepField(st.Name, "matrix"), "key %q must match [A-Za-z_][A-Za-z0-9_]*", ax.Key)
		case seen[strings.ToUpper(ax.Key)]:
			return 0, Invalid(field, "is given twice")
		case len(ax.Values) == 0:
			return 0, Invalid(field, "must list at least one value")
		}
		for k, v := range ax.Values {
			if slices.Contains(ax.Values[:k], v) {
				return 0, Invalid(field, "value %q is listed twice", v)
			}
		}
		seen[strings.ToUpper(ax.Key)] = true
		n *= len(ax.Values)
		if n > limit {
			return 0, Invalid(stepField(st.Name, "matrix"), "expands to more than %d jobs (the limit)", limit)
		}
	}
	return n, nil
}

// cycle returns a path that closes a cycle ("a", "b", "a"), or nil.
func (p *PipelineSpec) cycle(index map[string]int) []string {
	const (
		unseen = iota
		open
		done
	)
	mark := make([]int, len(p.Steps))
	var stack []string
	var visit func(i int) []string
	visit = func(i int) []string {
		mark[i] = open
		stack = append(stack, p.Steps[i].Name)
		for _, n := range p.Steps[i].Needs {
			k := index[n]
			switch mark[k] {
			case open:
				from := slices.Index(stack, n)
				return append(slices.Clone(stack[from:]), n)
			case unseen:
				if c := visit(k); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		mark[i] = done
		return nil
	}
	for i := range p.Steps {
		if mark[i] == unseen {
			if c := visit(i); c != nil {
				// Read it in the order things run: what is needed first.
				slices.Reverse(c)
				return c
			}
		}
	}
	return nil
}

// notDefaultable names the first field set in a defaults spec that
// stepSpec would not apply, or "".
func (d *Spec) notDefaultable() string {
	switch {
	case d.Name != "":
		return "name"
	case len(d.Command) > 0:
		return "command"
	case d.Script != "":
		return "script"
	case len(d.SecretEnv) > 0:
		return "secret_env"
	case d.WorkDir != "":
		return "workdir"
	case d.NoPTY:
		return "no_pty"
	case !d.Deadline.IsZero():
		return "deadline"
	case len(d.DependsOn) > 0:
		return "depends_on"
	case d.Preemptible:
		return "preemptible"
	}
	return ""
}

// stepSpec is a step's job spec with the pipeline's defaults merged in.
func (p *PipelineSpec) stepSpec(st Step) Spec {
	s := st.Spec
	d := p.Defaults
	s.Env = mergeMaps(d.Env, s.Env)
	s.Labels = mergeMaps(d.Labels, s.Labels)
	s.Selector = mergeMaps(d.Selector, s.Selector)
	s.Timeout = unsetOr(s.Timeout, d.Timeout)
	s.Retries = unsetOr(s.Retries, d.Retries)
	s.Backoff = unsetOr(s.Backoff, d.Backoff)
	if s.Priority < 0 { // unset on the step
		s.Priority = d.Priority
	}
	if s.Priority < 0 { // and in the defaults
		s.Priority = DefaultPriority
	}
	s.Resources.CPUMillis = unsetOr(s.Resources.CPUMillis, d.Resources.CPUMillis)
	s.Resources.MemoryMiB = unsetOr(s.Resources.MemoryMiB, d.Resources.MemoryMiB)
	s.Resources.Slots = unsetOr(s.Resources.Slots, d.Resources.Slots)
	s.Tenant = p.Tenant
	s.Owner = d.Owner // set by the server on the defaults
	s.DependsOn = nil
	// Set by the server alone.
	s.Pipeline, s.Step, s.ContinueOnFailure = "", "", false
	s.Array, s.ArrayIndex, s.ArrayLimit = "", 0, 0
	return s
}

// unsetOr resolves a step's field against its default: a negative value
// is unset and takes the default's, and a default that is unset too is 0.
func unsetOr[T int | int64 | time.Duration](v, def T) T {
	if v < 0 {
		v = def
	}
	return max(v, 0)
}

func mergeMaps(under, over map[string]string) map[string]string {
	if len(under) == 0 {
		return over
	}
	m := maps.Clone(under)
	maps.Copy(m, over)
	return m
}

// StepJob is one job a step expands to.
type StepJob struct {
	Step   string
	Spec   Spec   // complete but for DependsOn and the pipeline id
	Matrix string // "os=linux,go=1.26", or "" without a matrix
}

// Expand returns the jobs of every step, in step order, matrix
// combinations in the order of the axes' values. Call it on a spec that
// passed Validate.
func (p *PipelineSpec) Expand() [][]StepJob {
	out := make([][]StepJob, len(p.Steps))
	for i, st := range p.Steps {
		base := p.stepSpec(st)
		base.Step, base.ContinueOnFailure = st.Name, st.ContinueOnFailure
		if base.Name == "" {
			base.Name = st.Name
			if p.Name != "" {
				base.Name = p.Name + "/" + st.Name
			}
		}
		combos := [][]string{nil}
		for _, ax := range st.Matrix {
			var next [][]string
			for _, c := range combos {
				for _, v := range ax.Values {
					next = append(next, append(slices.Clip(c), v))
				}
			}
			combos = next
		}
		for _, c := range combos {
			spec := base
			spec.Labels, spec.Env = maps.Clone(base.Labels), maps.Clone(base.Env)
			var parts []string
			for k, v := range c {
				ax := st.Matrix[k]
				if spec.Env == nil {
					spec.Env = make(map[string]string)
				}
				spec.Env["MATRIX_"+strings.ToUpper(ax.Key)] = v
				parts = append(parts, ax.Key+"="+v)
			}
			m := strings.Join(parts, ",")
			if m != "" {
				spec.Name += "[" + m + "]"
			}
			out[i] = append(out[i], StepJob{Step: st.Name, Spec: spec, Matrix: m})
		}
	}
	return out
}

// PipelineState is where a pipeline is, as its jobs say.
type PipelineState int32

const (
	// PipelinePending: no job of it has started.
	PipelinePending PipelineState = iota + 1
	// PipelineRunning: some job started and some job has not ended.
	PipelineRunning
	// PipelineCompleted: every job ended, and none failed but in steps
	// marked continue_on_failure.
	PipelineCompleted
	// PipelineFailed: every job ended, and a step failed (or was cancelled
	// because one it needed failed).
	PipelineFailed
	// PipelineCancelled: a user cancelled it; every job ended.
	PipelineCancelled
)

func (s PipelineState) String() string {
	switch s {
	case PipelinePending:
		return "PENDING"
	case PipelineRunning:
		return "RUNNING"
	case PipelineCompleted:
		return "COMPLETED"
	case PipelineFailed:
		return "FAILED"
	case PipelineCancelled:
		return "CANCELLED"
	}
	return "UNKNOWN"
}

// Terminal reports whether the pipeline has ended.
func (s PipelineState) Terminal() bool { return s >= PipelineCompleted }

// Pipeline is a stored pipeline: its steps with the ids of their jobs.
// Shared values are immutable.
type Pipeline struct {
	ID        string // ULID
	Name      string
	Tenant    string
	Steps     []PipelineStep
	CreatedAt time.Time
	// Cancelled is set when a user cancelled the pipeline.
	Cancelled bool
}

// PipelineStep is one step of a stored pipeline.
type PipelineStep struct {
	Name              string
	Needs             []string
	ContinueOnFailure bool
	Jobs              []string // ids, in matrix order
}

// CheckPipeline refuses a pipeline record that cannot be stored: nil, or
// an id that is empty or longer than MaxIDLen.
func CheckPipeline(p *Pipeline) error {
	switch {
	case p == nil:
		return Invalid("pipeline", "must not be nil")
	case p.ID == "" || len(p.ID) > MaxIDLen:
		return Invalid("pipeline", "id %q must be 1 to %d bytes", p.ID, MaxIDLen)
	}
	return nil
}

// Clone returns a deep copy of p.
func (p *Pipeline) Clone() *Pipeline {
	c := *p
	c.Steps = make([]PipelineStep, len(p.Steps))
	for i, st := range p.Steps {
		st.Needs = slices.Clone(st.Needs)
		st.Jobs = slices.Clone(st.Jobs)
		c.Steps[i] = st
	}
	return &c
}

// JobIDs returns the ids of every job of the pipeline, in step order.
func (p *Pipeline) JobIDs() []string {
	var ids []string
	for _, st := range p.Steps {
		ids = append(ids, st.Jobs...)
	}
	return ids
}

// StateOf derives a pipeline's state from its jobs; get returns a job by
// id (nil when it no longer exists, which counts as ended).
func (p *Pipeline) StateOf(get func(id string) *Job) PipelineState {
	started, open, failed, cancelled := false, false, false, false
	for _, st := range p.Steps {
		for _, id := range st.Jobs {
			j := get(id)
			if j == nil {
				started = true
				continue
			}
			if j.State != Pending || j.Attempt > 1 {
				started = true
			}
			switch {
			case !j.State.Terminal():
				open = true
			case j.State == Failed && !st.ContinueOnFailure, j.State == Cancelled:
				failed = true
			}
			cancelled = cancelled || j.State == Cancelled
		}
	}
	switch {
	case open && !started:
		return PipelinePending
	case open:
		return PipelineRunning
	case p.Cancelled && cancelled:
		return PipelineCancelled // a cancel that came after everything completed does not count
	case failed:
		return PipelineFailed
	}
	return PipelineCompleted
}

// ArraySpec is a job array: one job per index from First to Last, at most
// Limit of them running at once (0: no limit).
type ArraySpec struct {
	First, Last int
	Limit       int
}

// Len is the number of jobs of the array.
func (a ArraySpec) Len() int { return a.Last - a.First + 1 }

// ParseArray reads "0-99", "0-99%10" or "5" (one index). Errors are a
// *FieldError on field "array".
func ParseArray(s string) (ArraySpec, error) {
	var a ArraySpec
	rng, limit, hasLimit := strings.Cut(s, "%")
	first, last, isRange := strings.Cut(rng, "-")
	var err error
	if a.First, err = strconv.Atoi(first); err != nil || a.First < 0 {
		return a, Invalid("array", "%q: want FIRST-LAST[%%MAX], e.g. 0-99%%10", s)
	}
	a.Last = a.First
	if isRange {
		if a.Last, err = strconv.Atoi(last); err != nil {
			return a, Invalid("array", "%q: want FIRST-LAST[%%MAX], e.g. 0-99%%10", s)
		}
	}
	if hasLimit {
		if a.Limit, err = strconv.Atoi(limit); err != nil || a.Limit < 1 {
			return a, Invalid("array", "%q: the %%MAX after the range must be a number of at least 1", s)
		}
	}
	return a, a.Validate()
}

// Validate checks an array's bounds.
func (a ArraySpec) Validate() error {
	switch {
	case a.First < 0 || a.Last > MaxArrayIndex:
		return Invalid("array", "indices must be between 0 and %d", MaxArrayIndex)
	case a.Last < a.First:
		return Invalid("array", "range %d-%d ends before it starts", a.First, a.Last)
	case a.Len() > MaxArrayJobs:
		return Invalid("array", "%d jobs, more than the limit of %d", a.Len(), MaxArrayJobs)
	case a.Limit < 0:
		return Invalid("array", "the most running at once must not be negative")
	}
	return nil
}
