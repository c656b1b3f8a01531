package pki

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

// The configs work under gRPC as the server, agent and CLI will use them:
// FetchCA against a gRPC listener, a pinned first call, and an agent's
// certificate read back through peer.FromContext.
func TestGRPC(t *testing.T) {
	ca, dir := MustCA(t)
	serverCert, err := ca.EnsureServerCert(dir, nil, time.Now())
	require.NoError(t, err)
	pin, err := ParseFingerprint(ca.Fingerprint())
	require.NoError(t, err)

	workers := make(chan string, 4)
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(ServerConfig(serverCert, ca.Pool()))),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			id := ""
			if p, ok := peer.FromContext(ctx); ok {
				if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 {
					id, _ = WorkerID(info.State.VerifiedChains[0][0])
				}
			}
			workers <- id
			return h(ctx, req)
		}),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		require.NoError(t, <-served)
	})
	addr := ln.Addr().String()

	check := func(t *testing.T, cfg *tls.Config) error {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		require.NoError(t, err)
		defer conn.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}

	t.Run("FetchCA", func(t *testing.T) {
		caPEM, err := FetchCA(t.Context(), addr, pin)
		require.NoError(t, err)
		require.Equal(t, ca.PEM(), caPEM)
	})
	t.Run("Pinned", func(t *testing.T) {
		require.NoError(t, check(t, PinnedConfig(pin, ServerName(addr))))
		require.Equal(t, "", <-workers)
	})
	t.Run("Agent", func(t *testing.T) {
		keyPEM, certPEM := MustAgent(t, ca, "w-9")
		agentDir := t.TempDir()
		require.NoError(t, SaveAgentIdentity(agentDir, keyPEM, certPEM, ca.PEM()))
		cert, _, err := LoadAgentIdentity(agentDir)
		require.NoError(t, err)
		cfg, err := ClientConfig(ca.PEM(), &cert, ServerName(addr))
		require.NoError(t, err)
		require.NoError(t, check(t, cfg))
		require.Equal(t, "w-9", <-workers)
	})
	t.Run("WrongPin", func(t *testing.T) {
		other, _ := MustCA(t)
		otherPin, err := ParseFingerprint(other.Fingerprint())
		require.NoError(t, err)
		require.ErrorContains(t, check(t, PinnedConfig(otherPin, ServerName(addr))), "CA fingerprint did not match")
	})
}
