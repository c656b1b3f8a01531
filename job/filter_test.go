package job

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestNameMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"build", "build", true},
		{"build", "build-2", false},
		{"build*", "build-2", true},
		{"build*", "release/build", false},
		{"release/*", "release/test[os=linux]", true},
		{"render[7]", "render[7]", true}, // the exact name, though as a pattern it is render7
		{"render[7]", "render7", true},
		{"render?1[0-3]?", "render[12]", true},
		{"render[", "render[", true}, // malformed: matches itself only
		{"render[", "render[1", false},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		// The shell's negated class, [!…], as README's "shell pattern" promises.
		{"[!a]", "b", true},
		{"[!a]", "a", false},
		{"[!a]", "[", true},
		{"x[!0-9]", "x7", false},
		{"x[!0-9]", "xy", true},
		{"[^a]", "b", true},
		{`\[!a]`, "[!a]", true}, // quoted: a literal '[', then "!a]"
		{`[\!]`, "!", true},     // '!' quoted in a class is itself, not a negation
		{"[a!]", "!", true},     // '!' not first in a class is itself
	} {
		if got := NameMatches(tc.pattern, tc.name); got != tc.want {
			t.Errorf("NameMatches(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		pattern, prefix string
		glob            bool
	}{
		{"build", "build", false},
		{"build*", "build", true},
		{"*x", "", true},
		{"a?b", "a", true},
		{`x\*`, "x", true},
		{"render[", "render[", false},
		{"[!a]*", "", true},
	} {
		if prefix, glob := NamePattern(tc.pattern); prefix != tc.prefix || glob != tc.glob {
			t.Errorf("NamePattern(%q) = %q, %v; want %q, %v", tc.pattern, prefix, glob, tc.prefix, tc.glob)
		}
	}
}

func TestIDTime(t *testing.T) {
	at := time.Date(2026, 3, 14, 15, 9, 26, 535_000_000, time.UTC)
	ms := at.UnixMilli()
	b := []byte("0000000000" + "7ZZZZZZZZZZZZZZZ")
	for i := 9; i >= 0; i-- {
		b[i] = crockford[ms%32]
		ms /= 32
	}
	id := string(b)
	got, ok := IDTime(id)
	if !ok || !got.Equal(at) {
		t.Fatalf("IDTime(%s) = %v, %v; want %v", id, got, ok, at)
	}
	if _, ok := IDTime("not-an-id"); ok {
		t.Error("IDTime of a non-id is ok")
	}
	for _, tc := range []struct {
		t    time.Time
		want bool
	}{
		{at, false},                             // made in that millisecond
		{at.Add(999 * time.Microsecond), false}, // still in it
		{at.Add(time.Millisecond), true},        // its millisecond has ended
		{at.Add(-time.Hour), false},
	} {
		if got := IDBefore(id, tc.t); got != tc.want {
			t.Errorf("IDBefore(%v) = %v, want %v", tc.t, got, tc.want)
		}
	}
	if IDBefore("job-1", at) {
		t.Error("a non-ULID id is before")
	}
}

func TestFilterMatchWindow(t *testing.T) {
	now := time.Date(2026, 3, 14, 15, 0, 0, 0, time.UTC)
	f := Filter{NotFinishedBefore: now.Add(-time.Hour)}
	for _, tc := range []struct {
		j    Job
		want bool
	}{
		{Job{State: Pending}, true},
		{Job{State: Running, FinishedAt: now.Add(-48 * time.Hour)}, true}, // a retry keeps its last finish
		{Job{State: Completed, FinishedAt: now.Add(-time.Hour)}, true},
		{Job{State: Failed, FinishedAt: now.Add(-time.Hour - 1)}, false},
		{Job{State: Cancelled}, false},
	} {
		if got := f.Match(&tc.j); got != tc.want {
			t.Errorf("%s finished %v: Match = %v, want %v", tc.j.State, tc.j.FinishedAt, got, tc.want)
		}
	}
}

func TestNormalizePrefix(t *testing.T) {
	for _, tc := range []struct {
		kind   IDKind
		in     string
		want   string
		errSub string
	}{
		{KindJob, "01jx", "01JX", ""},
		{KindPipeline, "01JXAB", "01JXAB", ""},
		{KindWorker, "W-Ab", "W-Ab", ""},
		{KindJob, "01JI", "", `"01JI" is not a job id or the start of one`},
		{KindArray, "01J-", "", "is not an array id"},
		{KindJob, "01JX000000000000000000000000", "", "is not a job id"},
		{KindJob, "", "", "must not be empty"},
	} {
		got, err := NormalizePrefix(tc.kind, "id", tc.in)
		switch {
		case tc.errSub == "" && (err != nil || got != tc.want):
			t.Errorf("NormalizePrefix(%s, %q) = %q, %v; want %q", tc.kind, tc.in, got, err, tc.want)
		case tc.errSub != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.errSub)):
			t.Errorf("NormalizePrefix(%s, %q) = %v, want an error with %q", tc.kind, tc.in, err, tc.errSub)
		}
	}
}

func TestPrefixError(t *testing.T) {
	none := &PrefixError{Kind: KindJob, Prefix: "01JZ"}
	if !errors.Is(none, ErrNotFound) || none.Error() != `no job id starts with "01JZ"` {
		t.Errorf("no match: %v", none)
	}
	many := &PrefixError{Kind: KindWorker, Prefix: "w-", Matches: []PrefixMatch{{"w-1", "host-1"}, {"w-2", ""}}, More: 998, MoreAtLeast: true}
	want := "\"w-\" is the start of more than 1,000 worker ids; give more of the one you mean:\n  w-1  host-1\n  w-2\n  and more than 998 others"
	if !errors.Is(many, ErrInvalid) || many.Error() != want {
		t.Errorf("several:\n%s\nwant:\n%s", many, want)
	}
}

func TestArrayTaskRange(t *testing.T) {
	a := &Array{ID: "01JX0000000000000000000000", First: 0, Last: 99}
	for _, tc := range []struct {
		lo, hi   string
		from, to int
		ok       bool
	}{
		{"01JX0000000000000000000000", "01JXZZZZZZZZZZZZZZZZZZZZZZ", 0, 99, true},
		{"01JX0000000000000000000010", "01JX00000000000000000000ZZ", 31, 99, true}, // 0x10 in base 32 is 32
		{"01JX0000000000000000000000", "01JX000000000000000000000Z", 0, 30, true},  // ids 1 to 31
		{"01JX0000000000000000000030", "01JX0000000000000000000030", 95, 95, true},
		{"01JX0000000000000000000040", "01JX00000000000000000000ZZ", 0, 0, false}, // past the last (100 = 34)
		{"01JW0000000000000000000000", "01JWZZZZZZZZZZZZZZZZZZZZZZ", 0, 0, false}, // before the array
	} {
		from, to, ok := a.TaskRange(tc.lo, tc.hi)
		if ok != tc.ok || ok && (from != tc.from || to != tc.to) {
			t.Errorf("TaskRange(%s, %s) = %d, %d, %v; want %d, %d, %v", tc.lo, tc.hi, from, to, ok, tc.from, tc.to, tc.ok)
		}
	}
}
