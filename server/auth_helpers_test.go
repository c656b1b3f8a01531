package server

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/hodei-jobs/hodei/pki"
	pb "github.com/hodei-jobs/hodei/proto"
)

// adminToken is the bootstrap admin token the server wrote.
func (s *sut) adminToken(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// clientTLS verifies the server against its CA, presenting cert if given.
func (s *sut) clientTLS(t testing.TB, cert *tls.Certificate) *tls.Config {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(s.dir, TLSDir, pki.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.ClientConfig(caPEM, cert, pki.ServerName(s.srv.GRPCAddr()))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// tokenCreds sends a token on every call, whatever the transport.
type tokenCreds string

func (c tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(c)}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return false }

// dialToken connects over TLS with token ("" sends none).
func (s *sut) dialToken(t testing.TB, token string) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(s.clientTLS(t, nil)))}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(tokenCreds(token)))
	}
	conn, err := grpc.NewClient(s.srv.GRPCAddr(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// createToken issues a token through the API with the admin token.
func (s *sut) createToken(t testing.TB, role string, tenants ...string) (string, *pb.TokenInfo) {
	t.Helper()
	resp, err := s.admin.CreateToken(context.Background(), &pb.CreateTokenRequest{Role: role, Tenants: tenants, Name: "test-" + role})
	if err != nil {
		t.Fatalf("create %s token: %v", role, err)
	}
	return resp.GetToken(), resp.GetInfo()
}

// joinAgent joins worker through the Join RPC with a fresh agent token and
// returns its client certificate.
func (s *sut) joinAgent(t testing.TB, worker string) tls.Certificate {
	t.Helper()
	tok, _ := s.createToken(t, "agent")
	keyPEM, csr, err := pki.NewKeyAndCSR(worker)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := pb.NewAgentServiceClient(s.dialToken(t, tok)).Join(context.Background(),
		&pb.JoinRequest{WorkerId: worker, CsrDer: csr, Hostname: "test"})
	if err != nil {
		t.Fatalf("join %s: %v", worker, err)
	}
	cert, err := tls.X509KeyPair(resp.GetCertificatePem(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// agentConn is an mTLS connection for worker, joined on first use and
// kept for the test, so that a reconnect presents the same certificate.
func (s *sut) agentConn(t testing.TB, worker string) *grpc.ClientConn {
	t.Helper()
	s.mu.Lock()
	conn, ok := s.agentConns[worker]
	s.mu.Unlock()
	if ok {
		return conn
	}
	cert := s.joinAgent(t, worker)
	conn, err := grpc.NewClient(s.srv.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(s.clientTLS(t, &cert))))
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.agentConns[worker] = conn
	s.mu.Unlock()
	return conn
}

// httpURL is the URL of path on the server's HTTP listener (plain HTTP on
// loopback: see Server.httpsOn).
func (s *sut) httpURL(path string) string { return s.srv.HTTPURL() + path }

// httpClient verifies the server's HTTP listener against its CA.
func (s *sut) httpClient(t testing.TB) *http.Client {
	cfg := s.clientTLS(t, nil)
	cfg.ServerName = pki.ServerName(s.srv.HTTPAddr())
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
}
