package main

import (
	"os/exec"
	"slices"
	"testing"
	"time"
)

// BenchmarkCLI measures what one CLI call costs the caller, as a user at a
// shell pays it: `hodei --version` and `hodei submit -- /bin/true` against
// a warm server on loopback (TLS, a token, fsync on), each run 200 times,
// as the median wall time and the median CPU time (user + system) of the
// process; and 1,000 submits one after the other, as a shell loop runs
// them, in jobs per second. The binary is the one the end-to-end tests
// build. Run with -benchtime 1x.
func BenchmarkCLI(b *testing.B) {
	dir := b.TempDir()
	cmd, addr, _ := startServe(b, dir)
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// One submit first: the server's first commit and the client's login
	// file are then warm.
	if err := cliCmd(addr, "submit", "--", "/bin/true").Run(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		wall, cpu := medianRun(b, 200, func() *exec.Cmd { return exec.Command(hodeiBin, "--version") })
		b.ReportMetric(ms(wall), "version-wall-ms")
		b.ReportMetric(ms(cpu), "version-cpu-ms")
		wall, cpu = medianRun(b, 200, func() *exec.Cmd { return cliCmd(addr, "submit", "--", "/bin/true") })
		b.ReportMetric(ms(wall), "submit-wall-ms")
		b.ReportMetric(ms(cpu), "submit-cpu-ms")
		const loop = 1000
		start := time.Now()
		for range loop {
			if out, err := cliCmd(addr, "submit", "--", "/bin/true").CombinedOutput(); err != nil {
				b.Fatalf("submit: %v: %s", err, out)
			}
		}
		b.ReportMetric(loop/time.Since(start).Seconds(), "loop-submits/s")
	}
	b.ReportMetric(0, "ns/op")
}

// medianRun runs the command made by mk n times, one after the other, and
// returns the median wall time and the median CPU time of the process.
func medianRun(b *testing.B, n int, mk func() *exec.Cmd) (wall, cpu time.Duration) {
	b.Helper()
	walls, cpus := make([]time.Duration, n), make([]time.Duration, n)
	for i := range n {
		c := mk()
		start := time.Now()
		if out, err := c.CombinedOutput(); err != nil {
			b.Fatalf("%v: %v: %s", c.Args, err, out)
		}
		walls[i] = time.Since(start)
		cpus[i] = c.ProcessState.UserTime() + c.ProcessState.SystemTime()
	}
	slices.Sort(walls)
	slices.Sort(cpus)
	return walls[n/2], cpus[n/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
