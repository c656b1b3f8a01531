package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// pipelineEnv is a real server and agent for pipeline tests, with a file
// outside Hodei that the jobs append to.
type pipelineEnv struct {
	t    *testing.T
	srv  *serverProc
	jobs pb.JobServiceClient
	dir  string
	out  string // the jobs' shared output file
}

func newPipelineEnv(t *testing.T, slots int, serverArgs ...string) *pipelineEnv {
	dir := jobDir(t)
	e := &pipelineEnv{t: t, dir: dir, out: filepath.Join(dir, "ran.txt")}
	e.srv = startServer(t, filepath.Join(dir, "server"), serverArgs...)
	startAgent(t, e.srv.grpcAddr, filepath.Join(dir, "agent"), "--slots", fmt.Sprint(slots))
	e.jobs = dial(t, e.srv.grpcAddr).Jobs()
	return e
}

// run writes the pipeline file and runs it through the CLI; it returns the
// pipeline id.
func (e *pipelineEnv) run(yaml string) string {
	e.t.Helper()
	file := filepath.Join(e.dir, fmt.Sprintf("p%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(yaml, "OUT", e.out)), 0o600); err != nil {
		e.t.Fatal(err)
	}
	out, errOut, code := hodei(e.t, e.srv.grpcAddr, "pipeline", "run", file)
	if code != 0 {
		e.t.Fatalf("pipeline run: exit %d: %s", code, errOut)
	}
	return strings.TrimSpace(out)
}

// wait waits for the pipeline to end and returns it with its jobs.
func (e *pipelineEnv) wait(id string, timeout time.Duration) *pb.PipelineStatus {
	e.t.Helper()
	var st *pb.PipelineStatus
	eventually(e.t, timeout, "pipeline "+id+" to end", func() bool {
		var err error
		st, err = e.jobs.GetPipeline(context.Background(), &pb.GetPipelineRequest{Id: id})
		return err == nil && st.GetState() >= pb.PipelineState_PIPELINE_STATE_COMPLETED
	})
	return st
}

func stepJobs(st *pb.PipelineStatus, step string) []*pb.Job {
	var out []*pb.Job
	for _, j := range st.GetJobs() {
		if j.GetSpec().GetStep() == step {
			out = append(out, j)
		}
	}
	return out
}

func at(ns int64) time.Time { return time.Unix(0, ns) }

func TestPipelineDiamondAndMatrix(t *testing.T) {
	e := newPipelineEnv(t, 8)
	id := e.run(`
name: diamond
steps:
  - name: a
    script: echo a >> OUT
  - name: b
    needs: [a]
    script: echo b >> OUT; sleep 1
  - name: c
    needs: [a]
    script: echo c >> OUT; sleep 1
  - name: test
    needs: [a]
    matrix: {os: [linux, mac, bsd], arch: [amd64, arm64]}
    script: echo "test $MATRIX_OS/$MATRIX_ARCH" >> OUT
  - name: d
    needs: [b, c, test]
    script: echo d >> OUT
`)
	st := e.wait(id, time.Minute)
	if st.GetState() != pb.PipelineState_PIPELINE_STATE_COMPLETED {
		t.Fatalf("pipeline ended %s", st.GetState())
	}
	a, b, c, d := stepJobs(st, "a")[0], stepJobs(st, "b")[0], stepJobs(st, "c")[0], stepJobs(st, "d")[0]
	if !at(a.GetFinishedUnixNano()).Before(at(b.GetStartedUnixNano())) || !at(a.GetFinishedUnixNano()).Before(at(c.GetStartedUnixNano())) {
		t.Fatal("b or c started before a finished")
	}
	if !at(b.GetStartedUnixNano()).Before(at(c.GetFinishedUnixNano())) || !at(c.GetStartedUnixNano()).Before(at(b.GetFinishedUnixNano())) {
		t.Fatalf("b [%s, %s] and c [%s, %s] did not overlap", at(b.GetStartedUnixNano()), at(b.GetFinishedUnixNano()),
			at(c.GetStartedUnixNano()), at(c.GetFinishedUnixNano()))
	}
	tests := stepJobs(st, "test")
	if len(tests) != 6 {
		t.Fatalf("matrix expanded to %d jobs, want 6", len(tests))
	}
	for _, j := range append(tests, b, c) {
		if !at(j.GetFinishedUnixNano()).Before(at(d.GetStartedUnixNano())) {
			t.Fatalf("d started before %s finished", j.GetSpec().GetName())
		}
	}
	lines := strings.Fields(strings.ReplaceAll(readFile(t, e.out), "test ", "test:"))
	if len(lines) != 10 || lines[0] != "a" || lines[len(lines)-1] != "d" || !slices.Contains(lines, "test:bsd/arm64") {
		t.Fatalf("the jobs wrote %q", lines)
	}
}

func TestPipelineFailure(t *testing.T) {
	for _, cont := range []bool{false, true} {
		t.Run(fmt.Sprintf("continue_on_failure=%v", cont), func(t *testing.T) {
			e := newPipelineEnv(t, 4)
			id := e.run(fmt.Sprintf(`
steps:
  - name: a
    script: "true"
  - name: b
    needs: [a]
    continue_on_failure: %v
    script: exit 3
  - name: d
    needs: [b]
    script: echo d >> OUT
  - name: side
    script: sleep 1; echo side >> OUT
`, cont))
			st := e.wait(id, time.Minute)
			d, side := stepJobs(st, "d")[0], stepJobs(st, "side")[0]
			if side.GetState() != pb.JobState_JOB_STATE_COMPLETED {
				t.Fatalf("independent branch ended %s", side.GetState())
			}
			if cont {
				if d.GetState() != pb.JobState_JOB_STATE_COMPLETED || st.GetState() != pb.PipelineState_PIPELINE_STATE_COMPLETED {
					t.Fatalf("continue_on_failure: d %s, pipeline %s; want both COMPLETED", d.GetState(), st.GetState())
				}
				return
			}
			if d.GetState() != pb.JobState_JOB_STATE_CANCELLED || d.GetReason() != "dependency b failed" {
				t.Fatalf("d: %s %q, want CANCELLED by \"dependency b failed\"", d.GetState(), d.GetReason())
			}
			if st.GetState() != pb.PipelineState_PIPELINE_STATE_FAILED {
				t.Fatalf("pipeline %s, want FAILED", st.GetState())
			}
			if slices.Contains(strings.Fields(readFile(t, e.out)), "d") {
				t.Fatal("d ran")
			}
		})
	}
}

func TestArrayRunsAtMostItsLimit(t *testing.T) {
	e := newPipelineEnv(t, 32)
	out, errOut, code := hodei(t, e.srv.grpcAddr, "submit", "--array", "0-99%10", "--script",
		fmt.Sprintf(`echo "+ $HODEI_ARRAY_INDEX" >> %s; sleep 0.2; echo "- $HODEI_ARRAY_INDEX" >> %s`, e.out, e.out))
	if code != 0 {
		t.Fatalf("submit --array: exit %d: %s", code, errOut)
	}
	array := strings.TrimSpace(out)
	eventually(t, 2*time.Minute, "the array to complete", func() bool {
		resp, err := e.jobs.List(context.Background(), &pb.ListJobsRequest{Array: array, PageSize: 1000, State: pb.JobState_JOB_STATE_COMPLETED})
		return err == nil && len(resp.GetJobs()) == 100
	})
	running, most, seen := 0, 0, map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(readFile(t, e.out)), "\n") {
		sign, idx, _ := strings.Cut(line, " ")
		if sign == "+" {
			running++
			seen[idx] = true
		} else {
			running--
		}
		most = max(most, running)
	}
	t.Logf("at most %d of the array ran at once", most)
	if most > 10 || len(seen) != 100 {
		t.Fatalf("at most %d ran at once over %d indices; want ≤ 10 over 100", most, len(seen))
	}
}

