package server

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/store"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// BenchmarkRESTListJobs times GET /v1/jobs pages of 50 through the REST
// gateway (HTTP, JSON, the in-process gRPC call with its interceptors) on
// a server whose store holds 1,000,000 jobs as a cluster that has run for
// a while holds them (storetest.FillHistory: 10,000 pending, 10,057
// finished in the last half hour, the rest cancelled two days ago):
//
//   - oldest: ?pageSize=50, the first page in submission order;
//   - newest: the page the web page and `hodei jobs ls` show, newest first,
//     unfinished and finished in the last hour, with the count of all.
//
// It reports each call's p50 and p99 in ms. Run it by name:
//
//	go test -run '^$' -bench RESTListJobs -benchtime 2000x ./server
func BenchmarkRESTListJobs(b *testing.B) {
	const n, unfinished, recent = 1_000_000, 10_000, 10_057
	dir := b.TempDir()
	db, err := store.Open(filepath.Join(dir, store.DBFile), store.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	storetest.FillHistory(b, db, n, unfinished, recent, time.Now())
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	s := setup(b, func(c *Config) { c.DataDir = dir })
	tok := s.adminToken(b)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer hc.CloseIdleConnections()
	get := func(b *testing.B, path string) {
		req, err := http.NewRequestWithContext(context.Background(), "GET", s.httpURL(path), nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 32<<10)
		size := 0
		for {
			k, err := resp.Body.Read(buf)
			size += k
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || size < 50*100 {
			b.Fatalf("GET %s: %s, %d bytes", path, resp.Status, size)
		}
	}
	for _, c := range []struct{ name, path string }{
		{"oldest", "/v1/jobs?pageSize=50"},
		{"newest", fmt.Sprintf("/v1/jobs?pageSize=50&newestFirst=true&count=true&notFinishedBeforeUnixNano=%d", time.Now().Add(-time.Hour).UnixNano())},
	} {
		b.Run(c.name, func(b *testing.B) {
			get(b, c.path) // warm: the pages it reads are in the page cache from then on
			var lat []time.Duration
			for b.Loop() {
				t := time.Now()
				get(b, c.path)
				lat = append(lat, time.Since(t))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkSSEDelivery times how soon a change reaches a Go client of GET
// /v1/events (SSE over the REST gateway and the gRPC Watch): each
// iteration submits a job through gRPC and waits for its event. It
// reports the delay from the submit's acknowledgement (its commit is on
// disk, and the event is published right after the commit) to the
// event's receipt (0 when the event came first), p50 and p99, and the
// submit's own latency for scale. Run it by name:
//
//	go test -run '^$' -bench SSEDelivery -benchtime 2000x ./server
func BenchmarkSSEDelivery(b *testing.B) {
	s := setup(b)
	c := s.openSSE(b, s.adminToken(b), "/v1/events?tenant=default", "")
	ctx := context.Background()
	var delivery, submit []time.Duration
	for b.Loop() {
		start := time.Now()
		resp, err := s.jobs.Submit(ctx, &pb.SubmitRequest{Spec: &pb.JobSpec{Command: []string{"true"}}})
		if err != nil {
			b.Fatal(err)
		}
		acked := time.Now()
		ev, ok := c.next(b)
		got := time.Now()
		if !ok || ev.event != "job" || !strings.Contains(ev.data, resp.GetId()) {
			b.Fatalf("event %v, want job %s", ev, resp.GetId())
		}
		submit = append(submit, acked.Sub(start))
		delivery = append(delivery, max(0, got.Sub(acked)))
	}
	slices.Sort(delivery)
	slices.Sort(submit)
	b.ReportMetric(float64(delivery[len(delivery)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(delivery[len(delivery)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(submit[len(submit)*99/100].Microseconds())/1000, "submit-p99-ms")
}
