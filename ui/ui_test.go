package ui

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, target string, hdr ...string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func body(t *testing.T, r *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHandler(t *testing.T) {
	h := Handler()
	t.Run("OK", func(t *testing.T) {
		r := get(t, h, "/")
		if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("GET /: %d %s", r.StatusCode, r.Header.Get("Content-Type"))
		}
		if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") ||
			strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "default-src 'none'") {
			t.Fatalf("CSP %q: want scripts from self only", csp)
		}
		if !bytes.Contains(body(t, r), []byte(`src="/ui/js/app.js"`)) {
			t.Fatal("index.html does not load /ui/js/app.js")
		}
		r = get(t, h, "/ui/js/app.js")
		if r.StatusCode != 200 || r.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
			t.Fatalf("GET app.js: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
		}
	})
	t.Run("ETag", func(t *testing.T) {
		r := get(t, h, "/ui/app.css")
		etag := r.Header.Get("ETag")
		if etag == "" || r.Header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("ETag %q Cache-Control %q", etag, r.Header.Get("Cache-Control"))
		}
		if r = get(t, h, "/ui/app.css", "If-None-Match", etag); r.StatusCode != http.StatusNotModified {
			t.Fatalf("If-None-Match its ETag: %d, want 304", r.StatusCode)
		}
		if r = get(t, h, "/ui/app.css", "If-None-Match", `"other"`); r.StatusCode != 200 {
			t.Fatalf("If-None-Match another ETag: %d, want 200", r.StatusCode)
		}
	})
	t.Run("Gzip", func(t *testing.T) {
		plain := body(t, get(t, h, "/ui/js/terminal.js"))
		r := get(t, h, "/ui/js/terminal.js", "Accept-Encoding", "gzip, br")
		if r.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("Content-Encoding %q, want gzip", r.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(body(t, r)))
		if err != nil {
			t.Fatal(err)
		}
		un, _ := io.ReadAll(zr)
		if !bytes.Equal(un, plain) {
			t.Fatal("gzip body differs from the file")
		}
		if r = get(t, h, "/ui/js/terminal.js", "Accept-Encoding", "gzip;q=0"); r.Header.Get("Content-Encoding") != "" {
			t.Fatal("gzip;q=0 still got gzip")
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		for _, p := range []string{"/ui/nope.js", "/ui/index.html", "/ui/", "/ui/js/"} {
			if r := get(t, h, p); r.StatusCode != 404 {
				t.Errorf("GET %s: %d, want 404", p, r.StatusCode)
			}
		}
	})
}

// TestModulesResolve checks that every module a script imports, and every
// asset index.html names, is embedded: a missing file would only show in
// a browser.
func TestModulesResolve(t *testing.T) {
	loadOnce.Do(load)
	imp := regexp.MustCompile(`(?m)^\s*import\s+(?:[^'"]*\s+from\s+)?'([^']+)'`)
	n := 0
	for p, a := range assets {
		if !strings.HasSuffix(p, ".js") {
			continue
		}
		for _, m := range imp.FindAllStringSubmatch(string(a.body), -1) {
			target := path.Join(path.Dir(p), m[1])
			if assets[target] == nil {
				t.Errorf("%s imports %s: not embedded", p, target)
			}
			n++
		}
	}
	if n < 10 {
		t.Fatalf("found %d imports; the pattern no longer matches the scripts", n)
	}
	ref := regexp.MustCompile(`(?:src|href)="(/ui/[^"]+)"`)
	for _, m := range ref.FindAllStringSubmatch(string(assets["/"].body), -1) {
		if assets[m[1]] == nil {
			t.Errorf("index.html names %s: not embedded", m[1])
		}
	}
	// Every module but app.js is preloaded, so that the browser fetches
	// them at once instead of one import level at a time.
	for p := range assets {
		if strings.HasSuffix(p, ".js") && p != Prefix+"js/app.js" &&
			!strings.Contains(string(assets["/"].body), `<link rel="modulepreload" href="`+p+`">`) {
			t.Errorf("index.html does not preload %s", p)
		}
	}
	if strings.Contains(string(assets["/"].body), "<script>") {
		t.Error("index.html has an inline script, which the CSP forbids")
	}
}
