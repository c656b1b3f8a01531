package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath returns the path of a Chromium, or "" when there is none.
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/lib/chromium/chromium"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// findChromium returns the path of a Chromium for a browser test. Without
// one the test is skipped with a message, except under CI (CI set), where
// it fails: .ci/run installs Debian's chromium, so its absence there is a
// broken setup, not a reason to pass.
func findChromium(tb testing.TB) string {
	tb.Helper()
	if p := chromiumPath(); p != "" {
		return p
	}
	msg := "no chromium found (PATH, /usr/bin/chromium): install Debian's chromium (apt-get install chromium) to run the browser test"
	if os.Getenv("CI") != "" {
		tb.Fatal(msg + "; CI is set, so this fails instead of skipping")
	}
	tb.Skip(msg)
	return ""
}

// browserAllocator starts one headless Chromium for tb, with its profile
// in a temp dir; it is stopped in tb.Cleanup.
func browserAllocator(tb testing.TB, exe string) context.Context {
	tb.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.DisableGPU,
		chromedp.NoSandbox, // the tests run as root, where Chromium's sandbox refuses to start
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(tb.TempDir()),
	}
	ctx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	tb.Cleanup(cancel)
	return ctx
}

// tab is one browser tab driven by a test: its own sessionStorage (so its
// own login), the page's uncaught exceptions collected, and every
// confirm() dialog accepted (its message recorded).
type tab struct {
	t       *testing.T
	ctx     context.Context
	base    string // http://host:port
	shots   string // where screenshots go
	mu      sync.Mutex
	errs    []string // uncaught exceptions of the page
	dialogs []string // messages of the dialogs accepted
}

// newTab opens a tab: in a new browser when parent is an allocator's
// context, else in parent's browser. Its goroutines end when the test
// ends.
func newTab(t *testing.T, parent context.Context, base, shots string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent)
	tb := &tab{t: t, ctx: ctx, base: base, shots: shots}
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		cancel()
		t.Fatalf("start chromium: %v", err)
	}
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			d := ev.ExceptionDetails
			text := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				text += " " + d.Exception.Description
			}
			tb.mu.Lock()
			tb.errs = append(tb.errs, fmt.Sprintf("%s:%d: %s", d.URL, d.LineNumber+1, text))
			tb.mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.dialogs = append(tb.dialogs, ev.Message)
			tb.mu.Unlock()
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, e := range tb.errs {
			t.Errorf("uncaught exception in the page: %s", e)
		}
	})
	return tb
}

// do runs actions, failing the test with what on error.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %v\n%s", what, err, tb.pageText())
	}
}

// wait polls the JavaScript expression js in the page until it is truthy,
// or fails the test after 60 s naming what it waited for.
func (tb *tab) wait(what, js string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 65*time.Second)
	defer cancel()
	var err error
	for {
		_, err = chromedp.Run(ctx, chromedp.Poll[chromedp.Void](js,
			chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second)))
		// A page that navigates meanwhile (a login reloads it) drops the
		// context the poll ran in: poll again in the new one.
		if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "Cannot find context with specified id") {
			break
		}
	}
	if err != nil {
		tb.t.Fatalf("waiting for %s (%s): %v\npage text:\n%s", what, js, err, tb.pageText())
	}
}

// eval returns the value of the JavaScript expression js (awaited when it
// is a promise), decoded as JSON into v.
func (tb *tab) eval(js string, v any) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](js, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", js, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		tb.t.Fatalf("evaluate %s: %s: %v", js, raw, err)
	}
}

// pageText is the page's visible text, for failure messages.
func (tb *tab) pageText() string {
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
	if err != nil {
		return "(page text unavailable: " + err.Error() + ")"
	}
	return s
}

// goTo shows the page's route hash (#/jobs …) without reloading it.
func (tb *tab) goTo(hash string) {
	tb.t.Helper()
	var ok bool
	tb.eval(fmt.Sprintf("(location.hash = %q, true)", hash), &ok)
}

// shot writes a PNG of the whole page to name.png in the screenshot dir
// and logs its path.
func (tb *tab) shot(name string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(tb.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("screenshot %s: %s", name, p)
	return p
}

// login pastes token into the login form and waits for the page to say
// who it is.
func (tb *tab) login(token string) {
	tb.t.Helper()
	tb.do("open the page", chromedp.Navigate(tb.base+"/"))
	tb.wait("the login form", "document.querySelector('#login') && !document.querySelector('#login').hidden")
	tb.do("log in",
		chromedp.SetValue(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#login-button")))
	tb.wait("who I am", "document.querySelector('#role') && document.querySelector('#role').textContent !== ''")
}

// noneSticksOut fails the test when anything under the elements matching
// css (shown ones) reaches past its own element's right edge or the
// screen's, or when one of them scrolls sideways: a cut or hidden cell.
func (tb *tab) noneSticksOut(what, css string) {
	tb.t.Helper()
	var out []string
	tb.eval(fmt.Sprintf(`[...document.querySelectorAll(%q)].flatMap(box => {
		const edge = Math.min(innerWidth, box.getBoundingClientRect().right) + 0.5;
		const bad = [...box.querySelectorAll('*')].filter(e => e.getClientRects().length && e.getBoundingClientRect().right > edge)
			.map(e => e.tagName.toLowerCase() + '.' + [...e.classList].join('.') + ' ' + JSON.stringify((e.textContent || '').slice(0, 40)) +
				' ends at ' + Math.round(e.getBoundingClientRect().right) + ' px, past ' + Math.round(edge));
		let p = box;
		while (p && p !== document.body) {
			if (p.scrollWidth > p.clientWidth + 1 && getComputedStyle(p).overflowX !== 'visible') bad.push(p.tagName.toLowerCase() + '.' + [...p.classList].join('.') + ' scrolls sideways by ' + (p.scrollWidth - p.clientWidth) + ' px');
			p = p.parentElement;
		}
		if (document.documentElement.scrollWidth > innerWidth) bad.push('the page is ' + (document.documentElement.scrollWidth - innerWidth) + ' px wider than the screen');
		return bad;
	})`, css), &out)
	if len(out) > 0 {
		tb.t.Errorf("%s at %s: %s", what, css, strings.Join(out, "; "))
	}
}

// dialogMessages returns the messages of the dialogs accepted so far.
func (tb *tab) dialogMessages() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.dialogs...)
}

// restCall makes one REST call with token and decodes the JSON answer
// into out (when not nil); it returns the HTTP status.
func restCall(t *testing.T, method, url, token string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, url, resp.StatusCode, b, err)
		}
	}
	if resp.StatusCode >= 300 && out != nil {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return resp.StatusCode
}

// copyScreens copies the screenshots to dir (HODEI_SCREENS_DIR), for
// people to look at after the test's temp dir is gone.
func copyScreens(t *testing.T, from, dir string) {
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pngs, _ := filepath.Glob(filepath.Join(from, "*.png"))
	for _, p := range pngs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.Base(p))
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("copied %s", dst)
	}
}
