package ui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
)

//go:embed static
var static embed.FS

// Prefix is the path under which the page's assets are served; the page
// itself is at /.
const Prefix = "/ui/"

// CSP is the page's Content-Security-Policy: everything from the page's
// own origin only, no inline script or style element, no framing. Styles
// set through the DOM (element.style), which the log view uses for
// 256-colour and true-colour text, are not inline styles in CSP's sense.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body  []byte
	gz    []byte // gzip of body, nil when it would not be smaller
	etag  string // quoted sha256 of body
	ctype string
}

var (
	loadOnce sync.Once
	assets   map[string]*asset // by URL path: "/" and "/ui/…"
	loadErr  error
)

// load reads and hashes the embedded files once.
func load() {
	assets = map[string]*asset{}
	loadErr = fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		sum := sha256.Sum256(body)
		a := &asset{body: body, etag: `"` + hex.EncodeToString(sum[:16]) + `"`,
			ctype: mime.TypeByExtension(path.Ext(p))}
		if a.ctype == "" {
			a.ctype = "application/octet-stream"
		}
		if strings.HasSuffix(p, ".js") {
			a.ctype = "text/javascript; charset=utf-8" // whatever the host's mime.types says
		}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(body)
		zw.Close()
		if buf.Len() < len(body) {
			a.gz = buf.Bytes()
		}
		rel := strings.TrimPrefix(p, "static/")
		if rel == "index.html" {
			assets["/"] = a
		} else {
			assets[Prefix+rel] = a
		}
		return nil
	})
}

// Handler serves the page at / and its assets under /ui/; any other path
// is 404. It is safe for concurrent use. The files are the ones embedded
// at build time; each answer carries the CSP, an ETag (304 when the
// browser has it already) and "Cache-Control: no-cache", so that a
// browser always revalidates and never runs the scripts of an older
// binary against a newer API.
func Handler() http.Handler {
	loadOnce.Do(load)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if loadErr != nil {
			http.Error(w, "the web page's files are unreadable: "+loadErr.Error(), http.StatusInternalServerError)
			return
		}
		a := assets[r.URL.Path]
		if a == nil || r.URL.Path == Prefix+"index.html" {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Set("Vary", "Accept-Encoding")
		if etagMatch(r.Header.Get("If-None-Match"), a.etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", a.ctype)
		body := a.body
		if a.gz != nil && acceptsGzip(r.Header.Get("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			body = a.gz
		}
		h.Set("Content-Length", fmt.Sprint(len(body)))
		if r.Method == http.MethodHead {
			return
		}
		w.Write(body)
	})
}

// etagMatch reports whether an If-None-Match header names etag (or is *).
func etagMatch(header, etag string) bool {
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip (a
// q of 0 refuses it).
func acceptsGzip(header string) bool {
	for t := range strings.SplitSeq(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(t), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		if q, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			v, err := strconv.ParseFloat(q, 64)
			return err == nil && v > 0
		}
		return true
	}
	return false
}
