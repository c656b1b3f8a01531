package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestFinishedIsWhenTheJobEnded: a job that ends while its agent cannot
// reach the server is reported after the server is back; its finished time
// is when it ended on the agent, not when the server heard of it.
func TestFinishedIsWhenTheJobEnded(t *testing.T) {
	r, tmp := startRestartable(t), jobDir(t)
	addr := r.addr
	id := strings.TrimSpace(mustRun(t, addr, "submit", "--script", fmt.Sprintf(
		"echo go > %[1]s/started; while [ ! -e %[1]s/release ]; do sleep 0.05; done; date +%%s%%N > %[1]s/end", tmp)))
	waitFile(t, filepath.Join(tmp, "started"), 30*time.Second)

	r.srv.kill()
	if err := os.WriteFile(filepath.Join(tmp, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	end := time.Unix(0, int64(atoi(t, waitFile(t, filepath.Join(tmp, "end"), 30*time.Second))))
	restarted := time.Now() // the server cannot hear of the end before this
	r.srv = startServer(t, r.dataDir, r.args...)
	j := waitJob(t, dial(t, addr).Jobs(), id, 30*time.Second)
	finished := time.Unix(0, j.GetFinishedUnixNano())
	if j.GetState() != pb.JobState_JOB_STATE_COMPLETED || finished.Before(end) || !finished.Before(restarted) {
		t.Fatalf("job %s finished at %s; want COMPLETED between its end %s and the server's restart %s",
			j.GetState(), finished.Format(time.RFC3339Nano), end.Format(time.RFC3339Nano), restarted.Format(time.RFC3339Nano))
	}
}
