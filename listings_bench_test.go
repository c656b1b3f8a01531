package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/store"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// BenchmarkListings starts the real `hodei serve` on a data dir holding
// 1,000,000 jobs as a cluster that has run for a while holds them
// (storetest.FillHistory: 10,000 pending, 10,057 finished in the last half
// hour, the rest cancelled two days ago) and times, over gRPC with TLS and
// a token as the CLI calls them:
//
//   - the default `hodei jobs ls` page: the newest 50 of the jobs not
//     finished and finished in the last hour, with the count of all of
//     them (20,057, exact) for its footer;
//   - the resolution of an id by a prefix: the first 13 characters of
//     one in lower case (one match) and its first ten (its millisecond:
//     about ten jobs, listed in the error with their names and states);
//
// and the wall time of the CLI processes `hodei jobs ls` and `hodei jobs
// get PREFIX`, start-up and TLS included. Run it by name:
//
//	go test -run '^$' -bench Listings -benchtime 1x .
func BenchmarkListings(b *testing.B) {
	const n, unfinished, recent = 1_000_000, 10_000, 10_057
	dir := b.TempDir()
	bootstrap(b, dir)
	db, err := store.Open(filepath.Join(dir, "hodei.db"), store.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	h := storetest.FillHistory(b, db, n, unfinished, recent, time.Now())
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	cmd, grpcAddr, _ := startServe(b, dir)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	jobs := dial(b, grpcAddr).Jobs()
	ctx := context.Background()
	const rounds = 200
	avg := func(f func(i int)) time.Duration {
		f(0) // warm: the pages it reads are in the page cache from then on
		start := time.Now()
		for i := range rounds {
			f(i)
		}
		return time.Since(start) / rounds
	}
	// Old jobs from the middle: the first one may be alone in its
	// millisecond.
	old := func(i int) string { return h.IDs[1+(i*7919)%(n-unfinished-recent-2)] }
	for b.Loop() {
		page := avg(func(int) {
			req := &pb.ListJobsRequest{NewestFirst: true, PageSize: 50, Count: true,
				NotFinishedBeforeUnixNano: time.Now().Add(-time.Hour).UnixNano()}
			resp, err := jobs.List(ctx, req)
			if err != nil || len(resp.GetJobs()) != 50 || resp.GetTotal() != unfinished+recent || resp.GetTotalIsLowerBound() {
				b.Fatalf("default page: %d jobs, total %d (lower bound %v), %v", len(resp.GetJobs()), resp.GetTotal(), resp.GetTotalIsLowerBound(), err)
			}
		})
		unique := avg(func(i int) {
			id := old(i)
			resp, err := jobs.Resolve(ctx, &pb.ResolveRequest{Kind: pb.IdKind_ID_KIND_JOB, Prefix: strings.ToLower(id[:13])})
			if err != nil || resp.GetId() != id {
				b.Fatalf("resolve %s: %v, %v", id, resp.GetId(), err)
			}
		})
		ambiguous := avg(func(i int) {
			prefix := old(i)[:10]
			_, err := jobs.Resolve(ctx, &pb.ResolveRequest{Kind: pb.IdKind_ID_KIND_JOB, Prefix: prefix})
			if err == nil || !strings.Contains(err.Error(), "is the start of") {
				b.Fatalf("resolve %s: %v", prefix, err)
			}
		})
		cli := func(args ...string) time.Duration {
			return avg(func(int) {
				c := cliCmd(grpcAddr, args...)
				if out, err := c.CombinedOutput(); err != nil {
					b.Fatalf("hodei %v: %v\n%s", args, err, out)
				}
			})
		}
		ls := cli("jobs", "ls")
		get := cli("jobs", "get", strings.ToLower(old(1)[:13]))
		b.ReportMetric(float64(page.Microseconds())/1000, "ls-page-ms")
		b.ReportMetric(float64(unique.Microseconds())/1000, "resolve-ms")
		b.ReportMetric(float64(ambiguous.Microseconds())/1000, "resolve-ambiguous-ms")
		b.ReportMetric(float64(ls.Microseconds())/1000, "cli-jobs-ls-ms")
		b.ReportMetric(float64(get.Microseconds())/1000, "cli-jobs-get-prefix-ms")
	}
}
