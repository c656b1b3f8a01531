package pki

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkHandshake measures full TLS 1.3 handshakes (no resumption) over
// loopback TCP, as a reconnecting agent or a CLI call pays them: the client
// verifies the server against the CA file, or against the pin, and an agent
// also presents its certificate.
func BenchmarkHandshake(b *testing.B) {
	ca, dir := MustCA(b)
	serverCert, err := ca.EnsureServerCert(dir, nil, time.Now())
	require.NoError(b, err)
	pin, err := ParseFingerprint(ca.Fingerprint())
	require.NoError(b, err)
	keyPEM, certPEM := MustAgent(b, ca, "w-1")
	agentCert, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(b, err)
	withCA := func(cert *tls.Certificate) *tls.Config {
		cfg, err := ClientConfig(ca.PEM(), cert, "127.0.0.1")
		require.NoError(b, err)
		return cfg
	}
	for _, bc := range []struct {
		name   string
		client *tls.Config
	}{
		{"CAFile", withCA(nil)},
		{"Pinned", PinnedConfig(pin, "127.0.0.1")},
		{"AgentMTLS", withCA(&agentCert)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(b, err)
			done := make(chan struct{})
			scfg := ServerConfig(serverCert, ca.Pool())
			go func() {
				defer close(done)
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					tc := tls.Server(c, scfg)
					tc.Handshake()
					tc.Close()
				}
			}()
			b.Cleanup(func() {
				ln.Close()
				<-done
			})
			addr := ln.Addr().String()
			start := time.Now()
			for b.Loop() {
				conn, err := tls.Dial("tcp", addr, bc.client)
				if err != nil {
					b.Fatal(err)
				}
				conn.Close()
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "handshakes/s")
		})
	}
}

// BenchmarkSignAgent measures the server's side of a join: checking the
// request and signing the certificate.
func BenchmarkSignAgent(b *testing.B) {
	ca, _ := MustCA(b)
	_, csr, err := NewKeyAndCSR("w-1")
	require.NoError(b, err)
	start := time.Now()
	for b.Loop() {
		if _, _, err := ca.SignAgent(csr, "w-1", t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "certs/s")
}
