package cli

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// filterAll feeds chunks to a fresh termFilter, closes it and returns what
// it wrote.
func filterAll(t testing.TB, chunks ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	f := newTermFilter(&buf)
	for _, c := range chunks {
		if n, err := f.Write(c); n != len(c) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", c, n, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTermFilter(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"Text", "hello, wörld ✅ 日本\n", "hello, wörld ✅ 日本\n"},
		{"CursorControls", "a\r\nb\tc\bd", "a\r\nb\tc\bd"},
		{"OtherC0AndDEL", "a\x00b\x07c\x0cd\x7fe\x0ef", "abcdef"},
		{"SGR", "\x1b[31mred\x1b[0m \x1b[1;38;5;208mx\x1b[m", "\x1b[31mred\x1b[0m \x1b[1;38;5;208mx\x1b[m"},
		{"SGRTrueColour", "\x1b[38;2;255;128;0;48:2::1:2:3mx\x1b[0m", "\x1b[38;2;255;128;0;48:2::1:2:3mx\x1b[0m"},
		{"EraseScrollbackInAnyForm", "a\x1b[3Jb\x1b[03Jc\x1b[003Jd\x1b[3;Je\x1b[1;3Jf\x1b[2Jg", "abcdef\x1b[2Jg"},
		{"CursorMovement", "\x1b[A\x1b[2B\x1b[3C\x1b[4D\x1b[E\x1b[F\x1b[10G\x1b[1;1H\x1b[5;5f\x1b[2J\x1b[3J\x1b[K\x1b[5X\x1b[7d",
			"\x1b[A\x1b[2B\x1b[3C\x1b[4D\x1b[E\x1b[F\x1b[10G\x1b[1;1H\x1b[5;5f\x1b[2J\x1b[K\x1b[5X\x1b[7d"},
		{"SaveRestoreCursor", "\x1b7\x1b8\x1b[s\x1b[u", "\x1b7\x1b8\x1b[s\x1b[u"},
		{"SaveRestoreWithParameters", "\x1b[1;5s\x1b[1u", ""},
		{"CursorShowHide", "\x1b[?25lbusy\x1b[?25h", "\x1b[?25lbusy\x1b[?25h"},
		{"OSCTitleBEL", "a\x1b]0;pwned\x07b", "ab"},
		{"OSCTitleST", "a\x1b]2;pwned\x1b\\b", "ab"},
		{"OSC52Clipboard", "\x1b]52;c;cm0gLXJmIH4K\x07x", "x"},
		{"OSC8HyperlinkKeepsText", "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\", "click"},
		{"OSCTitleWithUTF8", "\x1b]0;done ✅ ok\x07x", "x"},
		{"OSCEndedByC1ST", "\x1b]0;t\xc2\x9cx\x1b]0;u\x9cy", "xy"},
		{"OSCEndedByNewEscape", "\x1b]0;t\x1b[31mred", "\x1b[31mred\x1b[0m"},
		{"OSCCancelledByCAN", "\x1b]0;t\x18x", "x"},
		{"DCS", "\x1bP1$r0m\x1b\\x", "x"},
		{"APC", "\x1b_Gf=100;AAAA\x1b\\x", "x"},
		{"PM", "\x1b^private\x1b\\x", "x"},
		{"SOS", "\x1bXstring\x1b\\x", "x"},
		{"DeviceStatusReport", "\x1b[6n\x1b[5n\x1b[c\x1b[>c\x1b[=cx", "x"},
		{"WindowManipulation", "\x1b[8;100;200t\x1b[21tx", "x"},
		{"Modes", "\x1b[?1049h\x1b[?1000h\x1b[4h\x1b[?2004h\x1b[?25;1hx", "x"},
		{"ScrollRegion", "\x1b[1;5rx", "x"},
		{"KittyKeyboard", "\x1b[>1u\x1b[=1;1ux", "x"},
		{"CSIIntermediate", "\x1b[0 qx\x1b[!px", "xx"},
		{"CSITooLong", "\x1b[" + strings.Repeat("1;", maxHeldCSI) + "mx", "x"},
		{"CSIInterruptedByText", "\x1b[31\nm", "\nm"},
		{"EscRestarts", "\x1b\x1b[31mx", "\x1b[31mx\x1b[0m"},
		{"OtherEscapes", "\x1bc\x1b(0\x1b#8\x1bD\x1bM\x1b=x", "x"},
		{"C1AsBytes", "a\x84b\x85c\x8ed", "abcd"},
		{"C1CSIAsByte", "\x9b6nx\x9b31my", "xy"},
		{"C1OSCAsByte", "\x9d0;pwned\x07x", "x"},
		{"C1DCSAsByte", "\x90q\x9cx", "x"},
		{"C1AsUTF8", "a\u0085b\u009b6nc\u009d0;t\u0007d", "abcd"},
		{"InvalidUTF8", "a\xffb\xc0\xafc\xe2\x82d", "a\uFFFDb\uFFFD\uFFFDc\uFFFDd"},
		{"InvalidUTF8BeforeEscape", "\xe2\x1b]0;t\x07x", "\uFFFDx"},
		{"Surrogate", "\xed\xa0\x80x", "\uFFFD\uFFFDx"}, // ED A0 is not a prefix; 80 alone is C1
		{"UnfinishedAtEnd", "a\x1b[3", "a"},
		{"CloseResetsStyleAndCursor", "\x1b[1mbold\x1b[?25l", "\x1b[1mbold\x1b[?25l\x1b[0m\x1b[?25h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := filterAll(t, []byte(tc.in)); string(got) != tc.want {
				t.Errorf("filter(%q) = %q, want %q", tc.in, got, tc.want)
			}
			// Byte by byte, every sequence is split everywhere.
			var chunks [][]byte
			for i := range len(tc.in) {
				chunks = append(chunks, []byte{tc.in[i]})
			}
			if got := filterAll(t, chunks...); string(got) != tc.want {
				t.Errorf("filter(%q) byte by byte = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestTermFilterBoundsMemory streams an OSC that never ends: its payload
// is dropped as it comes, nothing of it is held, and text after its end
// passes.
func TestTermFilterBoundsMemory(t *testing.T) {
	var buf bytes.Buffer
	f := newTermFilter(&buf)
	f.Write([]byte("\x1b]52;c;"))
	chunk := bytes.Repeat([]byte("QUJD"), 16<<10) // 64 KiB
	for range 256 {                               // 16 MiB
		f.Write(chunk)
		if cap(f.held) > maxHeldCSI+1 || cap(f.out) > len(chunk) {
			t.Fatalf("filter holds %d bytes and buffers %d in an OSC payload", cap(f.held), cap(f.out))
		}
	}
	f.Write([]byte("\x07after"))
	if buf.String() != "after" {
		t.Fatalf("output = %q, want %q", buf.String(), "after")
	}
}

func TestTermFilterWriteError(t *testing.T) {
	boom := errors.New("boom")
	f := newTermFilter(errWriter{boom})
	if n, err := f.Write([]byte("abc")); n != 3 || !errors.Is(err, boom) {
		t.Fatalf("Write = %d, %v; want 3, %v", n, err, boom)
	}
	if n, err := f.Write([]byte("\x1b]0;t\x07")); n != 6 || err != nil {
		t.Fatalf("Write of a dropped sequence = %d, %v; want 6, nil (nothing to write)", n, err)
	}
}

type errWriter struct{ err error }

func (w errWriter) Write([]byte) (int, error) { return 0, w.err }

// FuzzTermFilter checks that nothing that acts on a terminal gets through
// and that how the input is split does not change the output.
func FuzzTermFilter(f *testing.F) {
	for _, s := range []string{
		"plain text\r\n",
		"\x1b[31mred\x1b[0m",
		"\x1b]0;title\x07\x1b]52;c;Y2xpcA==\x1b\\",
		"\x1b]8;;http://x/\x1b\\link\x1b]8;;\x1b\\",
		"\x1bPq\x1b\\\x1b_a\x1b\\\x1b^p\x1b\\\x1bXs\x1b\\",
		"\x9b6n\xc2\x9b6n\x1b[6n\x9d0;t\x9c",
		"\xe2\x9c\x85\xff\xc2",
		"\x1b[?25l\x1b[?1049h\x1b7\x1b8",
		"\x1b\x1b]\x1b[\x1b\\",
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		whole := filterAll(t, in)
		for _, bad := range []string{"\x1b]", "\x1bP", "\x1b_", "\x1b^", "\x1bX", "\x1bc", "\x1b[6n"} {
			if bytes.Contains(whole, []byte(bad)) {
				t.Fatalf("output %q of %q contains %q", whole, in, bad)
			}
		}
		for _, r := range string(whole) {
			if r >= 0x80 && r <= 0x9f {
				t.Fatalf("output %q of %q contains C1 %U", whole, in, r)
			}
		}
		if !utf8.Valid(whole) {
			t.Fatalf("output %q of %q is not UTF-8", whole, in)
		}
		if !validEscapes(whole) {
			t.Fatalf("output %q of %q has an ESC outside an allowed sequence", whole, in)
		}
		// Any split gives the same output: chunks of 1 + step%16 bytes.
		n := 1 + int(step%16)
		var chunks [][]byte
		for rest := in; len(rest) > 0; {
			k := min(n, len(rest))
			chunks = append(chunks, rest[:k])
			rest = rest[k:]
		}
		if split := filterAll(t, chunks...); !bytes.Equal(split, whole) {
			t.Fatalf("in chunks of %d: %q, whole: %q", n, split, whole)
		}
	})
}

// validEscapes reports whether each ESC in out starts a sequence the
// filter allows, written out whole.
func validEscapes(out []byte) bool {
	for len(out) > 0 {
		i := bytes.IndexByte(out, 0x1b)
		if i < 0 {
			break
		}
		out = out[i+1:]
		if len(out) > 0 && (out[0] == '7' || out[0] == '8') {
			continue
		}
		if len(out) == 0 || out[0] != '[' {
			return false
		}
		j := 1
		for j < len(out) && out[j] >= 0x30 && out[j] <= 0x3f {
			j++
		}
		if j == len(out) || !strings.ContainsRune("mABCDEFGHfJKXdsuhl", rune(out[j])) {
			return false
		}
		if (out[j] == 'h' || out[j] == 'l') && string(out[1:j]) != "?25" {
			return false
		}
		out = out[j+1:]
	}
	return true
}

var _ io.WriteCloser = (*termFilter)(nil)

// TestRunFiltersOutput runs `hodei run` against the fake server: the
// job's output is filtered unless --raw, and a cancel reason that carries
// an escape sequence is shown escaped.
func TestRunFiltersOutput(t *testing.T) {
	out := "\x1b]0;pwned\x07\x1b[32mok\x1b[0m\x9b6n\r\n"
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"Filtered", []string{"run", "--", "true"}, "\x1b[32mok\x1b[0m\r\n"},
		{"Raw", []string{"run", "--raw", "--", "true"}, out},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.jobs.logChunks = [][]byte{[]byte(out[:3]), []byte(out[3:])}
			h.jobs.jobs = []*hodeipb.Job{{Id: "01J00000000000000000000001", State: hodeipb.JobState_JOB_STATE_CANCELLED,
				Reason: "by \x1b]52;c;cm0K\x07 admin"}}
			r := h.run(t, tc.args...)
			if r.code != exitFailure || r.stdout != tc.want {
				t.Errorf("exit %d, stdout %q; want %d, %q", r.code, r.stdout, exitFailure, tc.want)
			}
			if want := "hodei: job 01J00000000000000000000001\nhodei: job 01J00000000000000000000001 cancelled: by \\x1b]52;c;cm0K\\a admin\n"; r.stderr != want {
				t.Errorf("stderr %q, want %q", r.stderr, want)
			}
		})
	}
}

// BenchmarkTermFilter measures the filter on 1 MiB of typical output:
// plain text, coloured text, and text that is mostly dropped sequences.
func BenchmarkTermFilter(b *testing.B) {
	for _, bc := range []struct{ name, line string }{
		{"Plain", "2026-03-14T10:09:26Z INFO compiling package github.com/hodei-jobs/hodei/cli\r\n"},
		{"Coloured", "\x1b[32m✓\x1b[0m \x1b[1mok\x1b[0m  github.com/hodei-jobs/hodei/cli \x1b[2m(0.81s)\x1b[0m\r\n"},
		{"Hostile", "\x1b]0;title\x07\x1b]52;c;Y2xpcA==\x07\x9b6n\x1b[6n\x1bPq\x1b\\x\r\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := bytes.Repeat([]byte(bc.line), (1<<20)/len(bc.line))
			f := newTermFilter(io.Discard)
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				for c := in; len(c) > 0; c = c[min(len(c), 32<<10):] {
					f.Write(c[:min(len(c), 32<<10)])
				}
			}
		})
	}
}
