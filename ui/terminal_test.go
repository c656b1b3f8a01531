package ui_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hodei-jobs/hodei/ui"
)

// termResult is what the test page reports after feeding a Terminal.
type termResult struct {
	Text    string `json:"text"`    // Terminal.text(): its lines joined by \n
	Lines   int    `json:"lines"`   // lines in the DOM
	MaxRuns int    `json:"maxRuns"` // the most child nodes of one line
}

// termFeeder feeds output (a JavaScript expression that makes a string)
// to a new Terminal of rows × cols in a headless Chromium and returns
// what it shows; with sabotage, making a styled run (a span) throws.
type termFeeder func(t *testing.T, js string, rows, cols int, sabotage bool) termResult

// newTermFeeder serves the page's modules and a test page that imports
// terminal.js, in a headless Chromium; it skips the test without one.
func newTermFeeder(t *testing.T) termFeeder {
	t.Helper()
	exe := ""
	for _, p := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(p); err == nil {
			exe = p
			break
		}
	}
	if exe == "" {
		t.Skip("no chromium")
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", ui.Handler())
	mux.HandleFunc("/t.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(`<!doctype html><body><script type=module>
import { Terminal } from '/ui/js/terminal.js';
window.feed = (s, rows, cols, sabotage) => {
  const p = document.createElement('pre');
  document.body.append(p);
  const create = document.createElement;
  if (sabotage) document.createElement = (tag) => { if (tag === 'span') throw new RangeError('sabotaged'); return create.call(document, tag); };
  try {
    const t = new Terminal(p, rows, cols);
    t.write(new TextEncoder().encode(s));
    const text = t.text();
    const maxRuns = Math.max(0, ...[...p.children].map((e) => e.childNodes.length));
    return { text, lines: p.children.length, maxRuns };
  } finally {
    document.createElement = create;
    p.remove();
  }
};
window.ready = true;
</script>`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(exe), chromedp.Headless,
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()), chromedp.Flag("disable-quic", true))
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if _, err := chromedp.Run(ctx, chromedp.Navigate(srv.URL+"/t.html")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`window.ready === true`)); err != nil {
		t.Fatal(err)
	}
	return func(t *testing.T, js string, rows, cols int, sabotage bool) termResult {
		t.Helper()
		// The deadline only tells a hang from an answer; the work is bounded.
		tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
		defer tcancel()
		expr := "feed(" + js + ", " + strconv.Itoa(rows) + ", " + strconv.Itoa(cols) + ", " + strconv.FormatBool(sabotage) + ")"
		res, err := chromedp.Run(tctx, chromedp.Evaluate[termResult](expr))
		if err != nil {
			t.Fatalf("feeding %.200s to the page's Terminal: %v (the tab hangs or throws)", js, err)
		}
		return res
	}
}

// screen is the text of a Terminal whose lines are lines.
func screen(lines ...string) string { return strings.Join(lines, "\n") }

// blank is n empty lines.
func blank(n int) []string { return make([]string, n) }

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// TestTerminalCursorMovesBeyondTheScreen feeds the page's Terminal output
// that moves the cursor past the bottom of its screen (CSI n B, CSI n E,
// CSI row;col H with a row past rows, as `tput cup 999 0` or the
// "\e[999;999H" size probe print) or far to the right (CSI n C, G, the
// column of H), with huge repeat counts, tabs, and the sequences the
// filter drops (insert/delete, scroll regions, repeat): as xterm, the
// Terminal clamps the cursor to its 24×80 screen, and each write returns.
func TestTerminalCursorMovesBeyondTheScreen(t *testing.T) {
	feed := newTermFeeder(t)
	sp := strings.Repeat
	for _, tc := range []struct {
		name, in string
		want     string
	}{
		{"CUD", "a\x1b[30Bx\n", screen(cat([]string{"a"}, blank(22), []string{" x", ""})...)},
		{"CNL", "a\x1b[25Ex\n", screen(cat([]string{"a"}, blank(22), []string{"x", ""})...)},
		{"CUPRow", "a\x1b[40;1Hx\n", screen(cat([]string{"a"}, blank(22), []string{"x", ""})...)},
		{"VPA", "a\x1b[99999999dx", screen(cat([]string{"a"}, blank(22), []string{" x"})...)},
		{"SizeProbe", "a\x1b[999;999Hx", screen(cat([]string{"a"}, blank(22), []string{sp(" ", 79) + "x"})...)},
		{"HugeCUF", "a\x1b[99999999Cx\n", screen("a"+sp(" ", 78)+"x", "")},
		{"HugeCHA", "\x1b[99999999Gxy", screen(sp(" ", 79)+"x", "y")},
		{"HugeCUPCol", "\x1b[1;99999999Hxy", screen(sp(" ", 79)+"x", "y")},
		{"HugeUpLeft", "abc\x1b[99999999A\x1b[99999999Dz\x1b[99999999Fy", screen("ybc")},
		{"HugeECH", "abc\x1b[2D\x1b[99999999X", screen("a")},
		{"Autowrap", sp("a", 200), screen(sp("a", 80), sp("a", 80), sp("a", 40))},
		{"WrapPendingCR", sp("a", 80) + "\rX", screen("X" + sp("a", 79))},
		{"WrapPendingLF", sp("a", 80) + "\nb", screen(sp("a", 80), "b")},
		{"WrapPendingBS", sp("a", 80) + "\bX", screen(sp("a", 78) + "Xa")},
		{"Tabs", sp("\t", 20) + "x", screen(sp(" ", 79) + "x")},
		{"TabKeepsCells", "abcdefghij\r\tX", screen("abcdefghXj")},
		{"SaveRestore", "ab\x1b7\x1b[999;999Hx\x1b8c", screen(cat([]string{"abc"}, blank(22), []string{sp(" ", 79) + "x"})...)},
		{"Dropped", "ab\x1b[99999999@\x1b[99999999P\x1b[99999999L\x1b[99999999M\x1b[1;99999999r\x1b[99999999S\x1b[99999999T\x1b[99999999bc", screen("abc")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := feed(t, jsString(tc.in), 24, 80, false).Text; got != tc.want {
				t.Errorf("feeding %q:\ngot  %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
	t.Run("ScreenSizeClamped", func(t *testing.T) {
		// A PTY may be 65535 wide; the page keeps at most 1000×1000.
		got := feed(t, jsString("\x1b[99999999;99999999Hx"), 65535, 65535, false)
		if want := screen(cat(blank(999), []string{sp(" ", 999) + "x"})...); got.Text != want {
			t.Errorf("got %d lines, %d bytes; want 1000 lines, the last 999 spaces and x", got.Lines, len(got.Text))
		}
	})
}

// TestTerminalSGRFlood feeds lines that change colour at every character
// (200,000 runs, hostile output): the Terminal renders them without
// spreading one argument per run, at most maxRuns (256) elements a line,
// and a line that fails to render shows its text and does not stop the
// lines after it.
func TestTerminalSGRFlood(t *testing.T) {
	feed := newTermFeeder(t)
	t.Run("Default", func(t *testing.T) {
		got := feed(t, `'\x1b[31mZ\x1b[32mZ'.repeat(100000) + '\n'`, 24, 80, false)
		if want := strings.Repeat(strings.Repeat("Z", 80)+"\n", 2500); got.Text != want {
			t.Errorf("got %d lines, %d bytes; want 2500 lines of 80 Z and an empty one", got.Lines, len(got.Text))
		}
		if got.MaxRuns != 80 {
			t.Errorf("a line renders as %d elements, want 80 (one a cell)", got.MaxRuns)
		}
	})
	t.Run("Wide", func(t *testing.T) {
		got := feed(t, `'\x1b[31mZ\x1b[32mZ'.repeat(100000)`, 24, 1000, false)
		if want := strings.TrimSuffix(strings.Repeat(strings.Repeat("Z", 1000)+"\n", 200), "\n"); got.Text != want {
			t.Errorf("got %d lines, %d bytes; want 200 lines of 1000 Z", got.Lines, len(got.Text))
		}
		if got.MaxRuns != 256 {
			t.Errorf("a line renders as %d elements, want 256 (maxRuns)", got.MaxRuns)
		}
	})
	t.Run("RenderFails", func(t *testing.T) {
		got := feed(t, jsString("\x1b[31mred\x1b[0m\nplain\n\x1b[32mgreen"), 24, 80, true)
		if want := screen("red", "plain", "green"); got.Text != want {
			t.Errorf("with rendering broken: got %q, want %q", got.Text, want)
		}
	})
}

func jsString(s string) string {
	out := []byte{'"'}
	for _, c := range []byte(s) {
		if c < 0x20 || c == '"' || c == '\\' {
			out = append(out, []byte("\\x"+string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15]))...)
		} else {
			out = append(out, c)
		}
	}
	return string(append(out, '"'))
}
