package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/store"
)

// fakeAppend is an audit store: it records each batch it is given and
// answers with fail's result (nil: success). While gate is non-nil, each
// call first waits for a value on it.
type fakeAppend struct {
	mu      sync.Mutex // guards batches and fail
	batches [][]job.AuditEntry
	fail    func(call int) error
	gate    chan struct{}
}

func (f *fakeAppend) append(_ context.Context, es []job.AuditEntry) error {
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	call := len(f.batches)
	f.batches = append(f.batches, append([]job.AuditEntry(nil), es...))
	if f.fail != nil {
		return f.fail(call)
	}
	return nil
}

// sizes returns the length of each batch given so far.
func (f *fakeAppend) sizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]int, len(f.batches))
	for i, b := range f.batches {
		out[i] = len(b)
	}
	return out
}

var auditNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func newTestAuditLog(f *fakeAppend, queueLen int) *auditLog {
	return newAuditLog(f.append, func() time.Time { return auditNow }, slog.New(slog.DiscardHandler),
		prometheus.NewRegistry(), queueLen)
}

// count returns the value of a counter of a.
func count(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 {
		t.Fatalf("gather: %d families, %v", len(mfs), err)
	}
	return mfs[0].GetMetric()[0].GetCounter().GetValue()
}

func mustRecord(t *testing.T, a *auditLog, n int) {
	t.Helper()
	for i := range n {
		if err := a.Record(context.Background(), job.AuditEntry{Target: fmt.Sprint(i)}); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
}

func equalInts(a, b []int) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestAuditLog(t *testing.T) {
	t.Run("GroupCommit", func(t *testing.T) {
		// What is queued while a batch is being stored goes in the next
		// batch, all together.
		synctest.Test(t, func(t *testing.T) {
			f := &fakeAppend{gate: make(chan struct{})}
			a := newTestAuditLog(f, 100)
			a.start()
			mustRecord(t, a, 1)
			synctest.Wait() // the writer holds the first record at the gate
			mustRecord(t, a, 50)
			close(f.gate)
			a.stop()
			if got := f.sizes(); !equalInts(got, []int{1, 50}) {
				t.Fatalf("batch sizes = %v, want [1 50]", got)
			}
			if got := count(t, a.written); got != 51 {
				t.Fatalf("written = %v, want 51", got)
			}
		})
	})
	t.Run("RetriedWhenTheStoreHeals", func(t *testing.T) {
		// A write refused by a full disk is retried as soon as the store
		// commits again, not a backoff later.
		synctest.Test(t, func(t *testing.T) {
			f := &fakeAppend{fail: func(call int) error {
				if call < 3 {
					return fmt.Errorf("commit: %w", job.ErrUnwritable)
				}
				return nil
			}}
			a := newTestAuditLog(f, 10)
			healed := make(chan struct{})
			a.healed = func() <-chan struct{} { return healed }
			a.start()
			mustRecord(t, a, 1)
			// Three tries: the first, and two on the backoff while the
			// store fails (100 ms, then 200 ms of the bubble's clock).
			began := time.Now()
			for len(f.sizes()) < 3 {
				<-time.After(10 * time.Millisecond) // the bubble's clock: the writer's timers fire as it passes
			}
			synctest.Wait()
			// The fourth would come 400 ms after the third, on the backoff.
			if got, took := len(f.sizes()), time.Since(began); got != 3 || took >= 700*time.Millisecond {
				t.Fatalf("%d tries after %s of a failing store, want 3 before the backoff's fourth at 700ms", got, took)
			}
			start := time.Now()
			close(healed)
			synctest.Wait()
			if got := len(f.sizes()); got != 4 || time.Since(start) != 0 || a.Failing() != nil {
				t.Fatalf("after the store healed: %d tries, %s later, failing %v; want the 4th at once, stored",
					got, time.Since(start), a.Failing())
			}
			a.stop()
		})
	})
	t.Run("TimeSetWhenZero", func(t *testing.T) {
		f := &fakeAppend{}
		a := newTestAuditLog(f, 10)
		given := auditNow.Add(-time.Hour)
		if err := a.Record(context.Background(), job.AuditEntry{}); err != nil {
			t.Fatal(err)
		}
		if err := a.Record(context.Background(), job.AuditEntry{Time: given}); err != nil {
			t.Fatal(err)
		}
		a.stop()
		if got := f.batches[0]; !got[0].Time.Equal(auditNow) || !got[1].Time.Equal(given) {
			t.Fatalf("times = %v, %v; want %v, %v", got[0].Time, got[1].Time, auditNow, given)
		}
	})
	t.Run("EndedContextWithRoom", func(t *testing.T) {
		// The call's client may be gone by the time it is audited.
		f := &fakeAppend{}
		a := newTestAuditLog(f, 10)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for range 5 {
			if err := a.Record(ctx, job.AuditEntry{}); err != nil {
				t.Fatalf("Record with an ended context and room = %v", err)
			}
		}
		a.stop()
		if got := f.sizes(); !equalInts(got, []int{5}) {
			t.Fatalf("batch sizes = %v, want [5]", got)
		}
	})
	t.Run("ErrInvalidTime", func(t *testing.T) {
		a := newTestAuditLog(&fakeAppend{}, 10)
		defer a.stop()
		err := a.Record(context.Background(), job.AuditEntry{Time: time.Unix(-1, 0)})
		if !errors.Is(err, job.ErrInvalid) {
			t.Fatalf("Record before 1970 = %v, want ErrInvalid", err)
		}
	})
	t.Run("FullQueueWaits", func(t *testing.T) {
		// A recorder waits for room rather than dropping its record, and
		// gives up only when its context ends.
		synctest.Test(t, func(t *testing.T) {
			f := &fakeAppend{}
			a := newTestAuditLog(f, 2)
			mustRecord(t, a, 2)
			recorded := make(chan error, 1)
			go func() { recorded <- a.Record(context.Background(), job.AuditEntry{Target: "third"}) }()
			synctest.Wait()
			select {
			case err := <-recorded:
				t.Fatalf("Record on a full queue returned %v without waiting", err)
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := a.Record(ctx, job.AuditEntry{}); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Record with an ending context = %v, want DeadlineExceeded", err)
			}
			a.start() // room appears: the waiting record goes in
			if err := <-recorded; err != nil {
				t.Fatal(err)
			}
			a.stop()
			if n := count(t, a.written); n != 3 {
				t.Fatalf("written = %v, want 3", n)
			}
		})
	})
	t.Run("RetriesFailedWrite", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &fakeAppend{fail: func(call int) error {
				if call < 3 {
					return errors.New("disk full")
				}
				return nil
			}}
			a := newTestAuditLog(f, 10)
			a.start()
			mustRecord(t, a, 4)
			<-time.After(time.Minute) // fake time: the retries' waits pass
			synctest.Wait()
			a.stop()
			if got := count(t, a.written); got != 4 || count(t, a.lost) != 0 {
				t.Fatalf("written %v, lost %v; want 4, 0 (batches %v)", got, count(t, a.lost), f.sizes())
			}
		})
	})
	t.Run("StopLosesWhatCannotBeStored", func(t *testing.T) {
		// A disk that never recovers: stop gives up after one more attempt
		// and counts the records lost (they are logged).
		synctest.Test(t, func(t *testing.T) {
			f := &fakeAppend{fail: func(int) error { return errors.New("disk gone") }}
			a := newTestAuditLog(f, 10)
			a.start()
			mustRecord(t, a, 3)
			synctest.Wait() // the writer waits to retry
			a.stop()
			if got := count(t, a.lost); got != 3 {
				t.Fatalf("lost = %v, want 3", got)
			}
		})
	})
	t.Run("StopFlushesQueueWhenNeverStarted", func(t *testing.T) {
		f := &fakeAppend{}
		a := newTestAuditLog(f, 10)
		mustRecord(t, a, 3)
		a.stop()
		a.stop()
		if got := f.sizes(); !equalInts(got, []int{3}) {
			t.Fatalf("batch sizes = %v, want [3]", got)
		}
	})
	t.Run("ErrClosedAfterStop", func(t *testing.T) {
		a := newTestAuditLog(&fakeAppend{}, 10)
		a.start()
		a.stop()
		a.start() // no effect
		if err := a.Record(context.Background(), job.AuditEntry{}); !errors.Is(err, job.ErrClosed) {
			t.Fatalf("Record after stop = %v, want ErrClosed", err)
		}
	})
}

