package server

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/store"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// fillPipelines stores n pipelines of three jobs each (storetest.
// NewPipeline), every job ended (cancelled) so that a listing reads their
// states from the store, not from memory. It returns the ids of the
// pipelines in creation order.
func fillPipelines(b *testing.B, db *store.DB, n int) []string {
	b.Helper()
	ctx := context.Background()
	ids := make([]string, n)
	const workers = 32
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			var ends []job.Update
			flush := func() error {
				if len(ends) == 0 {
					return nil
				}
				res, err := db.Apply(ctx, ends)
				if err != nil {
					return err
				}
				for _, err := range res {
					if err != nil {
						return err
					}
				}
				ends = ends[:0]
				return nil
			}
			for i := w; i < n; i += workers {
				p, jobs := storetest.NewPipeline(i, 3*i)
				if err := db.InsertPipeline(ctx, p, jobs); err != nil {
					errs <- err
					return
				}
				ids[i] = p.ID
				for _, j := range jobs {
					next := j.Clone()
					next.State, next.FinishedAt, next.Reason = job.Cancelled, time.Now(), "cancelled by user"
					ends = append(ends, job.Update{Expect: job.Expect{State: job.Pending, Attempt: 1}, Next: next})
				}
				if len(ends) >= 999 {
					if err := flush(); err != nil {
						errs <- err
						return
					}
				}
			}
			if err := flush(); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return ids
}

// BenchmarkListPipelines times one page of 50 pipelines, newest first, on
// a server whose store holds 100,000 pipelines (300,000 jobs, all ended):
//
//   - first: the first page through the gRPC service;
//   - deep: a page from a token halfway down;
//   - scoped: the first page for a token limited to two tenants (one
//     holding every pipeline, one none): a page per tenant, merged;
//   - rest: GET /v1/pipelines?pageSize=50 over HTTP, as the web page asks.
//
// Each page reads its 50 pipelines' 150 jobs from the store for their
// states. It reports ms/op. Run it by name:
//
//	go test -run '^$' -bench ListPipelines -benchtime 200x ./server
func BenchmarkListPipelines(b *testing.B) {
	const n = 100_000
	dir := b.TempDir()
	db, err := store.Open(filepath.Join(dir, store.DBFile), store.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	ids := fillPipelines(b, db, n)
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	s := setup(b, func(c *Config) { c.DataDir = dir })
	js := &jobService{srv: s.srv}
	ctx := context.Background()
	scoped := auth.NewContext(ctx, &auth.Identity{Name: "viewer", Role: auth.Viewer, Tenants: []string{job.DefaultTenant, "other"}})
	page := func(b *testing.B, ctx context.Context, req *pb.ListPipelinesRequest) {
		resp, err := js.ListPipelines(ctx, req)
		if err != nil || len(resp.GetPipelines()) != 50 || resp.GetNextPageToken() == "" {
			b.Fatalf("%d pipelines, next %q, %v", len(resp.GetPipelines()), resp.GetNextPageToken(), err)
		}
		if st := resp.GetPipelines()[0].GetState(); !job.PipelineState(st).Terminal() {
			b.Fatalf("pipeline state %v, want an end, read from its jobs", st)
		}
	}
	for _, c := range []struct {
		name string
		ctx  context.Context
		req  *pb.ListPipelinesRequest
	}{
		{"first", ctx, &pb.ListPipelinesRequest{PageSize: 50}},
		{"deep", ctx, &pb.ListPipelinesRequest{PageSize: 50, PageToken: ids[n/2]}},
		{"scoped", scoped, &pb.ListPipelinesRequest{PageSize: 50}},
	} {
		b.Run(fmt.Sprintf("pipelines=%d/%s", n, c.name), func(b *testing.B) {
			page(b, c.ctx, c.req)
			for b.Loop() {
				page(b, c.ctx, c.req)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
		})
	}
	b.Run(fmt.Sprintf("pipelines=%d/rest", n), func(b *testing.B) {
		tok := s.adminToken(b)
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		defer hc.CloseIdleConnections()
		get := func() {
			req, err := http.NewRequestWithContext(ctx, "GET", s.httpURL("/v1/pipelines?pageSize=50"), nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			var buf [32 << 10]byte
			size := 0
			for {
				k, err := resp.Body.Read(buf[:])
				size += k
				if err != nil {
					break
				}
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || size < 50*100 {
				b.Fatalf("GET /v1/pipelines: %s, %d bytes", resp.Status, size)
			}
		}
		get()
		for b.Loop() {
			get()
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
	})
}
