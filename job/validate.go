package job

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits checked by Validate.
const (
	MaxSpecBytes = 1 << 20 // the whole spec, summed over its strings
	MaxTimeout   = 30 * 24 * time.Hour
	MaxRetries   = 100
	MaxPriority  = 1000
	// MaxSlots, MaxCPUMillis and MaxMemoryMiB bound what one job may ask
	// for: more than any one machine has, so a request above them could
	// never be placed. They also keep sums of requests far from overflow.
	MaxSlots     = 4096
	MaxCPUMillis = 4096 * 1000 // 4,096 cores
	MaxMemoryMiB = 64 << 20    // 64 TiB
	// MaxDeadlineAhead bounds how far after the submit a deadline may be.
	MaxDeadlineAhead = 365 * 24 * time.Hour
	// MaxWorkerSlots bounds the slots one worker may offer.
	MaxWorkerSlots = 1 << 20
	MaxNameLen     = 256
	MaxLabelValue  = 256
	// MaxPTYSize bounds a PTY's rows and cols: what TIOCSWINSZ takes (a
	// uint16), so that a job sees the size of any real terminal.
	MaxPTYSize   = 65535
	MaxDependsOn = 1000
	// MinSecretLen is the shortest secret env value accepted, in bytes. The
	// agent masks secrets in output; a shorter value ("1", "yes", "dev")
	// occurs in ordinary output too often to be masked without mangling the
	// log and, by where the stars land, revealing the value anyway.
	MinSecretLen = 6
)

// The name rules, as matchers rather than regular expressions: a batch of
// 10,000 specs checks each of its label and env keys, and a regexp match
// cost more than encoding the job.
//
//	label key  [A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?
//	step name  [A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?
//	tenant     [a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?
//	env key    [A-Za-z_][A-Za-z0-9_]*
//	job id     [0-9A-HJKMNP-TV-Z]{26}

func validLabelKey(s string) bool { return validName(s, isAlnum, "._/-") }

func validStepName(s string) bool { return validName(s, isAlnum, "._-") }

// ValidTenant reports whether name is a legal tenant name.
func ValidTenant(name string) bool { return validName(name, isLowerAlnum, "_-") }

// validName is a name of 1 to 63 bytes that starts and ends with edge
// bytes and has edge bytes or bytes of inner in between.
func validName(s string, edge func(byte) bool, inner string) bool {
	if len(s) == 0 || len(s) > 63 || !edge(s[0]) || !edge(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if c := s[i]; !edge(c) && strings.IndexByte(inner, c) < 0 {
			return false
		}
	}
	return true
}

func validEnvKey(s string) bool {
	if s == "" || !(isLetter(s[0]) || s[0] == '_') {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' {
			return false
		}
	}
	return true
}

// ValidID reports whether id has the syntax of a job id (a ULID).
func ValidID(id string) bool {
	if len(id) != 26 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= '0' && c <= '9', c >= 'A' && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U':
		default:
			return false
		}
	}
	return true
}