// auditRecord is a full record for the server tests.
func auditRecord(at time.Time, target string) job.AuditEntry {
	return job.AuditEntry{
		Time: at, TokenID: "jti-1", TokenName: "ci", Role: "submitter", Scope: []string{"team-a"},
		Tenant: "team-a", Action: "/hodei.v1.JobService/Cancel", Target: target,
		Result: "PermissionDenied", Message: "role submitter may not cancel", Peer: "127.0.0.1:40000",
	}
}

// waitAudit polls ListAudit until it returns want records or a deadline:
// the writer stores records a moment after audit returns.
func (s *sut) waitAudit(t *testing.T, want int) []*pb.AuditRecord {
	t.Helper()
	return s.waitAuditFor(t, fmt.Sprintf("%d records", want), func(rs []*pb.AuditRecord) bool { return len(rs) == want })
}

// waitAuditFor polls ListAudit until cond holds for its records or a
// deadline.
func (s *sut) waitAuditFor(t *testing.T, what string, cond func([]*pb.AuditRecord) bool) []*pb.AuditRecord {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := s.admin.ListAudit(context.Background(), &pb.ListAuditRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if cond(resp.GetRecords()) {
			return resp.GetRecords()
		}
		if time.Now().After(deadline) {
			t.Fatalf("ListAudit has %d records, want %s", len(resp.GetRecords()), what)
		}
		<-tick.C
	}
}

