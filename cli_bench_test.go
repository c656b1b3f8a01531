package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkCLI measures what one CLI call costs the caller, as a user at a
// shell pays it: `hodei --version` and `hodei submit -- /bin/true` against
// a warm server on loopback (TLS, a token, fsync on), each run 200 times,
// as the median wall time, CPU time (user + system) and minor page faults
// of the process; and 1,000 submits one after the other, as a shell loop
// runs them, in jobs per second. The binary is the one the end-to-end tests
// build (the Makefile's build tags).
//
// Beside each figure it reports the floor on the same machine in the same
// run, the commands alternating with hodei's so that load swings hit both
// alike: floor-hello is the smallest Go program, floor-version and
// floor-submit testdata/clifloor, the least a Go client of the API needs
// (gRPC over TLS, the generated code, a token, one Submit; no CLI
// framework, no login file). Run with -benchtime 1x.
func BenchmarkCLI(b *testing.B) {
	dir := b.TempDir()
	hello, floor := filepath.Join(dir, "hello"), filepath.Join(dir, "clifloor")
	tags, err := makefileTags()
	if err != nil {
		b.Fatal(err)
	}
	for out, pkg := range map[string]string{hello: "./testdata/clifloor/hello", floor: "./testdata/clifloor"} {
		if out, err := exec.Command("go", "build", "-tags", tags, "-o", out, pkg).CombinedOutput(); err != nil {
			b.Fatalf("build %s: %v: %s", pkg, err, out)
		}
	}
	cmd, addr, _ := startServe(b, filepath.Join(dir, "data"))
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	hodeiSubmit := func() *exec.Cmd { return cliCmd(addr, "submit", "--", "/bin/true") }
	floorSubmit := func() *exec.Cmd {
		c := cliCmd(addr)
		c.Path, c.Args = floor, []string{floor, "submit"}
		c.Env = append(c.Env, "HODEI_ADDR="+addr)
		return c
	}
	// One submit each first: the server's first commit and the client's
	// login file are then warm.
	for _, mk := range []func() *exec.Cmd{hodeiSubmit, floorSubmit} {
		if out, err := mk().CombinedOutput(); err != nil {
			b.Fatalf("submit: %v: %s", err, out)
		}
	}
	for b.Loop() {
		r := medianRuns(b, 200,
			func() *exec.Cmd { return exec.Command(hodeiBin, "--version") },
			func() *exec.Cmd { return exec.Command(floor, "version") },
			func() *exec.Cmd { return exec.Command(hello) })
		report(b, "version", r[0])
		report(b, "floor-version", r[1])
		report(b, "floor-hello", r[2])
		r = medianRuns(b, 200, hodeiSubmit, floorSubmit)
		report(b, "submit", r[0])
		report(b, "floor-submit", r[1])
		// The loops alternate too: each rate is 1,000 over the sum of its
		// own calls' wall times, as one shell loop of them would take.
		const loop = 1000
		var hodeiTotal, floorTotal time.Duration
		for range loop {
			hodeiTotal += run(b, hodeiSubmit()).wall
			floorTotal += run(b, floorSubmit()).wall
		}
		b.ReportMetric(loop/hodeiTotal.Seconds(), "loop-submits/s")
		b.ReportMetric(loop/floorTotal.Seconds(), "floor-loop-submits/s")
	}
	b.ReportMetric(0, "ns/op")
}

// runCost is what one process cost: wall time from start to exit, CPU time
// (user + system) and minor page faults.
type runCost struct {
	wall, cpu time.Duration
	faults    int64
}

// run runs c to its end and returns what it cost.
func run(b *testing.B, c *exec.Cmd) runCost {
	b.Helper()
	start := time.Now()
	if out, err := c.CombinedOutput(); err != nil {
		b.Fatalf("%v: %v: %s", c.Args, err, out)
	}
	wall := time.Since(start)
	var faults int64
	if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
		faults = ru.Minflt
	}
	return runCost{wall: wall, cpu: c.ProcessState.UserTime() + c.ProcessState.SystemTime(), faults: faults}
}

// medianRuns runs the commands made by mks n times each, taking turns, and
// returns the median of each figure for each command.
func medianRuns(b *testing.B, n int, mks ...func() *exec.Cmd) []runCost {
	b.Helper()
	costs := make([][]runCost, len(mks))
	for range n {
		for i, mk := range mks {
			costs[i] = append(costs[i], run(b, mk()))
		}
	}
	medians := make([]runCost, len(mks))
	for i, cs := range costs {
		medians[i] = runCost{
			wall:   median(cs, func(c runCost) time.Duration { return c.wall }),
			cpu:    median(cs, func(c runCost) time.Duration { return c.cpu }),
			faults: median(cs, func(c runCost) int64 { return c.faults }),
		}
	}
	return medians
}

func median[T int64 | time.Duration](cs []runCost, f func(runCost) T) T {
	vs := make([]T, len(cs))
	for i, c := range cs {
		vs[i] = f(c)
	}
	slices.Sort(vs)
	return vs[len(vs)/2]
}

// report reports c's figures under names that start with what.
func report(b *testing.B, what string, c runCost) {
	b.ReportMetric(ms(c.wall), what+"-wall-ms")
	b.ReportMetric(ms(c.cpu), what+"-cpu-ms")
	b.ReportMetric(float64(c.faults), what+"-faults")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// TestStartupInits checks that a CLI call does not initialise what no
// command uses: urfave/cli's man and markdown generator (blackfriday) and
// gRPC's x/net/trace, which the Makefile's build tags leave out. Each
// package initialised costs every hodei process its start-up time and
// page faults (BENCHMARKS.md, "CLI start-up").
func TestStartupInits(t *testing.T) {
	cmd := exec.Command(hodeiBin, "--version")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hodei --version: %v: %s", err, out)
	}
	for _, pkg := range []string{"github.com/russross/blackfriday/v2", "golang.org/x/net/trace"} {
		if strings.Contains(string(out), "init "+pkg+" @") {
			t.Errorf("hodei --version initialises %s", pkg)
		}
	}
}
