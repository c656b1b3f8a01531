package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// v1File is what a schema-1 test file holds, as the domain sees it.
type v1File struct {
	jobs      []*job.Job
	pipelines []*job.Pipeline
	workers   []*job.Worker
	tenants   []*job.Tenant
	tokens    []*job.Token
	agents    []*job.AgentBinding
}

// newV1File returns records with every field set, in the precision schema 1
// kept (durations in milliseconds).
func newV1File() v1File {
	full := storetest.FullJob(1)
	full.Version = 3
	full.Spec.Tenant = "team-a"
	full.Spec.DependsOn = []string{storetest.ID(2)}
	full.Spec.Pipeline, full.Spec.Step, full.Spec.ContinueOnFailure = "01P", "build", true
	full.Spec.Array, full.Spec.ArrayIndex, full.Spec.ArrayLimit = "01A", 4, 2
	full.Spec.Preemptible = true
	full.State, full.Attempt, full.Stop, full.Preemptions, full.DeadlineMissed = job.Failed, 2, job.StopRequeue, 1, true
	pending := storetest.NewJob(2)
	pending.Version = 1
	running := storetest.NewJob(3)
	running.Version, running.State, running.Worker, running.Spec.Tenant = 2, job.Running, "w-1", "team-a"
	teamA := &job.Tenant{Name: "team-a", Weight: 2.5, MaxQueued: 10, MaxRunning: job.Resources{CPUMillis: 4000, MemoryMiB: 8192, Slots: 4},
		Burst: 1.5, BurstFor: 90 * time.Second, Cooldown: 10 * time.Minute, Preemptible: true, RunAs: "nobody",
		CreatedAt: storetest.T0, UpdatedAt: storetest.T0.Add(time.Hour)}
	def := storetest.NewTenant(job.DefaultTenant)
	return v1File{
		jobs: []*job.Job{full, pending, running},
		pipelines: []*job.Pipeline{{ID: "01P", Name: "ci", Tenant: "team-a", CreatedAt: storetest.T0, Cancelled: true,
			Steps: []job.PipelineStep{
				{Name: "build", Jobs: []string{storetest.ID(1)}},
				{Name: "test", Needs: []string{"build"}, ContinueOnFailure: true, Jobs: []string{storetest.ID(2), storetest.ID(3)}},
			}}},
		workers: []*job.Worker{
			{ID: "w-1", Name: "one", Hostname: "h1", Labels: map[string]string{"gpu": "true"},
				Capacity: job.Resources{CPUMillis: 8000, MemoryMiB: 16384, Slots: 8}, Version: "1.2.3", Drained: true},
			{ID: "w-2", Hostname: "h2", Capacity: job.Resources{Slots: 1}},
		},
		tenants: []*job.Tenant{def, teamA},
		tokens: []*job.Token{{ID: "01T", Name: "ci", Role: "submitter", Tenants: []string{"team-a"}, CreatedBy: "bootstrap",
			CreatedAt: storetest.T0, ExpiresAt: storetest.T0.Add(24 * time.Hour), LastUsed: storetest.T0.Add(time.Minute),
			RevokedAt: storetest.T0.Add(time.Hour)}},
		agents: []*job.AgentBinding{{WorkerID: "w-1", Serial: "0a1b", TokenID: "01T", Hostname: "h1",
			JoinedAt: storetest.T0, RevokedAt: storetest.T0.Add(time.Hour)}},
	}
}

// writeV1File writes f at path as hodei wrote schema 1: the API's messages,
// and the job counts by tenant.
func writeV1File(t *testing.T, path string, f v1File) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, bdb.Close()) }()
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		require.NoError(t, err)
		return b
	}
	require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		put := func(bucket []byte, key string, v []byte) {
			require.NoError(t, tx.Bucket(bucket).Put([]byte(key), v))
		}
		put(bucketMeta, string(schemaKey), binary.BigEndian.AppendUint64(nil, 1))
		for _, j := range f.jobs {
			enc, err := hodeipb.MarshalJob(j, j.Version)
			require.NoError(t, err)
			put(bucketJobs, j.ID, enc)
		}
		for _, p := range f.pipelines {
			enc, err := hodeipb.MarshalPipeline(p)
			require.NoError(t, err)
			put(bucketPipelines, p.ID, enc)
		}
		for _, w := range f.workers {
			put(bucketWorkers, w.ID, marshal(hodeipb.FromWorker(w)))
		}
		for _, tn := range f.tenants {
			put(bucketTenants, tn.Name, marshal(hodeipb.FromTenant(tn)))
		}
		for _, tk := range f.tokens {
			put(bucketTokens, tk.ID, marshal(hodeipb.FromToken(tk)))
		}
		for _, a := range f.agents {
			put(bucketAgents, a.WorkerID, marshal(hodeipb.FromAgentBinding(a)))
		}
		counts := make(map[string]uint64)
		for _, j := range f.jobs {
			if !j.State.Terminal() {
				counts[j.Spec.Tenant]++
			}
		}
		for name, n := range counts {
			put(bucketTenantJobs, name, binary.BigEndian.AppendUint64(nil, n))
		}
		return nil
	}))
}