func TestAuditServer(t *testing.T) {
	t.Run("ListAudit", func(t *testing.T) {
		s := setup(t)
		ctx := context.Background()
		now := time.Now().UTC().Truncate(time.Second)
		want := auditRecord(now, "01JAAAAAAAAAAAAAAAAAAAAAA1")
		s.srv.audit(ctx, want)
		s.srv.audit(ctx, job.AuditEntry{Time: now.Add(time.Second), TokenName: "root", Role: "admin",
			Action: "/hodei.v1.AdminService/SetTenant", Target: "team-a", Result: job.AuditOK})
		got := s.waitAudit(t, 2)
		if got[0].GetTokenName() != "root" || got[1].GetTokenName() != "ci" {
			t.Fatalf("order = %s, %s; want newest (root) first", got[0].GetTokenName(), got[1].GetTokenName())
		}
		if e := got[1].ToAuditEntry(); !reflect.DeepEqual(e, want) {
			t.Fatalf("record = %+v\nwant %+v", e, want)
		}
		for _, tc := range []struct {
			name string
			req  *pb.ListAuditRequest
			want int
		}{
			{"Actor", &pb.ListAuditRequest{Actor: "ci"}, 1},
			{"Action", &pb.ListAuditRequest{Action: "settenant"}, 1},
			{"Since", &pb.ListAuditRequest{SinceUnixNano: now.Add(time.Second).UnixNano()}, 1},
			{"Limit", &pb.ListAuditRequest{Limit: 1}, 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, err := s.admin.ListAudit(ctx, tc.req)
				if err != nil || len(resp.GetRecords()) != tc.want {
					t.Fatalf("ListAudit(%v) = %d records, %v; want %d", tc.req, len(resp.GetRecords()), err, tc.want)
				}
			})
		}
		t.Run("InvalidArgument", func(t *testing.T) {
			_, err := s.admin.ListAudit(ctx, &pb.ListAuditRequest{Limit: job.MaxAuditLimit + 1})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "limit") {
				t.Fatalf("ListAudit with limit %d = %v, want InvalidArgument naming limit", job.MaxAuditLimit+1, err)
			}
		})
		t.Run("Metrics", func(t *testing.T) {
			// The counter moves just after the commit that ListAudit saw.
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(s.httpGet(t, "/metrics"), "hodei_audit_records_total 2\n") {
				if time.Now().After(deadline) {
					t.Fatalf("/metrics has no hodei_audit_records_total 2")
				}
				runtime.Gosched()
			}
		})
	})
	t.Run("ShutdownFlushes", func(t *testing.T) {
		// Every record accepted before the server stops is in the file
		// after it stopped, whether Serve ran or not.
		for _, serve := range []bool{true, false} {
			t.Run(fmt.Sprintf("serve=%v", serve), func(t *testing.T) {
				dir := t.TempDir()
				srv, err := New(context.Background(), Config{DataDir: dir, GRPCAddr: "127.0.0.1:0", HTTPAddr: "-"})
				if err != nil {
					t.Fatal(err)
				}
				const n = 2000
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				if serve {
					go func() { done <- srv.Serve(ctx) }()
				}
				now := time.Now()
				for i := range n {
					srv.audit(context.Background(), auditRecord(now.Add(time.Duration(i)), fmt.Sprint(i)))
				}
				cancel()
				if serve {
					if err := <-done; err != nil {
						t.Fatal(err)
					}
				} else if err := srv.Close(); err != nil {
					t.Fatal(err)
				}
				db, err := store.Open(filepath.Join(dir, "hodei.db"), store.Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				got, err := db.ListAudit(context.Background(), job.AuditFilter{Limit: job.MaxAuditLimit})
				if err != nil || len(got) != n {
					t.Fatalf("after shutdown: %d records, %v; want %d", len(got), err, n)
				}
			})
		}
	})
	t.Run("Retention", func(t *testing.T) {
		var offset atomic.Int64 // how far the fake clock is ahead of the real one
		s := setup(t, func(c *Config) {
			c.AuditRetention = time.Hour
			c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		})
		now := time.Now()
		s.srv.audit(context.Background(), auditRecord(now.Add(-2*time.Hour), "old"))
		s.srv.audit(context.Background(), auditRecord(now.Add(-30*time.Minute), "recent"))
		// Records are stored in order: once recent is listed, old was
		// stored too (and maybe already swept by the server's own round).
		s.waitAuditFor(t, "recent", func(rs []*pb.AuditRecord) bool {
			return len(rs) > 0 && rs[0].GetTarget() == "recent"
		})
		s.srv.sweep(context.Background())
		if got := s.waitAudit(t, 1); got[0].GetTarget() != "recent" {
			t.Fatalf("kept %q, want recent", got[0].GetTarget())
		}
		offset.Store(int64(time.Hour))
		s.srv.sweep(context.Background())
		s.waitAudit(t, 0)
	})
}

