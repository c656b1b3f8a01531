package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// BenchmarkWebPageFirstLoad measures the web page's first load from a
// real `hodei serve` on loopback: the bytes of / and of every asset it
// loads (as sent: gzip where the browser accepts it), and the time until
// the page is ready (its scripts have run and it shows the login form).
// Each load is cold: a new tab with the browser's cache off. With
// Chromium (see findChromium) the browser loads the page; without it, a
// net/http client fetches / and every asset the page names, following the
// scripts' imports, and the time is that of those fetches only (mode
// http). Run it by name:
//
//	go test -run '^$' -bench WebPageFirstLoad -benchtime 20x .
func BenchmarkWebPageFirstLoad(b *testing.B) {
	cmd, _, httpAddr := startServe(b, b.TempDir())
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	base := "http://" + httpAddr
	if exe := chromiumPath(); exe != "" {
		b.Log("loading in chromium (mode chromium)")
		benchChromiumLoad(b, exe, base)
		return
	}
	b.Log("no chromium: loading with net/http (mode http)")
	benchHTTPLoad(b, base)
}

func benchChromiumLoad(b *testing.B, exe, base string) {
	alloc := browserAllocator(b, exe)
	browser, cancel := chromedp.NewContext(alloc)
	defer cancel()
	if err := chromedp.Do(browser, chromedp.Navigate("about:blank")); err != nil {
		b.Fatalf("start chromium: %v", err)
	}
	var size, files, ready float64
	var total time.Duration
	for b.Loop() {
		tab, cancelTab := chromedp.NewContext(browser)
		if _, err := chromedp.Call(tab, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: true}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		err := chromedp.Do(tab, chromedp.Navigate(base+"/"),
			chromedp.Poll[chromedp.Void]("document.querySelector('#login') && !document.querySelector('#login').hidden",
				chromedp.WithPollingInterval(time.Millisecond)))
		total += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		// What the page itself loaded (its API calls, such as /v1/whoami,
		// left out): the document and its assets, bytes as transferred.
		got, err := chromedp.Run(tab, chromedp.Poll[[]float64](`(() => {
			const ready = performance.getEntriesByName('hodei-ready');
			if (!ready.length) return null;
			const es = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
				.filter(e => !new URL(e.name).pathname.startsWith('/v1/'));
			return [es.reduce((n, e) => n + e.transferSize, 0), es.length, ready[0].startTime];
		})()`, chromedp.WithPollingInterval(time.Millisecond)))
		cancelTab()
		if err != nil {
			b.Fatal(err)
		}
		size, files = got[0], got[1]
		ready += got[2]
	}
	b.ReportMetric(size, "first-load-bytes")
	b.ReportMetric(files, "files")
	// From the start of the navigation to the first screen, as the page
	// measures it, and the same seen from outside, with the browser's
	// work for a new tab (a renderer process for the site) included.
	b.ReportMetric(ready/float64(b.N), "first-load-ms")
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "new-tab-load-ms")
}

var assetRef = regexp.MustCompile(`(?:src|href)="(/ui/[^"]+)"|(?m)^\s*import\s+(?:[^'"]*\s+from\s+)?'([^']+)'`)

func benchHTTPLoad(b *testing.B, base string) {
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	var size, files float64
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		seen := map[string]bool{"/": true}
		queue := []string{"/"}
		size, files = 0, 0
		for len(queue) > 0 {
			p := queue[0]
			queue = queue[1:]
			req, _ := http.NewRequest("GET", base+p, nil)
			req.Header.Set("Accept-Encoding", "gzip")
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("GET %s: %d", p, resp.StatusCode)
			}
			size += float64(len(body))
			files++
			plain := body
			if resp.Header.Get("Content-Encoding") == "gzip" {
				plain = gunzip(b, body)
			}
			for _, m := range assetRef.FindAllStringSubmatch(string(plain), -1) {
				ref := m[1]
				if ref == "" {
					ref = path.Join(path.Dir(p), m[2])
				}
				if !seen[ref] && strings.HasPrefix(ref, "/ui/") {
					seen[ref] = true
					queue = append(queue, ref)
				}
			}
		}
		total += time.Since(start)
	}
	b.ReportMetric(size, "first-load-bytes")
	b.ReportMetric(files, "files")
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "first-load-ms")
}

func gunzip(b *testing.B, body []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		b.Fatal(err)
	}
	return out
}
