package main

import (
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// dangerous prints, in a job's PTY, each sequence that acts on the viewer's
// terminal, between a hyperlink's text and a coloured word that must pass.
const dangerous = `printf '` +
	`\033]0;TITLE\007` + // OSC 0: window title
	`\033]52;c;Q0xJUA==\007` + // OSC 52: clipboard
	`\033]8;;http://evil.example/\033\\link\033]8;;\033\\` + // OSC 8: hyperlink
	`\033Pdcs\033\\\033_apc\033\\\033^pm\033\\\033Xsos\033\\` + // DCS, APC, PM, SOS
	`\2336n\302\2336n\033[6n` + // CSI 6n (device status report) as C1 byte, as U+009B, as ESC [
	`\033[31mred\033[0m\n'`

// dangerousRaw is what the job writes, after the PTY's \n → \r\n.
const dangerousRaw = "\x1b]0;TITLE\x07\x1b]52;c;Q0xJUA==\x07\x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\" +
	"\x1bPdcs\x1b\\\x1b_apc\x1b\\\x1b^pm\x1b\\\x1bXsos\x1b\\\x9b6n\xc2\x9b6n\x1b[6n\x1b[31mred\x1b[0m\r\n"

// dangerousShown is what people see without --raw: the link's text and
// the colours.
const dangerousShown = "link\x1b[31mred\x1b[0m\r\n"

func TestJobOutputIsSafeForTerminals(t *testing.T) {
	srv, _ := cluster(t)
	out, errOut, code := hodei(t, srv.grpcAddr, "run", "--", "sh", "-c", dangerous)
	if code != 0 || out != dangerousShown {
		t.Fatalf("run: exit %d, stdout %q, stderr %q; want 0 and %q", code, out, errOut, dangerousShown)
	}
	out, errOut, code = hodei(t, srv.grpcAddr, "run", "--raw", "--", "sh", "-c", dangerous)
	if code != 0 || out != dangerousRaw {
		t.Fatalf("run --raw: exit %d, stdout %q, stderr %q; want 0 and %q", code, out, errOut, dangerousRaw)
	}
	id := strings.TrimSpace(mustRun(t, srv.grpcAddr, "submit", "--", "sh", "-c", dangerous))
	if j := waitJob(t, dial(t, srv.grpcAddr).Jobs(), id, 30*time.Second); j.GetState() != pb.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("job %s: %s", j.GetState(), j.GetReason())
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"Logs", []string{"logs", id}, dangerousShown},
		{"LogsFollow", []string{"logs", "-f", id}, dangerousShown},
		{"LogsRaw", []string{"logs", "--raw", id}, dangerousRaw},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustRun(t, srv.grpcAddr, tc.args...); got != tc.want {
				t.Errorf("hodei %s = %q, want %q", strings.Join(tc.args, " "), got, tc.want)
			}
		})
	}
}

func TestJobNameAndReasonAreShownEscaped(t *testing.T) {
	srv, _ := cluster(t)
	id := strings.TrimSpace(mustRun(t, srv.grpcAddr, "submit", "--name", "evil\x1b]0;pwned\x07", "--", "sleep", "60"))
	mustRun(t, srv.grpcAddr, "jobs", "cancel", "--reason", "stop\x1b[6n\u009b", id)
	if j := waitJob(t, dial(t, srv.grpcAddr).Jobs(), id, 30*time.Second); j.GetState() != pb.JobState_JOB_STATE_CANCELLED {
		t.Fatalf("job %s: %s", j.GetState(), j.GetReason())
	}
	for _, args := range [][]string{{"jobs", "ls"}, {"jobs", "get", id}} {
		out := mustRun(t, srv.grpcAddr, args...)
		if strings.ContainsAny(out, "\x1b\x07\u009b") {
			t.Errorf("hodei %s prints control characters: %q", strings.Join(args, " "), out)
		}
		for _, want := range []string{`evil\x1b]0;pwned\a`, `stop\x1b[6n\u009b`} {
			if !strings.Contains(out, want) {
				t.Errorf("hodei %s = %q, want it to show %q", strings.Join(args, " "), out, want)
			}
		}
	}
}
