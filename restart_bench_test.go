package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/store"
	"github.com/hodei-jobs/hodei/store/storetest"
)

// BenchmarkRestart starts the real `hodei serve` on a data dir holding
// queued jobs (no arrays) and reports how long it takes to be ready — its
// serving line, then a submit and a get of an old job answered — and its
// resident memory: the peak during recovery against the steady state 5 s
// after. On the same server it then times one /metrics scrape (plain HTTP on
// loopback, with a token, as Prometheus does) and one filtered `jobs ls` page (a
// label that 1,000 of the jobs have, in the middle of the ids). Run it by name:
//
//	go test -run '^$' -bench Restart -benchtime 1x .
func BenchmarkRestart(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("jobs=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			bootstrap(b, dir)
			first := fillQueued(b, filepath.Join(dir, "hodei.db"), n)
			for b.Loop() {
				r := restartOnce(b, dir, first, strconv.Itoa(n/2000))
				b.ReportMetric(r.ready.Seconds(), "s-to-ready")
				b.ReportMetric(float64(r.peak)/(1<<20), "peak-RSS-MiB")
				b.ReportMetric(float64(r.steady)/(1<<20), "steady-RSS-MiB")
				b.ReportMetric(float64(r.peak)/float64(r.steady), "peak/steady")
				b.ReportMetric(float64(r.scrape.Microseconds())/1000, "metrics-scrape-ms")
				b.ReportMetric(float64(r.list.Microseconds())/1000, "filtered-ls-ms")
			}
		})
	}
}

// bootstrap starts and stops a server once, so that the data dir has its
// keys, certificates and admin token.
func bootstrap(b *testing.B, dir string) {
	cmd, _, _ := startServe(b, dir)
	cmd.Process.Kill()
	cmd.Wait()
}

// fillQueued stores n Pending jobs straight into the database, 1,000 per
// commit, and returns the first one's id.
func fillQueued(b *testing.B, path string, n int) string {
	db, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	return storetest.FillQueued(b, db, n)
}

// restartOnce starts `hodei serve` on dir and measures it; see
// BenchmarkRestart.
func restartOnce(b *testing.B, dir, old, batch string) (r restarted) {
	start := time.Now()
	cmd, grpcAddr, httpAddr := startServe(b, dir)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	c := dial(b, grpcAddr)
	if _, err := c.Jobs().Submit(context.Background(), &pb.SubmitRequest{Spec: &pb.JobSpec{Command: []string{"true"}}}); err != nil {
		b.Fatalf("submit after restart: %v", err)
	}
	if j, err := c.Jobs().Get(context.Background(), &pb.GetJobRequest{Id: old}); err != nil || j.GetState() != pb.JobState_JOB_STATE_PENDING {
		b.Fatalf("get %s after restart: %v %v", old, j, err)
	}
	r.ready = time.Since(start)
	r.peak = procStatus(b, cmd.Process.Pid, "VmHWM")
	<-time.After(5 * time.Second) // the steady state is measured 5 s on: a period, not a synchronisation
	r.steady = procStatus(b, cmd.Process.Pid, "VmRSS")

	creds := credsFor(grpcAddr)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(creds.caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, err := http.NewRequest("GET", "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+creds.token)
	t := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r.scrape = time.Since(t)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `hodei_jobs{state="PENDING",tenant="default"}`) {
		b.Fatalf("scrape: %s %v\n%.300s", resp.Status, err, body)
	}
	t = time.Now()
	page, err := c.Jobs().List(context.Background(), &pb.ListJobsRequest{Labels: map[string]string{"batch": batch}})
	r.list = time.Since(t)
	if err != nil || len(page.GetJobs()) != 100 {
		b.Fatalf("filtered list: %d jobs, %v", len(page.GetJobs()), err)
	}
	return r
}

// restarted is what restartOnce measured.
type restarted struct {
	ready, scrape, list time.Duration
	peak, steady        int64
}

// startServe starts `hodei serve` on dir and returns once it prints its
// serving line, with its addresses.
func startServe(b *testing.B, dir string) (*exec.Cmd, string, string) {
	cmd := exec.Command(hodeiBin, "serve", "--data-dir", dir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "warn")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "hodei: serving ")
		if !ok {
			continue
		}
		var grpcAddr, httpAddr string
		for _, f := range strings.Fields(rest) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "grpc":
				grpcAddr = v
			case "http":
				httpAddr = v
			}
		}
		go func() {
			for sc.Scan() {
			}
		}()
		creds := serverCreds{}
		tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
		if err == nil {
			caFile := filepath.Join(dir, "tls", "ca.pem")
			caPEM, _ := os.ReadFile(caFile)
			creds = serverCreds{token: strings.TrimSpace(string(tok)), caFile: caFile, caPEM: caPEM}
		}
		credsMu.Lock()
		credsByAddr[grpcAddr] = creds
		credsMu.Unlock()
		return cmd, grpcAddr, httpAddr
	}
	b.Fatalf("hodei serve exited before it was ready")
	return nil, "", ""
}

// procStatus reads one "kB" field of /proc/PID/status, in bytes.
func procStatus(b *testing.B, pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
