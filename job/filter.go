package job

import (
	"path"
	"strings"
	"time"
)

// Filter selects jobs for List and Count. Zero fields match everything.
type Filter struct {
	State State
	// Finished keeps only the jobs in a terminal state, whichever.
	Finished bool
	Tenant   string
	Labels   map[string]string // every pair must match
	Array    string            // only the jobs of this array
	Pipeline string            // only the jobs of this pipeline
	// Name keeps the jobs whose Spec.Name is Name or matches it as a shell
	// pattern (NameMatches).
	Name string
	// Since keeps the jobs created at or after it; zero: any. Ids are
	// ULIDs made at creation (as the server makes them), so a job whose
	// id was made before Since is left out without being read (IDBefore):
	// a listing newest first stops at the first one.
	Since time.Time
	// NotFinishedBefore, when not zero, keeps the jobs that did not finish
	// before it: those not finished yet and those whose FinishedAt is at
	// or after it (a terminal job without a FinishedAt counts as finished
	// long ago). `hodei jobs ls` lists by default what has not finished or
	// finished in the last hour.
	NotFinishedBefore time.Time
	// Desc lists newest first: in descending id order, with After then
	// keeping the ids below it.
	Desc bool
	// After is the page token: only the ids that come after it in the
	// listing's order (greater, or with Desc smaller).
	After string
	Limit int // 0: DefaultPageSize
}

// Page sizes for List.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// PageSize is the number of jobs a List of f returns at most: Limit,
// DefaultPageSize when it is 0 or less, MaxPageSize at the most.
func (f *Filter) PageSize() int {
	switch {
	case f.Limit <= 0:
		return DefaultPageSize
	case f.Limit > MaxPageSize:
		return MaxPageSize
	}
	return f.Limit
}

// Match reports whether j passes the filter (ignoring After and Limit).
func (f *Filter) Match(j *Job) bool {
	if f.State != 0 && j.State != f.State || f.Finished && !j.State.Terminal() {
		return false
	}
	if f.Tenant != "" && j.Spec.Tenant != f.Tenant {
		return false
	}
	if f.Array != "" && j.Spec.Array != f.Array || f.Pipeline != "" && j.Spec.Pipeline != f.Pipeline {
		return false
	}
	if f.Name != "" && !NameMatches(f.Name, j.Spec.Name) {
		return false
	}
	if !f.Since.IsZero() && (j.CreatedAt.Before(f.Since) || IDBefore(j.ID, f.Since)) {
		return false
	}
	if !f.NotFinishedBefore.IsZero() && j.State.Terminal() &&
		(j.FinishedAt.IsZero() || j.FinishedAt.Before(f.NotFinishedBefore)) {
		return false
	}
	return LabelsMatch(j.Spec.Labels, f.Labels)
}

// NameMatches reports whether a job named name is selected by pattern: the
// name is the pattern itself, or matches it as path.Match does (`*` any
// run of characters but '/', `?` one, `[a-z]` a class, `[!a-z]` or
// `[^a-z]` its complement, `\` quotes), so that both `render*` and a
// task's exact name `render[7]` (which as a pattern would be render7)
// select what people mean. A malformed pattern matches only itself.
func NameMatches(pattern, name string) bool {
	if name == pattern {
		return true
	}
	ok, err := path.Match(shellClasses(pattern), name)
	return err == nil && ok
}

// shellClasses returns pattern with each class negated the shell's way,
// `[!…]`, written the way path.Match reads it, `[^…]`.
func shellClasses(pattern string) string {
	if !strings.Contains(pattern, "[!") {
		return pattern
	}
	b := []byte(pattern)
	inClass := false
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '\\':
			i++ // the next byte is quoted, in a class or not
		case inClass && b[i] == ']':
			inClass = false
		case !inClass && b[i] == '[':
			inClass = true
			if i+1 < len(b) && b[i+1] == '!' {
				b[i+1] = '^'
				i++
			}
		}
	}
	return string(b)
}

// NamePattern splits a name filter into the literal prefix every name it
// selects by pattern starts with, and whether it is a pattern at all (it
// has a metacharacter and is well formed). When glob is false the filter
// selects the one name equal to it.
func NamePattern(pattern string) (prefix string, glob bool) {
	i := strings.IndexAny(pattern, `*?[\`)
	if i < 0 {
		return pattern, false
	}
	if _, err := path.Match(shellClasses(pattern), ""); err != nil {
		return pattern, false
	}
	return pattern[:i], true
}

// IDTime returns the time a ULID was made, to the millisecond, and false
// when id is not a valid id.
func IDTime(id string) (time.Time, bool) {
	if !ValidID(id) {
		return time.Time{}, false
	}
	var ms int64
	for i := range 10 {
		ms = ms*32 + int64(digit(id[i]))
	}
	return time.UnixMilli(ms), true
}

// IDBefore reports whether id is a ULID made wholly before t: its
// millisecond ended at or before t. A job with such an id was created
// before t. An id that is not a ULID is never before.
func IDBefore(id string, t time.Time) bool {
	made, ok := IDTime(id)
	return ok && !made.Add(time.Millisecond).After(t)
}

// MadeAfter reports whether id is a job id (26 Crockford base32 digits, as
// the server makes them) whose time, its first ten digits in milliseconds,
// is after t's millisecond. The server makes a job's id when the job is
// submitted, so a job made after t cannot have finished before t, unless
// the server's clock went back (such a job is then kept until t passes
// its id's time). Any other id reports false.
func MadeAfter(id string, t time.Time) bool {
	made, ok := IDTime(id)
	// A ULID's first digit holds 3 bits: a larger one is past any time.
	return ok && id[0] <= '7' && made.UnixMilli() > t.UnixMilli()
}

// IDRef is an object found by a prefix of its id: the id, and the tenant
// it belongs to (so that a caller limited to tenants sees only theirs).
type IDRef struct {
	ID     string
	Tenant string
}
