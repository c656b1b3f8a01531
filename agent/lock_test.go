package agent

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestLockDataDir(t *testing.T) {
	dir := t.TempDir()
	first, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to open files: a second open in this process is
	// refused as another process's would be.
	if _, err := lockDataDir(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	if _, err := New(Config{Server: "127.0.0.1:1", DataDir: dir, Insecure: true}); !errors.Is(err, ErrLocked) {
		t.Fatalf("New on a locked dir: %v, want ErrLocked", err)
	}
	first.Close()
	a, err := New(Config{Server: "127.0.0.1:1", DataDir: dir, Insecure: true})
	if err != nil {
		t.Fatalf("New once the lock is free: %v", err)
	}
	// Run lets go of the lock when it returns.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after Run returned: %v", err)
	}
	again.Close()
}

func TestFailureReports(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	refused := status.Error(codes.Unavailable, "connection refused")
	reset := status.Error(codes.Unavailable, "connection reset by peer")
	var f failureReports
	for i, tc := range []struct {
		at   time.Duration
		err  error
		want bool
	}{
		{0, refused, true},                       // the first
		{100 * time.Millisecond, refused, false}, // the same reason soon after
		{10 * time.Second, refused, false},
		{31 * time.Second, refused, true}, // the same reason, 30 s later
		{32 * time.Second, reset, true},   // a new reason
		{33 * time.Second, refused, true}, // and back
	} {
		if got := f.failed(t0.Add(tc.at), tc.err); got != tc.want {
			t.Errorf("failure %d at %s (%v): report %v, want %v", i+1, tc.at, tc.err, got, tc.want)
		}
	}
	if f.failures != 6 {
		t.Errorf("failures = %d, want 6", f.failures)
	}
	f.connected()
	if !f.failed(t0.Add(34*time.Second), refused) || f.failures != 1 {
		t.Errorf("after a welcome the first failure is reported, as failure 1 (got %d)", f.failures)
	}
}
