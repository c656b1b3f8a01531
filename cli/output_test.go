package cli

import (
	"bytes"
	"testing"
)

func TestCell(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"Empty", "", "-"},
		{"Plain", "train model ✅", "train model ✅"},
		{"Backslash", `C:\jobs`, `C:\jobs`},
		{"TabAndNewline", "a\tb\nc\rd", `a\tb\nc\rd`},
		{"ESC", "evil\x1b]0;pwned\x07", `evil\x1b]0;pwned\a`},
		{"NULAndDEL", "a\x00b\x7f", `a\x00b\x7f`},
		{"C1AsUTF8", "a\u009b6n\u0085", `a\u009b6n\u0085`},
		{"InvalidUTF8", "a\x9b6n\xff", `a\x9b6n\xff`},
		{"ReplacementCharacterIsItself", "a\uFFFDb", "a\uFFFDb"},
		{"BidiOverride", "abc\u202Edef\u2066", `abc\u202edef\u2066`},
		{"LineSeparator", "a\u2028b", `a\u2028b`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cell(tc.in); got != tc.want {
				t.Errorf("cell(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestVisibleKeeps(t *testing.T) {
	if got, want := visible("line one\n\tline two\x1b[2J", "\n\t"), "line one\n\tline two\\x1b[2J"; got != want {
		t.Errorf("visible = %q, want %q", got, want)
	}
}

func TestJSONArray(t *testing.T) {
	// Written in pages, the array is what writeJSON writes for the slice.
	views := []any{map[string]any{"id": "a", "labels": map[string]string{"k": "<v>"}}, []int{1, 2}, "three", nil}
	for _, pages := range [][]int{{4}, {1, 3}, {0, 2, 0, 1, 1}, {}} {
		var want, got bytes.Buffer
		n := 0
		for _, p := range pages {
			n += p
		}
		if err := writeJSON(&want, views[:n]); err != nil {
			t.Fatal(err)
		}
		a := newJSONArray(&got)
		at := 0
		for _, p := range pages {
			if err := a.add(views[at : at+p]...); err != nil {
				t.Fatal(err)
			}
			at += p
		}
		if err := a.close(); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("pages %v:\ngot  %q\nwant %q", pages, got.String(), want.String())
		}
	}
}

func TestTablePages(t *testing.T) {
	// A later page keeps the columns of the pages before it, and widens a
	// column only for a wider cell; the last column is never padded.
	var b bytes.Buffer
	tb := newTable(&b, "ID", "NAME", "NOTE")
	tb.row("1", "a-long-name", "x")
	if err := tb.flushPage(); err != nil {
		t.Fatal(err)
	}
	tb.row("2", "b", "y")
	if err := tb.flushPage(); err != nil {
		t.Fatal(err)
	}
	tb.row("333", "c", "z")
	if err := tb.flushPage(); err != nil {
		t.Fatal(err)
	}
	want := "ID  NAME         NOTE\n" +
		"1   a-long-name  x\n" +
		"2   b            y\n" +
		"333  c            z\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