func TestPipelineSurvivesServerKill(t *testing.T) {
	dir := jobDir(t)
	out := filepath.Join(dir, "ran.txt")
	addr := freeAddr(t)
	args := []string{"--grpc-addr", addr, "--heartbeat", "200ms", "--lease", "10s"}
	srv := startServer(t, filepath.Join(dir, "server"), args...)
	startAgent(t, addr, filepath.Join(dir, "agent"), "--slots", "2")
	e := &pipelineEnv{t: t, srv: srv, jobs: dial(t, addr).Jobs(), dir: dir, out: out}
	var steps strings.Builder
	steps.WriteString("name: long\nsteps:\n")
	for i := range 6 {
		fmt.Fprintf(&steps, "  - name: s%d\n    script: echo s%d >> OUT; sleep 0.5\n", i, i)
		if i > 0 {
			fmt.Fprintf(&steps, "    needs: [s%d]\n", i-1)
		}
	}
	id := e.run(steps.String())
	waitFile(t, out, 30*time.Second)
	eventually(t, 30*time.Second, "the third step to start", func() bool { return strings.Contains(readFile(t, out), "s2") })
	srv.kill()

	srv = startServer(t, filepath.Join(dir, "server"), args...)
	e.srv, e.jobs = srv, dial(t, addr).Jobs()
	st := e.wait(id, 2*time.Minute)
	if st.GetState() != pb.PipelineState_PIPELINE_STATE_COMPLETED {
		t.Fatalf("pipeline ended %s after the restart", st.GetState())
	}
	if got := strings.Fields(readFile(t, out)); !slices.Equal(got, []string{"s0", "s1", "s2", "s3", "s4", "s5"}) {
		t.Fatalf("steps ran %v, want each of s0…s5 once, in order", got)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}
