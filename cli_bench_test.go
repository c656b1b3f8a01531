package main

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// BenchmarkCLI measures what one CLI call costs the caller, as a user at a
// shell pays it: `hodei --version` and `hodei submit -- /bin/true` against
// a warm server on loopback (TLS, a token, fsync on), each run 200 times,
// as the median wall time, CPU time (user + system) and minor page faults
// of the process; and 1,000 submits one after the other, as a shell loop
// runs them, in jobs per second. The binary is the one the end-to-end tests
// build (the Makefile's build tags and environment).
//
// Beside each figure it reports the floor on the same machine in the same
// run, the commands alternating with hodei's so that load swings hit both
// alike: floor-hello is the smallest Go program, floor-version and
// floor-submit testdata/clifloor, the least a Go client of the API needs
// (gRPC over TLS, the generated code, a token, one Submit; no CLI
// framework, no login file). The submit's server side is reported too,
// from the same rounds: floor-fsync is one 4 KiB overwrite and fdatasync,
// floor-commit one durable bbolt transaction of a small record (the
// store's options, fsync on; two syncs), both in the directory that holds
// the server's data; rpc-submit is one Submit on a connection already
// open (no process start, no handshake: the server's work and loopback);
// server-cpu-ms/submit is the server's CPU time per CLI submit over the
// loop (from /proc). A durable submit cannot answer before its commit, so
// floor-commit is the part of a submit's wall time the disk alone takes.
//
// With HODEI_BENCH_BASE set to another build of hodei, that binary runs in
// turns too and its figures come as base-…: the way to measure a change
// to the build (-benchtime 1x).
func BenchmarkCLI(b *testing.B) {
	dir := b.TempDir()
	hello, floor := filepath.Join(dir, "hello"), filepath.Join(dir, "clifloor")
	for out, pkg := range map[string]string{hello: "./testdata/clifloor/hello", floor: "./testdata/clifloor"} {
		build, err := makefileBuild("-o", out, pkg)
		if err != nil {
			b.Fatal(err)
		}
		if out, err := build.CombinedOutput(); err != nil {
			b.Fatalf("build %s: %v: %s", pkg, err, out)
		}
	}
	base := os.Getenv("HODEI_BENCH_BASE")
	dataDir := filepath.Join(dir, "data")
	cmd, addr, _ := startServe(b, dataDir)
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	submitWith := func(bin string) func() *exec.Cmd {
		return func() *exec.Cmd {
			c := cliCmd(addr, "submit", "--", "/bin/true")
			c.Path, c.Args[0] = bin, bin
			return c
		}
	}
	hodeiSubmit, baseSubmit := submitWith(hodeiBin), submitWith(base)
	floorSubmit := func() *exec.Cmd {
		c := cliCmd(addr)
		c.Path, c.Args = floor, []string{floor, "submit"}
		c.Env = append(c.Env, "HODEI_ADDR="+addr)
		return c
	}
	version := func(bin string) func() *exec.Cmd {
		return func() *exec.Cmd { return exec.Command(bin, "--version") }
	}
	commit := commitProbe(b, dataDir)
	fsync := fsyncProbe(b, dataDir)
	rpc := rpcProbe(b, addr)
	// One submit each first: the server's first commit and the client's
	// login file are then warm.
	warm := []func() *exec.Cmd{hodeiSubmit, floorSubmit}
	if base != "" {
		warm = append(warm, baseSubmit)
	}
	for _, mk := range warm {
		if out, err := mk().CombinedOutput(); err != nil {
			b.Fatalf("submit: %v: %s", err, out)
		}
	}
	for b.Loop() {
		versions := []measure{
			{"version", procProbe(b, version(hodeiBin))},
			{"floor-version", procProbe(b, version(floor))},
			{"floor-hello", procProbe(b, func() *exec.Cmd { return exec.Command(hello) })},
		}
		submits := []measure{
			{"submit", procProbe(b, hodeiSubmit)},
			{"floor-submit", procProbe(b, floorSubmit)},
			{"floor-fsync", fsync},
			{"floor-commit", commit},
			{"rpc-submit", rpc},
		}
		if base != "" {
			versions = append(versions, measure{"base-version", procProbe(b, version(base))})
			submits = append(submits, measure{"base-submit", procProbe(b, baseSubmit)})
		}
		medianReport(b, 200, versions)
		medianReport(b, 200, submits)
		// The loops alternate too: each rate is 1,000 over the sum of its
		// own calls' wall times, as one shell loop of them would take.
		const loop = 1000
		var hodeiTotal, floorTotal, baseTotal, serverCPU time.Duration
		for range loop {
			before := procCPU(b, cmd.Process.Pid)
			hodeiTotal += run(b, hodeiSubmit()).wall
			serverCPU += procCPU(b, cmd.Process.Pid) - before
			floorTotal += run(b, floorSubmit()).wall
			if base != "" {
				baseTotal += run(b, baseSubmit()).wall
			}
		}
		b.ReportMetric(loop/hodeiTotal.Seconds(), "loop-submits/s")
		b.ReportMetric(loop/floorTotal.Seconds(), "floor-loop-submits/s")
		if base != "" {
			b.ReportMetric(loop/baseTotal.Seconds(), "base-loop-submits/s")
		}
		b.ReportMetric(msOf(serverCPU)/loop, "server-cpu-ms/submit")
	}
	b.ReportMetric(0, "ns/op")
}

