package job

import (
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

func TestMadeAfter(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 500_000_000, time.UTC)
	id := func(t time.Time) string { return ulid.MustNew(ulid.Timestamp(t), ulid.DefaultEntropy()).String() }
	for _, c := range []struct {
		name string
		id   string
		want bool
	}{
		{"a millisecond later", id(at.Add(time.Millisecond)), true},
		{"the same millisecond", id(at.Add(400 * time.Microsecond)), false},
		{"earlier", id(at.Add(-time.Hour)), false},
		{"lower case is no id the server makes", strings.ToLower(id(at.Add(time.Hour))), false},
		{"too short", id(at.Add(time.Hour))[:25], false},
		{"past the largest time", "8" + id(at.Add(time.Hour))[1:], false},
		{"not Crockford", "U" + id(at.Add(time.Hour))[1:], false},
	} {
		if got := MadeAfter(c.id, at); got != c.want {
			t.Errorf("%s: MadeAfter(%q) = %v, want %v", c.name, c.id, got, c.want)
		}
	}
}
