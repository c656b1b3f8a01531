package cli

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// TestRunExitCode runs a job against the fake server, which ends it as
// each case says: run exits with the job's code, 128+N for a signal N.
func TestRunExitCode(t *testing.T) {
	const id = "01J00000000000000000000001" // the fake's Submit answer
	failed := hodeipb.JobState_JOB_STATE_FAILED
	for _, tc := range []struct {
		name       string
		job        *hodeipb.Job
		code       int
		wantStderr string
	}{
		{"Completed", &hodeipb.Job{State: hodeipb.JobState_JOB_STATE_COMPLETED}, 0, ""},
		{"ExitCode", &hodeipb.Job{State: failed, ExitCode: 3, Reason: "exit code 3"}, 3, ""},
		{"SIGKILL", &hodeipb.Job{State: failed, ExitCode: -1, Signal: 9, Reason: "signal: killed"}, 137, "failed: signal: killed"},
		{"SIGTERM", &hodeipb.Job{State: failed, ExitCode: -1, Signal: 15, Reason: "signal: terminated"}, 143, "failed: signal: terminated"},
		{"TimedOut", &hodeipb.Job{State: failed, ExitCode: -1, Signal: 15, Reason: "timeout"}, 143, "failed: timeout"},
		{"StartFailed", &hodeipb.Job{State: failed, ExitCode: -1, Reason: "start: no such file"}, 1, "failed: start: no such file"},
		{"WorkerLost", &hodeipb.Job{State: failed, ExitCode: -1, Reason: "worker lost"}, 1, "failed: worker lost"},
		{"Cancelled", &hodeipb.Job{State: hodeipb.JobState_JOB_STATE_CANCELLED, ExitCode: -1, Signal: 15, Reason: "by alice"}, 1, "cancelled: by alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			j := proto.CloneOf(tc.job)
			j.Id = id
			h.jobs.jobs = []*hodeipb.Job{j}
			h.jobs.logChunks = [][]byte{[]byte("out\r\n")}
			r := h.run(t, "run", "--", "true")
			// The job's id comes first, then the end's reason if any.
			rest, idLine := strings.CutPrefix(r.stderr, "hodei: job "+id+"\n")
			if r.code != tc.code || r.stdout != "out\r\n" || !idLine || !strings.Contains(rest, tc.wantStderr) ||
				(tc.wantStderr == "" && rest != "") {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", r.code, r.stdout, r.stderr, tc.code, tc.wantStderr)
			}
			h.jobs.mu.Lock()
			defer h.jobs.mu.Unlock()
			want := &hodeipb.LogsRequest{Id: id, Attempt: 1, Follow: true, LaterAttempts: true}
			if len(h.jobs.logReqs) != 1 || !proto.Equal(h.jobs.logReqs[0], want) {
				t.Errorf("log requests %v, want [%v]", h.jobs.logReqs, want)
			}
		})
	}
}

func TestReconnectTimeoutFlag(t *testing.T) {
	t.Run("Negative", func(t *testing.T) {
		h := newHarness(t)
		r := h.run(t, "logs", "-f", "--reconnect-timeout", "-1s", "01JX")
		if r.code != 2 || !strings.Contains(r.stderr, "--reconnect-timeout: -1s must not be negative") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
		r = h.run(t, "run", "--reconnect-timeout", "-1s", "--", "true")
		if r.code != 2 || !strings.Contains(r.stderr, "--reconnect-timeout: -1s must not be negative") || h.jobs.submits() != 0 {
			t.Errorf("run: exit %d, stderr %q, %d submits; want a usage error and nothing submitted", r.code, r.stderr, h.jobs.submits())
		}
		r = h.run(t, "attach", "--reconnect-timeout", "-1s", "01JX")
		if r.code != 2 || !strings.Contains(r.stderr, "--reconnect-timeout: -1s must not be negative") {
			t.Errorf("attach: exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("NeverReached", func(t *testing.T) {
		// A server that never answered is more likely a wrong address than
		// a restart: no retrying, the address in the message.
		h := newHarness(t)
		h.jobs.setErr(status.Error(codes.Unavailable, "connection refused"))
		r := h.run(t, "logs", "-f", "01JX")
		if r.code != 1 || !strings.HasPrefix(r.stderr, "hodei: the hodei server at "+h.addr+" is unavailable (connection refused)") ||
			strings.Contains(r.stderr, "retrying") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("ZeroGivesUpAtOnce", func(t *testing.T) {
		h := newHarness(t)
		h.jobs.jobs = []*hodeipb.Job{{Id: "01J00000000000000000000001", State: hodeipb.JobState_JOB_STATE_RUNNING}}
		h.jobs.logsErr = status.Error(codes.Unavailable, "connection refused")
		r := h.run(t, "run", "--reconnect-timeout", "0", "--", "true")
		if r.code != 1 || !strings.Contains(r.stderr, "unreachable for 0s, giving up (--reconnect-timeout); job 01J00000000000000000000001 may still be running") ||
			strings.Contains(r.stderr, "retrying") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

// TestLineTracker: a message printed while the job's output stands
// mid-line (at a prompt) starts on a line of its own, and only then.
func TestLineTracker(t *testing.T) {
	var out strings.Builder
	l := &lineTracker{w: &out}
	if got := l.lineStart(); got != "" {
		t.Errorf("before any output: %q, want nothing", got)
	}
	l.Write([]byte("line 1\r\n$ "))
	if got := l.lineStart(); got != "\n" {
		t.Errorf("after a prompt: %q, want a line end", got)
	}
	if got := l.lineStart(); got != "" {
		t.Errorf("after the message's own line end: %q, want nothing", got)
	}
	l.Write([]byte("ls\r\n"))
	if got := l.lineStart(); got != "" || out.String() != "line 1\r\n$ ls\r\n" {
		t.Errorf("after a whole line: %q (output %q), want nothing", got, out.String())
	}
	if got := (*lineTracker)(nil).lineStart(); got != "" {
		t.Errorf("nil tracker: %q", got)
	}
}
