package ui_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hodei-jobs/hodei/ui"
)

// TestTerminalCursorMovesBeyondTheScreen feeds the page's Terminal output
// that moves the cursor past the bottom of its screen (CSI n B, CSI n E,
// CSI row;col H with a row past rows, as `tput cup 999 0` or the
// "\e[999;999H" size probe print) or far to the right (CSI n C): a real
// terminal clamps the cursor to its screen. Each write must return.
func TestTerminalCursorMovesBeyondTheScreen(t *testing.T) {
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
		w.Write([]byte(`<!doctype html><pre id=p></pre><script type=module>
import { Terminal } from '/ui/js/terminal.js';
window.feed = (s) => { const t = new Terminal(document.getElementById('p'), 24); t.write(new TextEncoder().encode(s)); return t.text().length; };
window.ready = true;
</script>`))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	dir := t.TempDir()
	actx, cancel := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(exe), chromedp.Headless,
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(dir), chromedp.Flag("disable-quic", true))
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Navigate(srv.URL+"/t.html")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`window.ready === true`)); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"a\x1b[30Bx\n", "a\x1b[25Ex\n", "a\x1b[40;1Hx\n", "a\x1b[999;999H\n", "a\x1b[99999999Cx\n"} {
		tctx, tcancel := context.WithTimeout(ctx, 20*time.Second)
		_, err := chromedp.Run(tctx, chromedp.Evaluate[int](`feed(`+jsString(in)+`)`))
		tcancel()
		if err != nil {
			t.Fatalf("feeding %q to the page's Terminal: %v (the tab hangs)", in, err)
		}
	}
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
