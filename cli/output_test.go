package cli

import "testing"

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
