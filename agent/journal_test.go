package agent

import (
	"os"
	"path/filepath"
	"testing"

	pb "github.com/hodei-jobs/hodei/proto"
)

func TestJournalKeepsUndeliveredResults(t *testing.T) {
	dir := t.TempDir()
	j, err := openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	res := func(id string, attempt int32) *pb.JobFinished {
		return &pb.JobFinished{JobId: id, Attempt: attempt, Outcome: pb.Outcome_OUTCOME_EXITED, ExitCode: attempt, LogSize: 5}
	}
	for _, r := range []*pb.JobFinished{res("A", 1), res("B", 1), res("B", 2)} {
		if err := j.save(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.remove(ref{"B", 1}); err != nil {
		t.Fatal(err)
	}
	if n := j.undelivered(); n != 2 {
		t.Fatalf("undelivered = %d, want 2 (the heartbeat's backlog)", n)
	}
	os.WriteFile(j.spoolPath(ref{"A", 1}, ".out"), []byte("hello"), 0o600)
	os.WriteFile(j.spoolPath(ref{"C", 1}, ".out"), []byte("lost"), 0o600) // no result: died with the agent
	j.close()
	// A torn record at the end (the agent died mid-write) is ignored.
	f, _ := os.OpenFile(filepath.Join(dir, "journal.log"), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{recResult, 40, 1, 2})
	f.Close()

	j, err = openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	tasks, err := j.recover(nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[ref]*task{}
	for _, tk := range tasks {
		got[tk.ref] = tk
	}
	if len(got) != 2 || got[ref{"A", 1}] == nil || got[ref{"B", 2}] == nil {
		t.Fatalf("recovered %v, want A/1 and B/2", got)
	}
	if a := got[ref{"A", 1}]; a.out.Size() != 5 || a.errs.Size() != 0 || a.outcome().GetExitCode() != 1 {
		t.Fatalf("A/1: output %d bytes, result %v", a.out.Size(), a.outcome())
	}
	// Its output is backlog until the server acknowledges it.
	a := got[ref{"A", 1}]
	if n := a.unacked(); n != 5 {
		t.Fatalf("A/1 unacked = %d, want 5", n)
	}
	a.ack(pb.LogStream_LOG_STREAM_OUTPUT, 3)
	if n := a.unacked(); n != 2 {
		t.Fatalf("A/1 unacked after an ack of 3 = %d, want 2", n)
	}
	if n := j.undelivered(); n != 2 {
		t.Fatalf("undelivered after a restart = %d, want 2", n)
	}
	if _, err := os.Stat(j.spoolPath(ref{"C", 1}, ".out")); !os.IsNotExist(err) {
		t.Fatalf("spool of a lost attempt was kept: %v", err)
	}
}

func TestJournalCompacts(t *testing.T) {
	j, err := openJournal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	for i := range 3000 {
		r := &pb.JobFinished{JobId: "J", Attempt: int32(i + 1)}
		if err := j.save(r); err != nil {
			t.Fatal(err)
		}
		if err := j.remove(ref{"J", i + 1}); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(j.path)
	if err != nil || fi.Size() > 64<<10 {
		t.Fatalf("journal is %d bytes after 3000 delivered results (%v); want it compacted", fi.Size(), err)
	}
}

// TestJournalRemoveFailedWrite checks that a delivered result leaves memory
// even when its delivered record cannot be written; the file still has it,
// so an agent restarted before the next compaction reports it again (the
// server answers that as stale).
func TestJournalRemoveFailedWrite(t *testing.T) {
	dir := t.TempDir()
	j, err := openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"A", "B"} {
		if err := j.save(&pb.JobFinished{JobId: id, Attempt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	f := j.f
	if j.f, err = os.Open(j.path); err != nil { // read-only: writes fail
		t.Fatal(err)
	}
	f.Close()
	if err := j.remove(ref{"A", 1}); err == nil {
		t.Fatal("remove with an unwritable journal: err = nil, want the write error")
	}
	if _, ok := j.pending[ref{"A", 1}]; ok || len(j.pending) != 1 {
		t.Fatalf("pending after remove = %v, want only B/1", j.pending)
	}
	j.close()

	j, err = openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	if len(j.pending) != 2 {
		t.Fatalf("reopened journal holds %d results, want A/1 again and B/1", len(j.pending))
	}
}
