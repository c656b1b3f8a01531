package job

import (
	"fmt"
	"strings"
)

// IDKind says what an id names: people may type any unique prefix of an
// id, and it is resolved among the objects of its kind.
type IDKind int

const (
	KindJob IDKind = iota + 1
	KindArray
	KindPipeline
	KindWorker
)

func (k IDKind) String() string {
	switch k {
	case KindJob:
		return "job"
	case KindArray:
		return "array"
	case KindPipeline:
		return "pipeline"
	case KindWorker:
		return "worker"
	}
	return fmt.Sprintf("IDKind(%d)", int(k))
}

// withArticle is the kind with its indefinite article: "a job", "an array".
func (k IDKind) withArticle() string {
	if k == KindArray {
		return "an " + k.String()
	}
	return "a " + k.String()
}

// MaxShownMatches is how many matches of an ambiguous prefix its error
// lists; the rest are counted.
const MaxShownMatches = 10

// NormalizePrefix returns the prefix of an id of kind as ids are stored:
// job, array and pipeline ids are ULIDs, in upper case, so their prefixes
// are taken in any case; a worker id is compared ignoring case and kept
// as typed. It refuses, naming field, what no id of the kind starts with.
func NormalizePrefix(kind IDKind, field, s string) (string, error) {
	if s == "" {
		return "", Invalid(field, "must not be empty")
	}
	if kind == KindWorker {
		if len(s) > MaxIDLen {
			return "", Invalid(field, "is %d bytes; a worker id is at most %d", len(s), MaxIDLen)
		}
		return s, nil
	}
	up := strings.ToUpper(s)
	if len(up) > 26 || !ValidID(up+strings.Repeat("0", 26-len(up))) {
		return "", Invalid(field, "%q is not %s id or the start of one (up to 26 characters of 0-9 and A-Z but I, L, O and U)", s, kind.withArticle())
	}
	return up, nil
}

// PrefixMatch is one object a prefix matched, and a few words that tell it
// from the others (a job's name and state, a worker's host).
type PrefixMatch struct {
	ID     string
	Detail string
}

// PrefixError says that a prefix matched no object of its kind, or more
// than one. With no Matches it wraps ErrNotFound; otherwise ErrInvalid,
// and Matches holds up to MaxShownMatches of them, More how many others
// there are (at least, when MoreAtLeast).
type PrefixError struct {
	Kind        IDKind
	Prefix      string
	Matches     []PrefixMatch
	More        int
	MoreAtLeast bool
}

func (e *PrefixError) Error() string {
	if len(e.Matches) == 0 {
		return fmt.Sprintf("no %s id starts with %q", e.Kind, e.Prefix)
	}
	var b strings.Builder
	total := Thousands(int64(len(e.Matches) + e.More))
	if e.MoreAtLeast {
		total = "more than " + total
	}
	fmt.Fprintf(&b, "%q is the start of %s %s ids; give more of the one you mean:", e.Prefix, total, e.Kind)
	for _, m := range e.Matches {
		b.WriteString("\n  " + m.ID)
		if m.Detail != "" {
			b.WriteString("  " + m.Detail)
		}
	}
	switch {
	case e.More > 0 && e.MoreAtLeast:
		fmt.Fprintf(&b, "\n  and more than %s others", Thousands(int64(e.More)))
	case e.More > 0:
		fmt.Fprintf(&b, "\n  and %s more", Thousands(int64(e.More)))
	}
	return b.String()
}

// Unwrap makes a PrefixError match ErrNotFound (no match) or ErrInvalid
// (several).
func (e *PrefixError) Unwrap() error {
	if len(e.Matches) == 0 {
		return ErrNotFound
	}
	return ErrInvalid
}