// probe measures one thing once.
type probe func() runCost

// measure is a probe and the name its figures are reported under.
type measure struct {
	name  string
	probe probe
}

// medianReport runs the measures n times each, taking turns, and reports
// the median of each: wall, CPU and faults of a process, the wall time
// alone of what runs in the benchmark's own process.
func medianReport(b *testing.B, n int, ms []measure) {
	probes := make([]probe, len(ms))
	for i, m := range ms {
		probes[i] = m.probe
	}
	for i, r := range medianRuns(n, probes...) {
		if r.inProcess {
			b.ReportMetric(msOf(r.wall), ms[i].name+"-ms")
		} else {
			report(b, ms[i].name, r)
		}
	}
}

// procProbe runs the command mk makes.
func procProbe(b *testing.B, mk func() *exec.Cmd) probe {
	return func() runCost { return run(b, mk()) }
}

// commitProbe commits one small record to a bbolt file in dir, with the
// store's options and fsync on, as a durable submit does.
func commitProbe(b *testing.B, dir string) probe {
	db, err := bolt.Open(filepath.Join(dir, "commit-floor.db"), 0o600,
		&bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	bucket, value := []byte("jobs"), make([]byte, 200) // about a job record's size
	var n uint64
	return func() runCost {
		n++
		start := time.Now()
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists(bucket)
			if err != nil {
				return err
			}
			return bk.Put(binary.BigEndian.AppendUint64(nil, n), value)
		})
		if err != nil {
			b.Fatal(err)
		}
		return runCost{wall: time.Since(start), inProcess: true}
	}
}

// fsyncProbe overwrites 4 KiB of a file in dir and waits for fdatasync:
// one sync of data already allocated, as each of a bbolt commit's two
// syncs is (an appending write would also wait for the journal).
func fsyncProbe(b *testing.B, dir string) probe {
	f, err := os.Create(filepath.Join(dir, "fsync-floor"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	const size = 1 << 20
	if _, err := f.Write(make([]byte, size)); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	page := make([]byte, 4096)
	var off int64
	return func() runCost {
		start := time.Now()
		if _, err := f.WriteAt(page, off%size); err != nil {
			b.Fatal(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		off += int64(len(page))
		return runCost{wall: time.Since(start), inProcess: true}
	}
}

// rpcProbe submits /bin/true to addr on one connection kept open.
func rpcProbe(b *testing.B, addr string) probe {
	c := dial(b, addr)
	b.Cleanup(func() { c.Close() })
	spec := &hodeipb.JobSpec{Command: []string{"/bin/true"}}
	return func() runCost {
		start := time.Now()
		if _, err := c.Submit(context.Background(), spec); err != nil {
			b.Fatal(err)
		}
		return runCost{wall: time.Since(start), inProcess: true}
	}
}

// procCPU is the CPU time (user + system) process pid has used, from
// /proc/PID/stat (in clock ticks of 10 ms: sum many differences).
func procCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command name, which ends with the last ')':
	// state is field 3, utime 14 and stime 15.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		b.Fatalf("/proc/%d/stat: %v", pid, err)
	}
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// runCost is what one process cost: wall time from start to exit, CPU time
// (user + system) and minor page faults.
type runCost struct {
	wall, cpu time.Duration
	faults    int64
	inProcess bool // measured in the benchmark's process: wall time only
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

// medianRuns runs the probes n times each, taking turns, and returns the
// median of each figure for each probe.
func medianRuns(n int, probes ...probe) []runCost {
	costs := make([][]runCost, len(probes))
	for range n {
		for i, p := range probes {
			costs[i] = append(costs[i], p())
		}
	}
	medians := make([]runCost, len(probes))
	for i, cs := range costs {
		medians[i] = runCost{
			wall:      median(cs, func(c runCost) time.Duration { return c.wall }),
			cpu:       median(cs, func(c runCost) time.Duration { return c.cpu }),
			faults:    median(cs, func(c runCost) int64 { return c.faults }),
			inProcess: cs[0].inProcess,
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
	b.ReportMetric(msOf(c.wall), what+"-wall-ms")
	b.ReportMetric(msOf(c.cpu), what+"-cpu-ms")
	b.ReportMetric(float64(c.faults), what+"-faults")
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// TestStaticBinary checks that the binary the Makefile builds is static
// (CGO_ENABLED=0): no dynamic loader, no shared library, so no linking at
// each start and one file for any Linux of its architecture.
func TestStaticBinary(t *testing.T) {
	f, err := elf.Open(hodeiBin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Fatalf("hodei has a %v program header: it is linked dynamically", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Fatalf("hodei needs shared libraries %v (%v)", libs, err)
	}
}

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
