package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/pki"
	pb "github.com/hodei-jobs/hodei/proto"
)

// runAgentToExit runs `hodei agent` that is expected to give up, and
// returns its stderr and exit code.
func runAgentToExit(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, hodeiBin, append([]string{"agent", "--log-level", "warn"}, args...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("agent %v: %v\n%s", args, err, out)
	}
	return string(out), ee.ExitCode()
}

// tokenLastUsed returns the LAST USED column of a token in token ls.
func tokenInfo(t *testing.T, addr, id string) *pb.TokenInfo {
	t.Helper()
	resp, err := dial(t, addr).Admin().ListTokens(context.Background(), &pb.ListTokensRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range resp.GetTokens() {
		if tk.GetId() == id {
			return tk
		}
	}
	t.Fatalf("token %s not listed", id)
	return nil
}

func TestAgentsWithoutAValidJoinAreRefusedAndSentNothing(t *testing.T) {
	srv := startServer(t, t.TempDir())
	cl := dial(t, srv.grpcAddr)
	ctx := context.Background()
	id, err := cl.Submit(ctx, &pb.JobSpec{Command: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	fp := func() string {
		resp, err := cl.Admin().CreateToken(ctx, &pb.CreateTokenRequest{Role: "agent"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetCaFingerprint()
	}()

	t.Run("NoJoinToken", func(t *testing.T) {
		out, code := runAgentToExit(t, "--server", srv.grpcAddr, "--data-dir", t.TempDir())
		if code == 0 || !strings.Contains(out, "has not joined") {
			t.Fatalf("exit %d: %s", code, out)
		}
	})
	t.Run("GarbageJoinToken", func(t *testing.T) {
		out, code := runAgentToExit(t, "--server", srv.grpcAddr, "--data-dir", t.TempDir(), "--join", "garbage", "--ca-fingerprint", fp)
		if code == 0 || !strings.Contains(out, "invalid token") {
			t.Fatalf("exit %d: %s", code, out)
		}
	})
	t.Run("RevokedJoinToken", func(t *testing.T) {
		resp, err := cl.Admin().CreateToken(ctx, &pb.CreateTokenRequest{Role: "agent"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Admin().RevokeToken(ctx, &pb.RevokeTokenRequest{Id: resp.GetInfo().GetId()}); err != nil {
			t.Fatal(err)
		}
		out, code := runAgentToExit(t, "--server", srv.grpcAddr, "--data-dir", t.TempDir(), "--join", resp.GetToken(), "--ca-fingerprint", fp)
		if code == 0 || !strings.Contains(out, "revoked") {
			t.Fatalf("exit %d: %s", code, out)
		}
	})
	t.Run("ClientTokenAsJoinToken", func(t *testing.T) {
		resp, err := cl.Admin().CreateToken(ctx, &pb.CreateTokenRequest{Role: "submitter"})
		if err != nil {
			t.Fatal(err)
		}
		out, code := runAgentToExit(t, "--server", srv.grpcAddr, "--data-dir", t.TempDir(), "--join", resp.GetToken(), "--ca-fingerprint", fp)
		if code == 0 || !strings.Contains(out, "may not join agents") {
			t.Fatalf("exit %d: %s", code, out)
		}
	})
	t.Run("WrongFingerprintRefusedBeforeTheTokenIsSent", func(t *testing.T) {
		resp, err := cl.Admin().CreateToken(ctx, &pb.CreateTokenRequest{Role: "agent"})
		if err != nil {
			t.Fatal(err)
		}
		wrong := "sha256:" + strings.Repeat("ab", 32)
		out, code := runAgentToExit(t, "--server", srv.grpcAddr, "--data-dir", t.TempDir(), "--join", resp.GetToken(), "--ca-fingerprint", wrong)
		if code == 0 || !strings.Contains(out, "fingerprint did not match") {
			t.Fatalf("exit %d: %s", code, out)
		}
		if tk := tokenInfo(t, srv.grpcAddr, resp.GetInfo().GetId()); tk.GetLastUsedUnixNano() != 0 {
			t.Errorf("the join token reached the server despite the wrong fingerprint")
		}
	})
	ws, err := cl.ListWorkers(ctx)
	if err != nil || len(ws) != 0 {
		t.Fatalf("workers after refused agents: %v, %v", ws, err)
	}
	j, err := cl.Get(ctx, id)
	if err != nil || j.GetState() != pb.JobState_JOB_STATE_PENDING || j.GetWorker() != "" || j.GetScheduledUnixNano() != 0 {
		t.Fatalf("the job was sent somewhere: %v, %v", j, err)
	}
}

// rogue is an agent connection made by hand, with its own certificate.
type rogue struct {
	conn   *grpc.ClientConn
	worker string
}

// joinRogue joins worker through the real Join RPC with a fresh agent
// token and returns an mTLS connection with the certificate it got.
func joinRogue(t *testing.T, addr, worker string) *rogue {
	t.Helper()
	cr := credsFor(addr)
	resp, err := dial(t, addr).Admin().CreateToken(context.Background(), &pb.CreateTokenRequest{Role: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.ClientConfig(cr.caPEM, nil, pki.ServerName(addr))
	if err != nil {
		t.Fatal(err)
	}
	jc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithPerRPCCredentials(bearerCreds(resp.GetToken())))
	if err != nil {
		t.Fatal(err)
	}
	defer jc.Close()
	keyPEM, csr, err := pki.NewKeyAndCSR(worker)
	if err != nil {
		t.Fatal(err)
	}
	jr, err := pb.NewAgentServiceClient(jc).Join(context.Background(), &pb.JoinRequest{WorkerId: worker, CsrDer: csr})
	if err != nil {
		t.Fatalf("join %s: %v", worker, err)
	}
	cert, err := tls.X509KeyPair(jr.GetCertificatePem(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &rogue{conn: mtlsConn(t, addr, cr.caPEM, cert), worker: worker}
}

func mtlsConn(t *testing.T, addr string, caPEM []byte, cert tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg, err := pki.ClientConfig(caPEM, &cert, pki.ServerName(addr))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

type bearerCreds string

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearerCreds) RequireTransportSecurity() bool { return true }

// connect opens the agent stream with a Hello naming worker and returns
// the stream and the first answer's error.
func (r *rogue) connect(t *testing.T, worker string) (pb.AgentService_ConnectClient, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := pb.NewAgentServiceClient(r.conn).Connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&pb.AgentMessage{Msg: &pb.AgentMessage_Hello{Hello: &pb.Hello{
		WorkerId: worker, Hostname: "rogue", Capacity: &pb.Resources{Slots: 8}}}}); err != nil {
		return nil, err
	}
	_, err = st.Recv()
	return st, err
}

func TestAWorkerIDSpeaksForOneCertificateOnly(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--heartbeat", "200ms", "--lease", "1500ms")
	victimDir := t.TempDir()
	victim := startAgent(t, srv.grpcAddr, victimDir, "--slots", "1")
	cl := dial(t, srv.grpcAddr)
	ctx := context.Background()
	flag := filepath.Join(jobDir(t), "go")
	id, err := cl.Submit(ctx, &pb.JobSpec{Script: "echo real-output; while [ ! -e " + flag + " ]; do sleep 0.05; done"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the job running on the victim", func() bool {
		j, err := cl.Get(ctx, id)
		return err == nil && j.GetState() == pb.JobState_JOB_STATE_RUNNING && j.GetWorker() == victim.id
	})

	t.Run("CannotJoinAsIt", func(t *testing.T) {
		// A fresh data dir holding the victim's worker id.
		stolen := t.TempDir()
		b, err := os.ReadFile(filepath.Join(victimDir, "worker-id"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(stolen, "worker-id"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		resp, err := cl.Admin().CreateToken(ctx, &pb.CreateTokenRequest{Role: "agent"})
		if err != nil {
			t.Fatal(err)
		}
		out, code := runAgentToExit(t, "--server", srv.grpcAddr, "--data-dir", stolen, "--join", resp.GetToken(), "--ca-fingerprint", resp.GetCaFingerprint())
		if code == 0 || !strings.Contains(out, "is already bound to another agent's certificate") {
			t.Fatalf("exit %d: %s", code, out)
		}
	})

	r := joinRogue(t, srv.grpcAddr, "w-rogue")
	t.Run("CannotRegisterAsIt", func(t *testing.T) {
		_, err := r.connect(t, victim.id)
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("Hello as the victim with the rogue's certificate: %v", err)
		}
	})
	t.Run("CannotReportForItsAttempts", func(t *testing.T) {
		st, err := r.connect(t, r.worker)
		if err != nil {
			t.Fatal(err)
		}
		send := func(m *pb.AgentMessage) {
			if err := st.Send(m); err != nil {
				t.Fatal(err)
			}
		}
		send(&pb.AgentMessage{Msg: &pb.AgentMessage_Log{Log: &pb.LogChunk{JobId: id, Attempt: 1, Offset: 0, Data: []byte("FAKE")}}})
		send(&pb.AgentMessage{Msg: &pb.AgentMessage_Log{Log: &pb.LogChunk{JobId: id, Attempt: 1, Offset: 1 << 20, Data: []byte("FAKE")}}})
		send(&pb.AgentMessage{Msg: &pb.AgentMessage_Finished{Finished: &pb.JobFinished{JobId: id, Attempt: 1,
			Outcome: pb.Outcome_OUTCOME_EXITED, ExitCode: 0}}})
		for range 3 {
			m, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if a := m.GetAck(); a == nil || a.GetError() == "" || !a.GetFinished() {
				t.Errorf("a forged report was not refused: %v", m)
			}
		}
	})
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, cl.Jobs(), id, 20*time.Second)
	out, _, _ := hodei(t, srv.grpcAddr, "logs", id)
	if j.GetState() != pb.JobState_JOB_STATE_COMPLETED || j.GetWorker() != victim.id || strings.Contains(out, "FAKE") || !strings.Contains(out, "real-output") {
		t.Fatalf("job %v, log %q: want the victim's own result and output", j, out)
	}
}

func TestRevokedWorkerIsCutOffAndItsJobsRetry(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--heartbeat", "200ms", "--lease", "1500ms", "--kill-grace", "1s")
	ag := startAgent(t, srv.grpcAddr, t.TempDir())
	cl := dial(t, srv.grpcAddr)
	ctx := context.Background()
	id, err := cl.Submit(ctx, &pb.JobSpec{Command: []string{"sleep", "60"}, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the job running", func() bool {
		j, err := cl.Get(ctx, id)
		return err == nil && j.GetState() == pb.JobState_JOB_STATE_RUNNING
	})
	out, errOut, code := hodei(t, srv.grpcAddr, "workers", "revoke", ag.id, "-o", "json")
	var w map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &w) != nil || w["revoked"] != true {
		t.Fatalf("workers revoke: exit %d, %s %s", code, out, errOut)
	}
	eventually(t, 20*time.Second, "the job back in the queue on a new attempt", func() bool {
		j, err := cl.Get(ctx, id)
		return err == nil && j.GetAttempt() == 2 && j.GetState() == pb.JobState_JOB_STATE_PENDING
	})
	eventually(t, 20*time.Second, "the agent told it was revoked", func() bool {
		return strings.Contains(ag.stderr.String(), "revoked")
	})
	ws, err := cl.ListWorkers(ctx)
	if err != nil || len(ws) != 1 || ws[0].GetState() != pb.WorkerState_WORKER_STATE_DOWN || !ws[0].GetRevoked() {
		t.Fatalf("workers after revoke: %v, %v", ws, err)
	}
}

func TestClientCertificateOfAnotherCAIsRefused(t *testing.T) {
	srv := startServer(t, t.TempDir())
	other, err := pki.EnsureCA(t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csr, err := pki.NewKeyAndCSR("w-forged")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := other.SignAgent(csr, "w-forged", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	conn := mtlsConn(t, srv.grpcAddr, credsFor(srv.grpcAddr).caPEM, cert)
	r := &rogue{conn: conn, worker: "w-forged"}
	_, err = r.connect(t, "w-forged")
	if c := status.Code(err); c != codes.Unavailable && c != codes.Unauthenticated {
		t.Fatalf("a certificate of another CA: %v, want the handshake refused", err)
	}
}