func isLetter(c byte) bool     { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool      { return isLetter(c) || c >= '0' && c <= '9' }
func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// Validate checks a normalized spec and returns a *FieldError naming the
// first field that breaks a rule. It cannot know whether DependsOn ids exist:
// the server checks that against the store.
func (s *Spec) Validate() error {
	// One walk of the strings measures the spec and checks its text; the
	// size is refused first, as when it was measured on its own.
	n, err := s.checkText()
	if err != nil {
		n = s.Size()
	}
	if n > MaxSpecBytes {
		return Invalid("spec", "is %d bytes, more than the limit of %d (1 MiB)", n, MaxSpecBytes)
	}
	if err != nil {
		return err
	}
	if len(s.Name) > MaxNameLen {
		return Invalid("name", "must be at most %d bytes", MaxNameLen)
	}
	if !ValidTenant(s.Tenant) {
		return Invalid("tenant", "%q must be 1–63 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit", s.Tenant)
	}
	switch {
	case len(s.Command) > 0 && s.Script != "":
		return Invalid("command", "give either a command or a script, not both")
	case len(s.Command) == 0 && s.Script == "":
		return Invalid("command", "must not be empty: give a command (argv) or a script")
	case len(s.Command) > 0 && s.Command[0] == "":
		return Invalid("command", "the program (argv[0]) must not be empty")
	}
	if err := checkLabels("labels", s.Labels); err != nil {
		return err
	}
	if err := checkLabels("selector", s.Selector); err != nil {
		return err
	}
	for _, env := range []struct {
		field string
		m     map[string]string
	}{{"env", s.Env}, {"secret_env", s.SecretEnv}} {
		for k := range env.m {
			if !validEnvKey(k) {
				return Invalid(env.field, "key %q must match [A-Za-z_][A-Za-z0-9_]*", k)
			}
		}
	}
	for _, k := range sortedKeys(s.SecretEnv) {
		if n := len(s.SecretEnv[k]); n < MinSecretLen {
			return Invalid("secret_env."+k, "the value is too short (%d of at least %d bytes): "+
				"output is masked by value, and a value this short would also mask ordinary text "+
				"and be easy to guess; use a longer value (one that need not be hidden belongs in env)", n, MinSecretLen)
		}
	}
	if s.WorkDir != "" && s.WorkDir[0] != '/' {
		return Invalid("workdir", "%q must be an absolute path", s.WorkDir)
	}
	if !s.Stdin.Valid() {
		return Invalid("stdin", "%d is not a stdin mode (0 none, 1 terminal, 2 stream)", int(s.Stdin))
	}
	if s.Rows > MaxPTYSize || s.Cols > MaxPTYSize {
		return Invalid("pty", "rows and cols must be at most %d", MaxPTYSize)
	}
	switch {
	case s.Timeout < 0:
		return Invalid("timeout", "must not be negative (0 means no timeout)")
	case s.Timeout > MaxTimeout:
		return Invalid("timeout", "%s is more than the maximum of %s", s.Timeout, MaxTimeout)
	}
	if s.Retries < 0 || s.Retries > MaxRetries {
		return Invalid("retries", "%d must be between 0 and %d", s.Retries, MaxRetries)
	}
	if s.Backoff < 0 || s.Backoff > MaxBackoff {
		return Invalid("backoff", "%s must be between 0 and %s", s.Backoff, MaxBackoff)
	}
	if s.Priority < 0 || s.Priority > MaxPriority {
		return Invalid("priority", "%d must be between 0 and %d", s.Priority, MaxPriority)
	}
	r := s.Resources
	switch {
	case r.CPUMillis < 0 || r.CPUMillis > MaxCPUMillis:
		return Invalid("resources.cpu_millis", "%d must be between 0 and %d (%d cores)", r.CPUMillis, MaxCPUMillis, MaxCPUMillis/1000)
	case r.MemoryMiB < 0 || r.MemoryMiB > MaxMemoryMiB:
		return Invalid("resources.memory_mib", "%d must be between 0 and %d (%d TiB)", r.MemoryMiB, MaxMemoryMiB, MaxMemoryMiB>>20)
	case r.Slots < 1 || r.Slots > MaxSlots:
		return Invalid("resources.slots", "%d must be between 1 and %d", r.Slots, MaxSlots)
	}
	if len(s.DependsOn) > MaxDependsOn {
		return Invalid("after", "at most %d dependencies", MaxDependsOn)
	}
	for _, id := range s.DependsOn {
		if !ValidID(id) {
			return Invalid("after", "%q is not a job id", id)
		}
	}
	return nil
}

// sortedKeys returns the keys of m in order; nil for an empty m, without
// allocating, since Validate runs for every job.
func sortedKeys(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(m))
}