// BenchmarkAuditWriter measures the audit writer on a real, fsync'd store:
// 64 goroutines record concurrently, b.N records in all (one op is one
// record), and the clock stops when stop has stored every one.
func BenchmarkAuditWriter(b *testing.B) {
	const recorders = 64
	db, err := store.Open(filepath.Join(b.TempDir(), "hodei.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	e := auditRecord(time.Now(), "01JAAAAAAAAAAAAAAAAAAAAAA1")
	a := newAuditLog(db.AppendAudit, time.Now, slog.New(slog.DiscardHandler), nil, auditQueueLen)
	a.start()
	var next atomic.Int64 // records handed out to the recorders
	var wg sync.WaitGroup
	b.ResetTimer()
	for range recorders {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := a.Record(context.Background(), e); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	a.stop()
	b.StopTimer()
	if written := count(b, a.written); written != float64(b.N) {
		b.Fatalf("stored %v records, want %d", written, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// TestAuditRefusedTokenCreate checks that a refused token create is
// audited with what was asked (role and name), not an empty " ()".
func TestAuditRefusedTokenCreate(t *testing.T) {
	s := setup(t)
	_, err := s.admin.CreateToken(context.Background(), &pb.CreateTokenRequest{Role: "bogus", Name: "ci-bot"})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("create a bogus token: %v", err)
	}
	recs := s.waitAuditFor(t, "the refused CreateToken", func(rs []*pb.AuditRecord) bool {
		for _, r := range rs {
			if strings.HasSuffix(r.GetAction(), "CreateToken") && r.GetResult() != "OK" {
				return true
			}
		}
		return false
	})
	for _, r := range recs {
		if strings.HasSuffix(r.GetAction(), "CreateToken") && r.GetResult() != "OK" && r.GetTarget() != "bogus token ci-bot" {
			t.Errorf("refused create audited with target %q, want %q", r.GetTarget(), "bogus token ci-bot")
		}
	}
	if got, _ := auditTarget(&pb.CreateTokenRequest{Role: "viewer", Name: "x"}, &pb.CreateTokenResponse{Info: &pb.TokenInfo{Id: "T1", Name: "x"}}); got != "T1 (x)" {
		t.Errorf("created: target %q, want T1 (x)", got)
	}
}
