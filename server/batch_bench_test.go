package server

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/store"
	"github.com/hodei-jobs/hodei/store/record"
)

// BenchmarkSubmitBatch measures durable batch submits of 1,000 specs through
// the real gRPC API on loopback, with tokens and TLS (every answer comes
// after the batch's bbolt commit is fsync'd), against what bbolt itself
// does in the same run: one fsync'd transaction putting 1,000 records of
// the size a stored job has, in a file opened as the store opens its own.
// Each iteration runs one of each, so both see the same machine. It reports
// batch-jobs/s, bolt-jobs/s and batch-%, the first as a share of the second;
// and, since a stored job must first be encoded (proto.Marshal, about as
// long as the transaction itself here), encode+bolt-jobs/s, the encoding of
// the 1,000 jobs plus the transaction, and the batch's share of that.
// One iteration is one job, as in the store's benchmarks: -benchtime 20000x
// runs 20 batches. The "rpc" sub-benchmarks go through gRPC with TLS; the
// "cluster" ones call the cluster's SubmitBatch in process (validation,
// encoding, the fsync'd commit, publishing), which is what the RPC adds
// the request's decoding and the network to. clients=1 submits one batch
// at a time, so that its figure is the latency of one batch back to back;
// clients=4 keeps four in flight, as several submitters do, each sending
// its next batch when its last is answered, so that one batch's validation
// and encoding run while another's commit syncs (and batches that meet in
// the store's queue share a commit). The bbolt side is always one
// transaction of 1,000 records after the other.
func BenchmarkSubmitBatch(b *testing.B) {
	const size = 1000
	bs := startBenchServer(b, true)
	defer bs.stop()
	jobs := pb.NewJobServiceClient(bs.dial(b))
	ctx := context.Background()
	req := &pb.SubmitBatchRequest{Specs: make([]*pb.JobSpec, size)}
	specs := make([]job.Spec, size)
	for i := range req.Specs {
		req.Specs[i] = benchSpec
		specs[i] = benchSpec.ToSpec()
	}
	if _, err := jobs.SubmitBatch(ctx, req); err != nil {
		b.Fatal(err) // connect and warm up before the clock starts
	}
	for _, clients := range []int{1, 4} {
		b.Run(fmt.Sprintf("rpc/clients=%d", clients), func(b *testing.B) {
			benchBatch(b, clients, func() ([]string, error) {
				resp, err := jobs.SubmitBatch(ctx, req)
				return resp.GetIds(), err
			})
		})
		b.Run(fmt.Sprintf("cluster/clients=%d", clients), func(b *testing.B) {
			benchBatch(b, clients, func() ([]string, error) {
				done, err := bs.srv.Scheduler().SubmitBatch(ctx, specs)
				ids := make([]string, len(done))
				for i, j := range done {
					ids[i] = j.ID
				}
				return ids, err
			})
		})
	}
}

// benchBatch times submit, which stores a batch of 1,000 jobs and returns
// their ids, called by clients goroutines at once, against bbolt putting
// as many records in as many transactions, one after the other. Each round
// runs both, so that they see the same machine.
func benchBatch(b *testing.B, clients int, submit func() ([]string, error)) {
	const size = 1000

	raw := openBenchBolt(b)
	// A record the size of a stored benchSpec job.
	spec := benchSpec.ToSpec()
	spec.Normalize()
	j := &job.Job{ID: "01J00000000000000000000000", Spec: spec, State: job.Pending, Attempt: 1, CreatedAt: time.Now()}
	rec, err := record.MarshalJob(j, 1)
	if err != nil {
		b.Fatal(err)
	}
	keys := make([][]byte, 0, size)
	// A round is rounds batches from each client, each client going at its
	// own pace (no client waits for another between its batches), then as
	// many bbolt transactions.
	rounds := 1
	if clients > 1 {
		rounds = 5
	}
	results := make([][][]string, clients)
	errs := make([]error, clients)
	var n int
	var tBatch, tBolt, tEncode time.Duration
	b.ResetTimer()
	for n < b.N {
		t := time.Now()
		var wg sync.WaitGroup
		for c := range clients {
			results[c] = results[c][:0]
			wg.Go(func() {
				for range rounds {
					ids, err := submit()
					if err != nil {
						errs[c] = err
						return
					}
					results[c] = append(results[c], ids)
				}
			})
		}
		wg.Wait()
		tBatch += time.Since(t)
		for c := range results {
			if errs[c] != nil {
				b.Fatal(errs[c])
			}
		}

		for _, batches := range results {
			for _, ids := range batches {
				if len(ids) != size {
					b.Fatalf("%d ids, want %d", len(ids), size)
				}
				// The store encodes every job before its transaction;
				// the records below are encoded once, so encoding is
				// timed on its own.
				t = time.Now()
				for _, id := range ids {
					j.ID = id
					if _, err := record.MarshalJob(j, 1); err != nil {
						b.Fatal(err)
					}
				}
				tEncode += time.Since(t)

				keys = keys[:0]
				for _, id := range ids {
					keys = append(keys, []byte(id+"r")) // new keys, after the last, as new jobs' are
				}
				t = time.Now()
				err = raw.Update(func(tx *bolt.Tx) error {
					bk := tx.Bucket([]byte("jobs"))
					for _, k := range keys {
						if err := bk.Put(k, rec); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				tBolt += time.Since(t)
				n += size
			}
		}
	}
	batchRate, boltRate := float64(n)/tBatch.Seconds(), float64(n)/tBolt.Seconds()
	b.ReportMetric(batchRate, "batch-jobs/s")
	b.ReportMetric(boltRate, "bolt-jobs/s")
	b.ReportMetric(100*batchRate/boltRate, "batch-%")
	// What any path that encodes each job could reach at best: the
	// encoding plus the transaction.
	b.ReportMetric(float64(n)/(tEncode+tBolt).Seconds(), "encode+bolt-jobs/s")
	b.ReportMetric(100*batchRate*(tEncode+tBolt).Seconds()/float64(n), "batch-of-encode+bolt-%")
	b.ReportMetric(float64(len(rec)), "record-bytes")
	b.ReportMetric(0, "ns/op") // the rates above are the figures
}

// openBenchBolt opens a bbolt file in a temporary dir with the options
// store.Open uses, fsync on, and a jobs bucket.
func openBenchBolt(b *testing.B) *bolt.DB {
	b.Helper()
	db, err := bolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, &bolt.Options{
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: store.DefaultInitialMmapSize,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("jobs"))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	return db
}