// checkText returns the spec's Size, and refuses the strings of a spec
// that no process, file or terminal can take as they are: invalid UTF-8
// anywhere, and NUL bytes in what becomes the job's argv, environment or
// working directory (the kernel cuts them there, so the job would run
// something else than asked).
// Secret values are never quoted.
func (s *Spec) checkText() (size int, err error) {
	if !utf8.ValidString(s.Name) {
		return 0, Invalid("name", "is not valid UTF-8")
	}
	if !utf8.ValidString(s.Tenant) {
		return 0, Invalid("tenant", "is not valid UTF-8")
	}
	size = len(s.Name) + len(s.Tenant) + len(s.Script) + len(s.WorkDir)
	for i, a := range s.Command {
		if checkProcessText("", a) != nil { // the field is named only when needed: this runs for every job
			return 0, checkProcessText(fmt.Sprintf("command[%d]", i), a)
		}
		size += len(a)
	}
	if err := checkProcessText("script", s.Script); err != nil {
		return 0, err
	}
	if err := checkProcessText("workdir", s.WorkDir); err != nil {
		return 0, err
	}
	for _, m := range []struct {
		field string
		m     map[string]string
		nul   bool // NUL bytes refused too
	}{{"labels", s.Labels, false}, {"selector", s.Selector, false}, {"env", s.Env, true}, {"secret_env", s.SecretEnv, true}} {
		for k, v := range m.m {
			switch {
			case !utf8.ValidString(k):
				return 0, Invalid(m.field, "key %q is not valid UTF-8", k)
			case m.nul && strings.IndexByte(k, 0) >= 0:
				return 0, Invalid(m.field, "key %q contains a NUL byte", k)
			case !utf8.ValidString(v):
				return 0, Invalid(m.field, "value of %q is not valid UTF-8", k)
			case m.nul && strings.IndexByte(v, 0) >= 0:
				return 0, Invalid(m.field, "value of %q contains a NUL byte", k)
			}
			size += len(k) + len(v)
		}
	}
	for i, d := range s.DependsOn {
		if !utf8.ValidString(d) {
			return 0, Invalid(fmt.Sprintf("after[%d]", i), "is not valid UTF-8")
		}
		size += len(d)
	}
	return size, nil
}

// checkProcessText refuses a string handed to the kernel (argv, script,
// working directory) when it has a NUL byte or is not valid UTF-8.
func checkProcessText(field, v string) error {
	switch {
	case strings.IndexByte(v, 0) >= 0:
		return Invalid(field, "contains a NUL byte")
	case !utf8.ValidString(v):
		return Invalid(field, "is not valid UTF-8")
	}
	return nil
}

// CheckDeadline refuses a deadline that is not after now or is more than
// MaxDeadlineAhead after it; zero is no deadline. The error is a
// *FieldError on field.
func CheckDeadline(field string, deadline, now time.Time) error {
	switch {
	case deadline.IsZero():
		return nil
	case !deadline.After(now):
		return Invalid(field, "%s is not in the future (server time %s)",
			deadline.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case deadline.Sub(now) > MaxDeadlineAhead:
		return Invalid(field, "%s is too far ahead: at most %d days after the server time (%s)",
			deadline.UTC().Format(time.RFC3339), MaxDeadlineAhead/(24*time.Hour), now.UTC().Format(time.RFC3339))
	}
	return nil
}

func checkLabels(field string, m map[string]string) error {
	for k, v := range m {
		if !validLabelKey(k) {
			return Invalid(field, "key %q must be 1–63 letters, digits, '.', '_', '-' or '/', starting and ending with a letter or digit", k)
		}
		if len(v) > MaxLabelValue {
			return Invalid(field, "value of %q must be at most %d bytes", k, MaxLabelValue)
		}
		for _, c := range v {
			if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
				return Invalid(field, "value of %q must not contain control characters", k)
			}
		}
	}
	return nil
}

// Size is the spec's payload, summed over its strings; close to its encoded
// size. MaxSpecBytes and MaxBatchBytes bound it.
func (s *Spec) Size() int {
	n := len(s.Name) + len(s.Tenant) + len(s.Script) + len(s.WorkDir)
	for _, a := range s.Command {
		n += len(a)
	}
	for _, m := range []map[string]string{s.Labels, s.Env, s.SecretEnv, s.Selector} {
		for k, v := range m {
			n += len(k) + len(v)
		}
	}
	for _, d := range s.DependsOn {
		n += len(d)
	}
	return n
}

// ParseLabel splits "k=v" for the label, env and selector flags.
func ParseLabel(field, kv string) (string, string, error) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			if i == 0 {
				return "", "", Invalid(field, "%q has an empty key; want KEY=VALUE", kv)
			}
			return kv[:i], kv[i+1:], nil
		}
	}
	return "", "", Invalid(field, "%q has no '='; want KEY=VALUE", kv)
}
