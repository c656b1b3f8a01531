package agent

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// The benchmarks come in pairs: the raw limit with creack/pty alone, and the
// same work through startAttempt, its pump, masker check and spool.
//
//	go test -run '^$' -bench . -benchtime 2s ./agent/

func BenchmarkPTYSpawn(b *testing.B) {
	ws := &pty.Winsize{Rows: defaultRows, Cols: defaultCols}
	cpu := selfCPU(b)
	for b.Loop() {
		cmd := exec.Command("/bin/true")
		f, err := pty.StartWithSize(cmd, ws)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, f) // until EIO
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
		_ = f.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "starts/s")
	b.ReportMetric((selfCPU(b)-cpu).Seconds()*1000/float64(b.N), "cpu-ms/start")
}

func BenchmarkAttemptTrue(b *testing.B) {
	benchAttempts(b, attemptSpec{JobID: "bench", Attempt: 1, Argv: []string{"/bin/true"}},
		attemptOptions{SpoolDir: b.TempDir()})
}

// BenchmarkAttemptTrueAsUser is BenchmarkAttemptTrue run as nobody, with
// the agent's policy: its cached user lookup, setgroups/setuid and the
// PTY's chown on every start.
func BenchmarkAttemptTrueAsUser(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("switching users needs root")
	}
	users, err := newUserPolicy(DefaultUser, false)
	if err != nil {
		b.Fatal(err)
	}
	benchAttempts(b, attemptSpec{JobID: "bench", Attempt: 1, Argv: []string{"/bin/true"}, Tenant: "bench", RunAs: "nobody"},
		attemptOptions{SpoolDir: b.TempDir(), Users: users})
}

// benchAttempts runs spec to a clean exit, one start at a time.
func benchAttempts(b *testing.B, spec attemptSpec, opts attemptOptions) {
	cpu := selfCPU(b)
	for b.Loop() {
		a := startAttempt(spec, opts)
		<-a.Done()
		if e := a.Exit(); e.Outcome != exited || e.ExitCode != 0 {
			b.Fatalf("exit = %+v", e)
		}
		if err := a.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "starts/s")
	b.ReportMetric((selfCPU(b)-cpu).Seconds()*1000/float64(b.N), "cpu-ms/start")
}

// selfCPU is the user and system time this process has used.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// childrenCPU is the user and system time of this process's children that
// it has waited for.
func childrenCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the user and system time process pid has used, its own
// (not its children's), from /proc at the clock tick's resolution.
func procCPU(b *testing.B, pid int) time.Duration {
	own, _ := procTimes(b, pid)
	return own
}

// procTimes is the user and system time process pid has used, its own and
// that of the children it has waited for, from /proc at the clock tick's
// resolution.
func procTimes(b *testing.B, pid int) (own, children time.Duration) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command, which is in parentheses and may hold
	// spaces: utime, stime, cutime and cstime are the 12th to 15th.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	var t [4]int64
	for i := range t {
		t[i], _ = strconv.ParseInt(f[11+i], 10, 64)
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(t[0]+t[1]) * tick, time.Duration(t[2]+t[3]) * tick
}

// BenchmarkChooseUser is the user decision alone, for a tenant's user.
func BenchmarkChooseUser(b *testing.B) {
	p := &userPolicy{DefaultUser: DefaultUser, Lookup: lookupUser}
	for b.Loop() {
		if _, err := p.choose("bench", "nobody"); err != nil {
			b.Fatal(err)
		}
	}
}

// throughputFile writes 64 MiB of log-like lines for cat to print.
func throughputFile(b *testing.B) (path string, size int64) {
	b.Helper()
	line := append(bytes.Repeat([]byte("0123456789abcdef"), 5)[:79], '\n')
	data := bytes.Repeat(line, (64<<20)/len(line))
	dir := b.TempDir()
	path = filepath.Join(dir, "out.txt")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	// Jobs of a root agent run as nobody: let them reach the file.
	for d, mode := range map[string]os.FileMode{filepath.Dir(dir): 0o711, dir: 0o755} {
		if err := os.Chmod(d, mode); err != nil {
			b.Fatal(err)
		}
	}
	return path, int64(len(data))
}

