package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// mustSpool creates a spool in a temp dir and closes it after the test.
func mustSpool(tb testing.TB, limit int64) *spool {
	tb.Helper()
	sp, err := createSpool(filepath.Join(tb.TempDir(), "job-1.out"), limit)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sp.Close() })
	return sp
}

// ctxForTest returns a context that ends with the test or after a deadline
// long enough for anything a test waits for.
func ctxForTest(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// pollUntil polls cond until it holds or a deadline passes.
func pollUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			tb.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func TestSpoolRead(t *testing.T) {
	ctx := ctxForTest(t)
	sp := mustSpool(t, 0)
	if err := sp.write([]byte("hello ")); err != nil {
		t.Fatal(err)
	}

	t.Run("OK", func(t *testing.T) {
		data, eof, err := sp.Read(ctx, 0, 0)
		if string(data) != "hello " || eof || err != nil {
			t.Fatalf("Read = %q, %v, %v; want \"hello \", false, nil", data, eof, err)
		}
	})
	t.Run("Max", func(t *testing.T) {
		data, _, err := sp.Read(ctx, 1, 3)
		if string(data) != "ell" || err != nil {
			t.Fatalf("Read = %q, %v; want \"ell\"", data, err)
		}
	})
	t.Run("ErrOffset", func(t *testing.T) {
		if _, _, err := sp.Read(ctx, 7, 0); !errors.Is(err, errSpoolOffset) {
			t.Fatalf("Read past end: err = %v, want errSpoolOffset", err)
		}
	})
	t.Run("CtxDone", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, _, err := sp.Read(cctx, 6, 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("Read at end with done ctx: err = %v, want context.Canceled", err)
		}
	})
	t.Run("BlocksUntilWrite", func(t *testing.T) {
		got := make(chan string, 1)
		go func() {
			data, _, _ := sp.Read(ctx, 6, 0)
			got <- string(data)
		}()
		if err := sp.write([]byte("world")); err != nil {
			t.Fatal(err)
		}
		if s := <-got; s != "world" {
			t.Fatalf("Read = %q, want world", s)
		}
	})
	t.Run("EOF", func(t *testing.T) {
		eofc := make(chan bool, 1)
		go func() {
			_, eof, _ := sp.Read(ctx, 11, 0)
			eofc <- eof
		}()
		sp.closeWrite()
		if !<-eofc {
			t.Fatal("Read at end after closeWrite: eof = false")
		}
		data, eof, err := sp.Read(ctx, 6, 0)
		if string(data) != "world" || !eof || err != nil {
			t.Fatalf("Read of the tail = %q, %v, %v; want world, true, nil", data, eof, err)
		}
		if !sp.Closed() || sp.Size() != 11 {
			t.Fatalf("Closed, Size = %v, %d; want true, 11", sp.Closed(), sp.Size())
		}
	})
	t.Run("BelowAck", func(t *testing.T) {
		sp.Ack(100) // capped at Size
		if sp.Acked() != 11 {
			t.Fatalf("Acked = %d, want 11", sp.Acked())
		}
		sp.Ack(3) // never moves back
		data, _, err := sp.Read(ctx, 0, 0)
		if string(data) != "hello world" || err != nil || sp.Acked() != 11 {
			t.Fatalf("Read acked bytes = %q, %v (acked %d)", data, err, sp.Acked())
		}
	})
}

