package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// BenchmarkInsertBatch inserts batches of 10,000 jobs whose names and one
// label are shared by the batch, or distinct per job (a file of numbered
// tasks): each distinct value is a group of the batch's index entries,
// and a batch of distinct values must cost about what a shared one does.
// One iteration is one job, as in the store's other benchmarks:
//
//	go test -run '^$' -bench BenchmarkInsertBatch -benchtime 50000x ./store/
func BenchmarkInsertBatch(b *testing.B) {
	const size = 10_000
	for _, distinct := range []bool{false, true} {
		b.Run(fmt.Sprintf("distinct=%v", distinct), func(b *testing.B) {
			db := MustOpenPath(b, filepath.Join(b.TempDir(), "hodei.db"), Options{NoSync: true})
			storetest.MustPutTenant(b, db, storetest.NewTenant(benchJob(0).Spec.Tenant))
			n, jobs := 0, 0
			var elapsed time.Duration
			b.ResetTimer()
			for jobs < b.N {
				batch := make([]*job.Job, size)
				for i := range batch {
					j := benchJob(n)
					if distinct {
						j.Spec.Name = fmt.Sprintf("task-%d", n)
						j.Spec.Labels["n"] = fmt.Sprint(n)
					}
					batch[i] = j
					n++
				}
				start := time.Now()
				if err := db.Insert(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(start)
				jobs += size
			}
			b.ReportMetric(float64(jobs)/elapsed.Seconds(), "jobs/s")
		})
	}
}
