package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/hodei-jobs/hodei/proto"
)

// burnScript burns CPU in sh until the shell's own user+system time
// reaches ticks (1/100 s each), from /proc/self/stat with builtins only: a
// CPU bound, whatever else the host runs.
func burnScript(ticks int) string {
	return fmt.Sprintf(`while :; do read -r _ _ _ _ _ _ _ _ _ _ _ _ _ u s _ < /proc/self/stat; [ $((u+s)) -ge %d ] && break; done`, ticks)
}

// usageRows is `hodei usage --output json`.
type usageRows struct {
	From, To string
	Rows     []struct {
		Group       string  `json:"group"`
		Attempts    int64   `json:"attempts"`
		WallSeconds float64 `json:"wall_seconds"`
		CPUSeconds  float64 `json:"cpu_seconds"`
		SlotSeconds float64 `json:"slot_seconds"`
		MaxRSSKiB   int64   `json:"max_rss_kib"`
	} `json:"rows"`
}

func (u usageRows) group(name string) (attempts int64, cpu float64) {
	for _, r := range u.Rows {
		if r.Group == name {
			return r.Attempts, r.CPUSeconds
		}
	}
	return 0, 0
}

// TestUsageAccounting runs CPU-burning jobs on a real agent, checks the
// CPU time of each attempt (a backgrounded orphan's included), lets the
// retention delete the jobs, and reads the usage that outlives them:
// sums by tenant, label and user, per-attempt records whose CSV sums
// match the roll-ups', a tenant-limited viewer, bad flags, and a snapshot
// round trip.
func TestUsageAccounting(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir, "--heartbeat", "200ms", "--lease", "1500ms", "--retention", "3s")
	addr := srv.grpcAddr
	startAgent(t, addr, t.TempDir(), "--slots", "4")
	mustRun(t, addr, "tenants", "set", "team-a")
	mustRun(t, addr, "tenants", "set", "team-b")
	cl := dial(t, addr)
	ctx := context.Background()

	orphan := fmt.Sprintf(`d=$(mktemp -d) && mkfifo "$d/f" && ( ( %s; echo done > "$d/f" ) & ) && read x < "$d/f"; rm -r "$d"`, burnScript(100))
	specs := map[string]*pb.JobSpec{
		"burn":   {Tenant: "team-a", Labels: map[string]string{"proj": "x"}, Script: burnScript(200), NoPty: true},
		"orphan": {Tenant: "team-a", Labels: map[string]string{"proj": "y"}, Script: orphan, NoPty: true},
		"wide":   {Tenant: "team-b", Labels: map[string]string{"proj": "x"}, Script: "sleep 0.2", NoPty: true, Resources: &pb.Resources{Slots: 2}},
	}
	ids := map[string]string{}
	for name, s := range specs {
		id, err := cl.Submit(ctx, s)
		if err != nil {
			t.Fatalf("submit %s: %v", name, err)
		}
		ids[name] = id
	}
	// Each job as it completed, taken before the retention deletes it.
	done := map[string]*pb.Job{}
	eventually(t, 2*time.Minute, "the jobs complete", func() bool {
		for name, id := range ids {
			if done[name] != nil {
				continue
			}
			j, err := cl.Jobs().Get(ctx, &pb.GetJobRequest{Id: id})
			if err != nil {
				t.Fatalf("get %s: %v", name, err)
			}
			switch j.GetState() {
			case pb.JobState_JOB_STATE_COMPLETED:
				done[name] = j
			case pb.JobState_JOB_STATE_FAILED, pb.JobState_JOB_STATE_CANCELLED:
				t.Fatalf("%s ended %s: %s", name, j.GetState(), j.GetReason())
			}
		}
		return len(done) == len(ids)
	})
	cpu := func(name string) time.Duration { return time.Duration(done[name].GetUsage().GetCpuTimeNs()) }
	if c := cpu("burn"); c < 1800*time.Millisecond || c > 2200*time.Millisecond {
		t.Errorf("the job that burned 2 s of CPU shows %s", c)
	}
	// The orphan's parent never waits for it: without the supervisor
	// reaping it, the attempt would show almost no CPU.
	if c := cpu("orphan"); c < 900*time.Millisecond || c > 1300*time.Millisecond {
		t.Errorf("the job whose orphan burned 1 s of CPU shows %s", c)
	}
	w := done["wide"].GetUsage()
	if w.GetWallTimeNs() < int64(200*time.Millisecond) || w.GetSlotTimeNs() != 2*w.GetWallTimeNs() || w.GetAttempt() != 1 {
		t.Errorf("the 2-slot job's usage: %+v", w)
	}
	if done["burn"].GetOwner() == "" {
		t.Error("the job has no owner")
	}
	t.Logf("cpu: burn %s, orphan %s; wide wall %s", cpu("burn"), cpu("orphan"), time.Duration(w.GetWallTimeNs()))

	// The retention deletes the jobs; their usage stays.
	eventually(t, time.Minute, "the retention deletes the jobs", func() bool {
		for _, id := range ids {
			if _, err := cl.Jobs().Get(ctx, &pb.GetJobRequest{Id: id}); status.Code(err) != codes.NotFound {
				return false
			}
		}
		return true
	})
	usage := func(args ...string) usageRows {
		t.Helper()
		var u usageRows
		out := mustRun(t, addr, append([]string{"usage", "-o", "json"}, args...)...)
		if err := json.Unmarshal([]byte(out), &u); err != nil {
			t.Fatalf("usage %v: %v\n%s", args, err, out)
		}
		return u
	}
	byTenant := usage()
	if n, c := byTenant.group("team-a"); n != 2 || c < 2.7 || c > 3.5 {
		t.Errorf("team-a: %d attempts, %.3f s CPU; want 2 and about 3 s\n%+v", n, c, byTenant)
	}
	if n, _ := byTenant.group("team-b"); n != 1 {
		t.Errorf("team-b: %d attempts; want 1", n)
	}
	if n, c := usage("--label", "proj=x").group("team-a"); n != 1 || c < 1.8 || c > 2.2 {
		t.Errorf("team-a with proj=x: %d attempts, %.3f s CPU; want the burner alone", n, c)
	}
	if byLabel := usage("--group-by", "label:proj"); len(byLabel.Rows) != 2 {
		t.Errorf("by label proj: %+v; want x and y", byLabel)
	} else if n, _ := byLabel.group("x"); n != 2 {
		t.Errorf("proj=x: %d attempts; want 2 (one per tenant)", n)
	}
	if byUser := usage("--group-by", "user"); len(byUser.Rows) != 1 || byUser.Rows[0].Group == "" || byUser.Rows[0].Attempts != 3 {
		t.Errorf("by user: %+v; want the admin token's name with 3 attempts", byUser)
	}
	if byDay := usage("--group-by", "day", "--since", "1d"); len(byDay.Rows) == 0 || byDay.Rows[len(byDay.Rows)-1].Group != time.Now().UTC().Format(time.DateOnly) {
		t.Errorf("by day: %+v", byDay)
	}

	// The CSV sums match the per-attempt records', to the microsecond.
	rowsCSV := readCSV(t, mustRun(t, addr, "usage", "--output", "csv"))
	attemptsCSV := readCSV(t, mustRun(t, addr, "usage", "--attempts", "--output", "csv"))
	if len(attemptsCSV) != 3 {
		t.Fatalf("per-attempt records: %v", attemptsCSV)
	}
	for _, col := range []string{"wall_seconds", "cpu_seconds", "slot_seconds"} {
		sums := map[string]int64{}
		for _, r := range attemptsCSV {
			sums[r["tenant"]] += micros(t, r[col])
		}
		for _, r := range rowsCSV {
			if got := micros(t, r[col]); got != sums[r["tenant"]] {
				t.Errorf("%s of %s: %d µs in the roll-ups, %d µs in the attempts", col, r["tenant"], got, sums[r["tenant"]])
			}
		}
	}

	// A viewer of team-a sees team-a's usage only.
	token := strings.TrimSpace(mustRun(t, addr, "token", "create", "--role", "viewer", "--tenant", "team-a", "--name", "a-viewer"))
	viewer := func(args ...string) (string, string, int) {
		cmd := exec.Command(hodeiBin, append([]string{"--addr", addr, "usage"}, args...)...)
		cmd.Env = append(os.Environ(), "HODEI_TOKEN="+token, "HODEI_CA_FILE="+credsFor(addr).caFile)
		return runCmd(t, cmd)
	}
	out, errOut, code := viewer("-o", "json")
	var seen usageRows
	if code != 0 || json.Unmarshal([]byte(out), &seen) != nil || len(seen.Rows) != 1 || seen.Rows[0].Group != "team-a" {
		t.Errorf("the team-a viewer: exit %d %s %s; want team-a alone", code, out, errOut)
	}
	if out, errOut, code := viewer("--tenant", "team-b"); code == 0 || !strings.Contains(errOut, `tenant "team-b" is outside this token's tenants`) {
		t.Errorf("the team-a viewer asking for team-b: exit %d %s %s", code, out, errOut)
	}
	if out, errOut, code := viewer("--attempts", "--output", "csv"); code != 0 || strings.Contains(out, "team-b") || len(readCSV(t, out)) != 2 {
		t.Errorf("the team-a viewer's attempts: exit %d %s %s", code, out, errOut)
	}

	// Bad flags: a usage error naming the flag.
	for _, tc := range []struct{ want string }{
		{"--group-by: must be tenant, day, user or label:KEY"},
		{"--from: \"2026-13-01\" is not a day"},
		{"--since and --from"},
		{"--output: \"xml\" is not a format"},
		{"--label: \"proj\" must be KEY=VALUE"},
		{"--to: 2026-01-01 is before --from 2026-02-01"},
		{"group_by: user cannot be combined with a label filter"},
	} {
		var args []string
		switch {
		case strings.HasPrefix(tc.want, "--group-by"):
			args = []string{"--group-by", "week"}
		case strings.HasPrefix(tc.want, "--from"):
			args = []string{"--from", "2026-13-01"}
		case strings.HasPrefix(tc.want, "--since"):
			args = []string{"--since", "30d", "--from", "2026-01-01"}
		case strings.HasPrefix(tc.want, "--output"):
			args = []string{"--output", "xml"}
		case strings.HasPrefix(tc.want, "--label"):
			args = []string{"--label", "proj"}
		case strings.HasPrefix(tc.want, "--to"):
			args = []string{"--from", "2026-02-01", "--to", "2026-01-01"}
		default:
			args = []string{"--label", "proj=x", "--group-by", "user"}
		}
		wantRefused(t, addr, tc.want, append([]string{"usage"}, args...)...)
	}

	// A snapshot carries the usage: restored, the answers are the same.
	before := mustRun(t, addr, "usage", "--attempts", "-o", "json")
	snap := filepath.Join(t.TempDir(), "usage.db")
	mustRun(t, addr, "snapshot", "save", snap)
	srv.stop(t)
	os.Remove(filepath.Join(dir, "hodei.db"))
	if out, errOut, code := runCmd(t, exec.Command(hodeiBin, "snapshot", "restore", snap, "--data-dir", dir)); code != 0 {
		t.Fatalf("restore: exit %d %s %s", code, out, errOut)
	}
	srv = startServer(t, dir)
	if after := mustRun(t, srv.grpcAddr, "usage", "--attempts", "-o", "json"); after != before {
		t.Errorf("usage after the restore:\n%s\nbefore:\n%s", after, before)
	}
}

// readCSV parses CSV with a header line into one map per record.
func readCSV(t *testing.T, s string) []map[string]string {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(s)).ReadAll()
	if err != nil || len(recs) == 0 {
		t.Fatalf("csv %q: %v", s, err)
	}
	var out []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, k := range recs[0] {
			m[k] = r[i]
		}
		out = append(out, m)
	}
	return out
}

// micros reads seconds with six decimals (12.345678) as microseconds.
func micros(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.Replace(s, ".", "", 1), 10, 64)
	if err != nil || !strings.Contains(s, ".") || len(s)-strings.Index(s, ".") != 7 {
		t.Fatalf("%q is not seconds with six decimals", s)
	}
	return n
}