// readSchema returns the schema version of the closed file at path.
func readSchema(t *testing.T, path string) uint64 {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer func() { require.NoError(t, bdb.Close()) }()
	var v []byte
	require.NoError(t, bdb.View(func(tx *bolt.Tx) error {
		v = bytes.Clone(tx.Bucket(bucketMeta).Get(schemaKey))
		return nil
	}))
	require.Len(t, v, 8)
	return binary.BigEndian.Uint64(v)
}

// setMeta writes a new file at path with only meta[schemaKey] = v (none
// when v is nil) and the records put adds.
func setMeta(t *testing.T, path string, v []byte, put func(tx *bolt.Tx) error) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if v != nil {
			if err := meta.Put(schemaKey, v); err != nil {
				return err
			}
		}
		if put != nil {
			return put(tx)
		}
		return nil
	}))
	require.NoError(t, bdb.Close())
}

func TestSchema(t *testing.T) {
	t.Run("MigratesV1", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "hodei.db")
		want := newV1File()
		writeV1File(t, path, want)
		var logs bytes.Buffer
		db := MustOpenPath(t, path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		require.Contains(t, logs.String(), "store migrated")
		require.Contains(t, logs.String(), "from_schema=1 to_schema=4 jobs=3 pipelines=1 workers=2 tenants=2 tokens=1 agents=1")

		ctx := t.Context()
		var jobs []*job.Job
		require.NoError(t, db.Scan(ctx, func(j *job.Job) error { jobs = append(jobs, j); return nil }))
		require.Equal(t, want.jobs, jobs)
		pipelines, err := db.Pipelines(ctx)
		require.NoError(t, err)
		require.Equal(t, want.pipelines, pipelines)
		workers, err := db.Workers(ctx)
		require.NoError(t, err)
		require.Equal(t, want.workers, workers)
		tenants, err := db.Tenants(ctx)
		require.NoError(t, err)
		require.Equal(t, want.tenants, tenants)
		tokens, err := db.Tokens(ctx)
		require.NoError(t, err)
		require.Equal(t, want.tokens, tokens)
		agents, err := db.AgentBindings(ctx)
		require.NoError(t, err)
		require.Equal(t, want.agents, agents)

		// Writes go on from the migrated versions, on the new records.
		next := storetest.MustApply(t, db, jobs[2], func(j *job.Job) { j.State = job.Completed; j.FinishedAt = storetest.T0 })
		require.Equal(t, uint64(3), next.Version)
		require.Equal(t, next, storetest.MustGet(t, db, next.ID))
		require.NoError(t, db.Close())

		require.Equal(t, uint64(SchemaVersion), readSchema(t, path))
		logs.Reset()
		db = MustOpenPath(t, path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		require.NotContains(t, logs.String(), "store migrated", "a migrated file is migrated once")
		require.Equal(t, next, storetest.MustGet(t, db, next.ID))
	})
	t.Run("MigratesV2Indexes", func(t *testing.T) {
		// A schema-2 file kept a key per index entry, in other buckets:
		// they are dropped and the chunked indexes built from the jobs.
		path := filepath.Join(t.TempDir(), "hodei.db")
		db, err := Open(path, Options{NoSync: true})
		require.NoError(t, err)
		insertN(t, db, 1, 200, nil)
		require.NoError(t, db.Close())
		bdb, err := bolt.Open(path, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
			for k := range numIndexes {
				if err := tx.DeleteBucket(indexBuckets[k]); err != nil {
					return err
				}
			}
			for _, name := range oldIndexBuckets {
				b, err := tx.CreateBucket(name)
				if err != nil {
					return err
				}
				if err := b.Put([]byte("\x011"+storetest.ID(1)), nil); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(schemaKey, binary.BigEndian.AppendUint64(nil, 2))
		}))
		require.NoError(t, bdb.Close())

		var logs bytes.Buffer
		db = MustOpenPath(t, path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		require.Contains(t, logs.String(), "from_schema=2 to_schema=4 records=unchanged indexes=rebuilt")
		require.Contains(t, logs.String(), "job indexes built")
		require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error {
			for _, name := range oldIndexBuckets {
				require.Nil(t, tx.Bucket(name), "bucket %s", name)
			}
			return nil
		}))
		require.Equal(t, []string{storetest.ID(7)}, listIDs(t, db, job.Filter{Name: "job-7"}))
		require.Len(t, listIDs(t, db, job.Filter{State: job.Pending, Limit: 1000}), 200)
		require.NoError(t, db.Close())
		require.Equal(t, uint64(SchemaVersion), readSchema(t, path))
	})
	t.Run("MigratesV3FinishedIndex", func(t *testing.T) {
		// A schema-3 file has no index of finish times: Open builds it
		// from the jobs, and a window of the last hour finds them.
		path := filepath.Join(t.TempDir(), "hodei.db")
		db, err := Open(path, Options{NoSync: true})
		require.NoError(t, err)
		insertN(t, db, 1, 20, nil)
		for n := 1; n <= 5; n++ {
			storetest.Finish(t, db, storetest.NewJob(n), job.Completed, storetest.T0.Add(time.Duration(n)*time.Minute))
		}
		require.NoError(t, db.Close())
		bdb, err := bolt.Open(path, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
			if err := tx.DeleteBucket(indexBuckets[indexFinished]); err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Put(schemaKey, binary.BigEndian.AppendUint64(nil, 3))
		}))
		require.NoError(t, bdb.Close())

		var logs bytes.Buffer
		db = MustOpenPath(t, path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		require.Contains(t, logs.String(), "from_schema=3 to_schema=4 records=unchanged indexes=rebuilt")
		require.Contains(t, logs.String(), "index_finished")
		got := listIDs(t, db, job.Filter{Finished: true, NotFinishedBefore: storetest.T0.Add(3 * time.Minute), Desc: true})
		require.Equal(t, []string{storetest.ID(5), storetest.ID(4), storetest.ID(3)}, got)
		require.NoError(t, db.Close())
		require.Equal(t, uint64(SchemaVersion), readSchema(t, path))
	})
	t.Run("ManyJobs", func(t *testing.T) {
		// The migration works in chunks: every job is rewritten once,
		// whether the last chunk is full or not.
		for _, n := range []int{2 * migrateChunk, 2*migrateChunk + 1} {
			path := filepath.Join(t.TempDir(), "hodei.db")
			var f v1File
			for i := 1; i <= n; i++ {
				j := storetest.NewJob(i)
				j.Version = uint64(i)
				f.jobs = append(f.jobs, j)
			}
			writeV1File(t, path, f)
			var logs bytes.Buffer
			db := MustOpenPath(t, path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			require.Contains(t, logs.String(), fmt.Sprintf(" jobs=%d ", n))
			i := 0
			require.NoError(t, db.Scan(t.Context(), func(j *job.Job) error {
				require.Equal(t, f.jobs[i], j)
				i++
				return nil
			}))
			require.Equal(t, n, i)
		}
	})
	t.Run("MigrationFailsWhole", func(t *testing.T) {
		// A value that does not decode fails Open, names the record, and
		// leaves the file as it was.
		path := filepath.Join(t.TempDir(), "hodei.db")
		f := newV1File()
		writeV1File(t, path, f)
		bdb, err := bolt.Open(path, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketTenants).Put([]byte("broken"), []byte{0xff})
		}))
		require.NoError(t, bdb.Close())
		_, err = Open(path, Options{})
		require.ErrorContains(t, err, `migrate schema 1 to 4 (the file is left as it was): tenants: "broken": decode tenant`)
		require.Equal(t, uint64(1), readSchema(t, path))
		require.NoError(t, CheckFile(path))
	})
	t.Run("NewFile", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "hodei.db")
		var logs bytes.Buffer
		MustOpenPath(t, path, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}).Close()
		require.NotContains(t, logs.String(), "store migrated")
		require.Equal(t, uint64(SchemaVersion), readSchema(t, path))
	})
	refused := []struct {
		name string
		v    []byte
		put  func(tx *bolt.Tx) error
		msg  string
	}{
		{"Newer", binary.BigEndian.AppendUint64(nil, 99), nil,
			"unsupported database schema: the file has schema version 99 and this hodei knows up to 4: " +
				"run a hodei that knows schema 99, or restore a snapshot taken by this version"},
		{"Garbage", []byte("v2"), nil,
			"the schema version in the meta bucket is 2 bytes (7632), want 8: the file is damaged or not a hodei database"},
		{"Zero", make([]byte, 8), nil, "the file has schema version 0, which no hodei writes"},
		{"RecordsWithoutVersion", nil, func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketJobs)
			if err != nil {
				return err
			}
			return b.Put([]byte(storetest.ID(1)), []byte{1})
		}, "the file holds jobs but no schema version in its meta bucket"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "hodei.db")
			setMeta(t, path, tc.v, tc.put)
			_, err := Open(path, Options{})
			require.ErrorIs(t, err, ErrSchema)
			require.ErrorContains(t, err, tc.msg)
			require.ErrorContains(t, err, path)
			// The file is not changed: a newer hodei still reads it.
			bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
			require.NoError(t, err)
			require.NoError(t, bdb.View(func(tx *bolt.Tx) error {
				require.Equal(t, tc.v, tx.Bucket(bucketMeta).Get(schemaKey))
				require.Nil(t, tx.Bucket(bucketTenants), "no bucket created")
				return nil
			}))
			require.NoError(t, bdb.Close())
		})
	}
}
