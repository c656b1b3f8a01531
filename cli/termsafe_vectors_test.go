package cli

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"testing"
)

// vectorsFile holds inputs and what termFilter makes of them, one per
// line as "INPUT_HEX CUT OUTPUT_HEX" (CUT: where the input is split
// between two writes). The web page's copy of the filter
// (ui/static/js/termsafe.js) is checked against the same file in the
// browser test (TestWebPage), so the two cannot drift apart.
const vectorsFile = "../testdata/termsafe/vectors.txt"

// termVectors generates the vectors: hand-picked sequences, then random
// strings over the bytes that matter to the filter (seed 1).
func termVectors() string {
	inputs := []string{
		"plain text\r\n", "\x1b[1;31mred\x1b[0m", "\x1b[38;2;255;128;0mtrue\x1b[m", "\x1b[38:2::1:2:3mcolon",
		"\x1b]0;title\x07after", "\x1b]8;;https://x.example\x1b\\link\x1b]8;;\x1b\\", "\x1b]52;c;ZXZpbA==\x07clip",
		"\x1bP1$q\x1b\\dcs", "\x1b_apc\x1b\\", "\x1b^pm\x1b\\", "\x1bXsos\x1b\\", "\x9b31mc1csi", "\xc2\x9b31mutf8csi",
		"\x9d0;t\x9cst", "\x1b]0;\xe2\x9c\x85 ok\x07done", "\x1b[6n\x1b[c\x1b[>c\x1b[?1049h\x1b[3J\x1b[2J\x1b[H", "\x1b[?25l\x1b[?25h",
		"progress 10%\rprogress 100%\n", "a\bb\tc", "\x1b7\x1b8\x1b[s\x1b[u\x1b[1s", "\xff\xfe bad", "\xe2\x82", "\x00\x01\x7f",
	}
	var b strings.Builder
	emit := func(in []byte, cut int) {
		var out bytes.Buffer
		f := newTermFilter(&out)
		f.Write(in[:cut])
		f.Write(in[cut:])
		fmt.Fprintf(&b, "%s %d %s\n", hex.EncodeToString(in), cut, hex.EncodeToString(out.Bytes()))
	}
	for _, s := range inputs {
		for _, cut := range []int{len(s), len(s) / 2} {
			emit([]byte(s), cut)
		}
	}
	r := rand.New(rand.NewSource(1))
	alphabet := []byte("\x1b[]P_^X\\\x07\x9b\x9c\x9d\xc2\xe2\x80\x85\x98\x9fab;:?0123m25hlJKAHs\r\n\t\b\x18\x1a\x7f\xf0\x9f\x98\xed\xa0\xff")
	for range 600 {
		in := make([]byte, r.Intn(32))
		for j := range in {
			in[j] = alphabet[r.Intn(len(alphabet))]
		}
		emit(in, r.Intn(len(in)+1))
	}
	return b.String()
}

// TestTermFilterVectors keeps the shared vectors current: -update
// rewrites them after a change to termFilter (then the page's filter must
// follow, or TestWebPage fails).
func TestTermFilterVectors(t *testing.T) {
	want := termVectors()
	if *update {
		if err := os.WriteFile(vectorsFile, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is not what termFilter does now: run go test ./cli -run TermFilterVectors -update, and port the change to ui/static/js/termsafe.js", vectorsFile)
	}
}