func BenchmarkPTYThroughput(b *testing.B) {
	path, size := throughputFile(b)
	ws := &pty.Winsize{Rows: defaultRows, Cols: defaultCols}
	buf := make([]byte, pumpBufSize)
	b.SetBytes(size)
	for b.Loop() {
		cmd := exec.Command("cat", path)
		f, err := pty.StartWithSize(cmd, ws)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := f.Read(buf); err != nil {
				break // EIO: the child side is closed
			}
		}
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
		_ = f.Close()
	}
}

func BenchmarkAttemptThroughput(b *testing.B) {
	path, size := throughputFile(b)
	spec := attemptSpec{JobID: "bench", Attempt: 1, Argv: []string{"cat", path}}
	opts := attemptOptions{SpoolDir: b.TempDir()}
	ctx := ctxForTest(b)
	b.SetBytes(size)
	for b.Loop() {
		a := startAttempt(spec, opts)
		out := a.Output()
		var off int64
		for {
			data, eof, err := out.Read(ctx, off, 1<<20)
			if err != nil {
				b.Fatal(err)
			}
			off += int64(len(data))
			out.Ack(off)
			if eof {
				break
			}
		}
		<-a.Done()
		if off < size {
			b.Fatalf("read %d bytes, want at least %d", off, size)
		}
		if err := a.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSupervisedTrue is BenchmarkAttemptTrue through a supervisor in
// a process of its own, as the agent runs jobs: the start, the started
// answer, the exit and the release cross its socket. Against
// BenchmarkAttemptTrue it is what the supervisor adds to a job's start
// and end (`sup-ms/start`: start to started; `sup-ms/job`: start to exit).
func BenchmarkSupervisedTrue(b *testing.B) {
	sc, pid := benchSupervisor(b)
	var started, ended time.Duration
	agentCPU, supCPU := selfCPU(b), procCPU(b, pid)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		ra := sc.start(ref{"bench", i + 1}, &wireSpec{Argv: []string{"/bin/true"}})
		t1 := time.Now()
		<-ra.Done()
		started, ended = started+t1.Sub(t0), ended+time.Since(t0)
		ra.Close()
		ra.release()
	}
	b.ReportMetric(float64(started.Microseconds())/1000/float64(b.N), "sup-ms/start")
	b.ReportMetric(float64(ended.Microseconds())/1000/float64(b.N), "sup-ms/job")
	b.ReportMetric((selfCPU(b)-agentCPU).Seconds()*1000/float64(b.N), "agent-cpu-ms/job")
	b.ReportMetric((procCPU(b, pid)-supCPU).Seconds()*1000/float64(b.N), "sup-cpu-ms/job")
}

// BenchmarkSupervisedParallel is BenchmarkSupervisedTrue 64 jobs at a
// time, as a busy agent runs them, with the same number of bare PTY spawns
// (64 at a time) timed in the same run, alternating: it reports the CPU of
// a job in the agent's end of the protocol, in the supervisor and in the
// job's own process, against the CPU of a spawn (this process and its
// child). No server takes part, so the supervisor's cost per job stands
// out from less noise than in BenchmarkTrivialJobsOverSpawn.
func BenchmarkSupervisedParallel(b *testing.B) {
	sc, pid := benchSupervisor(b)
	var next atomic.Int64
	supervised := func(n int) {
		var left atomic.Int64
		left.Store(int64(n))
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for left.Add(-1) >= 0 {
					ra := sc.start(ref{"bench", int(next.Add(1))}, &wireSpec{Argv: []string{"/bin/true"}})
					<-ra.Done()
					ra.release()
					ra.Close()
				}
			})
		}
		wg.Wait()
	}
	b.ResetTimer()
	pc := jobsAgainstSpawns(b, pid, supervised)
	b.StopTimer()
	pc.report(b, "agent-cpu-ms/job")
	b.ReportMetric(0, "ns/op")
}

// benchSupervisor starts a supervisor from this binary in its own process,
// connected to as an agent; it is left (and exits) when b ends.
func benchSupervisor(b *testing.B) (*supClient, int) {
	dir := b.TempDir()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	pid, err := spawnSupervisor(exe, dir)
	if err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(dir, supDir, strconv.Itoa(pid)+".sock")
	sc, err := dialSupervisor(sock, "bench", filepath.Join(dir, "spool"), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	sc.adopt()
	b.Cleanup(func() { sc.leave(true) })
	return sc, pid
}