func TestSpoolBackpressure(t *testing.T) {
	const limit = 10
	sp := mustSpool(t, limit)
	wrote := make(chan error, 1)
	go func() { wrote <- sp.write([]byte("0123456789abcdefghijklmno")) }()

	pollUntil(t, "the writer to fill the spool", func() bool { return sp.Size() == limit })
	select {
	case err := <-wrote:
		t.Fatalf("write returned %v with the spool full", err)
	default:
	}
	sp.Ack(4)
	pollUntil(t, "room to be used", func() bool { return sp.Size() == 14 })
	sp.Ack(14)
	pollUntil(t, "room to be used", func() bool { return sp.Size() == 24 })
	sp.Ack(24)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if sp.Size() != 25 {
		t.Fatalf("Size = %d, want 25", sp.Size())
	}
	data, _, _ := sp.Read(ctxForTest(t), 0, 100)
	if string(data) != "0123456789abcdefghijklmno" {
		t.Fatalf("Read = %q", data)
	}

	t.Run("Unlimit", func(t *testing.T) {
		go func() { wrote <- sp.write(make([]byte, 100)) }()
		pollUntil(t, "the writer to block", func() bool { return sp.Size() == 34 })
		sp.unlimit()
		if err := <-wrote; err != nil || sp.Size() != 125 {
			t.Fatalf("write after unlimit = %v, Size %d; want nil, 125", err, sp.Size())
		}
	})
}

func TestSpoolClose(t *testing.T) {
	sp := mustSpool(t, 4)
	wrote := make(chan error, 1)
	go func() { wrote <- sp.write([]byte("more than four")) }()
	pollUntil(t, "the writer to block", func() bool { return sp.Size() == 4 })

	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-wrote; !errors.Is(err, errSpoolClosed) {
		t.Fatalf("blocked write after Close = %v, want errSpoolClosed", err)
	}
	if _, err := os.Stat(sp.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("spool file after Close: %v, want it removed", err)
	}
	if _, _, err := sp.Read(ctxForTest(t), 0, 0); !errors.Is(err, errSpoolClosed) {
		t.Fatalf("Read after Close = %v, want errSpoolClosed", err)
	}
	if err := sp.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestOpenSpoolForRead(t *testing.T) {
	ctx := ctxForTest(t)
	path := filepath.Join(t.TempDir(), "job-2.out")
	if err := os.WriteFile(path, []byte("left from before"), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := openSpoolForRead(path)
	if err != nil {
		t.Fatal(err)
	}
	if !sp.Closed() || sp.Size() != 16 {
		t.Fatalf("Closed, Size = %v, %d; want true, 16", sp.Closed(), sp.Size())
	}
	data, eof, err := sp.Read(ctx, 5, 0)
	if string(data) != "from before" || !eof || err != nil {
		t.Fatalf("Read = %q, %v, %v", data, eof, err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file after Close: %v, want removed", err)
	}

	t.Run("ErrNotExist", func(t *testing.T) {
		if _, err := openSpoolForRead(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("openSpoolForRead(missing) = %v, want ErrNotExist", err)
		}
	})
}

func TestEmptySpool(t *testing.T) {
	sp := emptySpool()
	data, eof, err := sp.Read(ctxForTest(t), 0, 0)
	if len(data) != 0 || !eof || err != nil || sp.Size() != 0 || sp.Path() != "" {
		t.Fatalf("Read = %q, %v, %v; want empty eof", data, eof, err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestFollowSpoolCloseFile checks which of a followed spool's files Close
// removes: one its writer reported bytes for, and one whose file is
// unknown (a writer lost without a last report, or one that could not
// write: it may have made the file), but not one whose writer finished
// without a byte, which makes no file (Close then makes no syscall for it).
func TestFollowSpoolCloseFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		wrote   int64 // the size the writer reported at its end
		unknown bool  // the writer died, or could not write
		removed bool
	}{
		{name: "Wrote", wrote: 3, removed: true},
		{name: "FileUnknown", unknown: true, removed: true},
		{name: "NothingWritten", removed: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "j-1.out")
			if err := os.WriteFile(path, []byte("abc"), 0o600); err != nil {
				t.Fatal(err)
			}
			sp := followSpool(path, nil)
			if tc.unknown {
				sp.fileUnknown()
			}
			sp.finish(tc.wrote)
			if err := sp.Close(); err != nil {
				t.Fatal(err)
			}
			_, err := os.Stat(path)
			if gone := errors.Is(err, os.ErrNotExist); gone != tc.removed {
				t.Fatalf("file removed: %v, want %v (stat: %v)", gone, tc.removed, err)
			}
		})
	}
}
