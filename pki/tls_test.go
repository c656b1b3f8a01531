package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// served is what the test server saw of one connection.
type served struct {
	handshakeErr error
	state        tls.ConnectionState
	read         []byte // application bytes the handler read
}

// MustServe listens on 127.0.0.1:0 with cfg and serves connections one at
// a time: a handshake, then one read, echoed back. It reports each
// connection on the returned channel, and stops in t.Cleanup.
func MustServe(tb testing.TB, cfg *tls.Config) (addr string, conns <-chan served) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	ch := make(chan served, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ch <- serveOne(tls.Server(c, cfg))
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String(), ch
}

func serveOne(c *tls.Conn) served {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		return served{handshakeErr: err}
	}
	s := served{state: c.ConnectionState()}
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	s.read = buf[:n]
	c.Write(buf[:n])
	return s
}

// roundTrip dials addr with cfg, sends hello and reads the echo. dialErr is
// the handshake's error as the client sees it; err any later one.
func roundTrip(addr string, cfg *tls.Config) (dialErr, err error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: cfg}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return err, nil
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("hello")); err != nil {
		return nil, err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return nil, err
	}
	if string(buf) != "hello" {
		return nil, errors.New("echo: " + string(buf))
	}
	return nil, nil
}

func TestHandshake(t *testing.T) {
	ca, dir := MustCA(t)
	serverCert, err := ca.EnsureServerCert(dir, nil, time.Now())
	require.NoError(t, err)
	pin, err := ParseFingerprint(ca.Fingerprint())
	require.NoError(t, err)

	other, otherDir := MustCA(t)
	otherPin, err := ParseFingerprint(other.Fingerprint())
	require.NoError(t, err)
	// An impostor holds a certificate from another CA and presents the
	// pinned CA's certificate (public, after all) after it.
	impostor, err := other.EnsureServerCert(otherDir, nil, time.Now())
	require.NoError(t, err)
	impostor.Certificate = [][]byte{impostor.Leaf.Raw, ca.Cert().Raw}

	agentKey, agentPEM := MustAgent(t, ca, "w-1")
	agentCert, err := tls.X509KeyPair(agentPEM, agentKey)
	require.NoError(t, err)
	strangerKey, strangerPEM := MustAgent(t, other, "w-1")
	strangerCert, err := tls.X509KeyPair(strangerPEM, strangerKey)
	require.NoError(t, err)

	caFile := func(t *testing.T, caPEM []byte, cert *tls.Certificate) *tls.Config {
		cfg, err := ClientConfig(caPEM, cert, "127.0.0.1")
		require.NoError(t, err)
		return cfg
	}
	for _, tc := range []struct {
		name    string
		server  *tls.Config
		client  func(t *testing.T) *tls.Config
		dialErr string // the client's handshake fails with this
		refused bool   // the server refuses the client
		worker  string // the worker id the server sees
	}{
		{
			name:   "PinnedRightPin",
			server: ServerConfig(serverCert, ca.Pool()),
			client: func(*testing.T) *tls.Config { return PinnedConfig(pin, "127.0.0.1") },
		},
		{
			name:    "PinnedWrongPin",
			server:  ServerConfig(serverCert, ca.Pool()),
			client:  func(*testing.T) *tls.Config { return PinnedConfig(otherPin, "127.0.0.1") },
			dialErr: "CA fingerprint did not match: want " + other.Fingerprint() + ", server presented " + ca.Fingerprint(),
		},
		{
			name:    "PinnedWrongName",
			server:  ServerConfig(serverCert, ca.Pool()),
			client:  func(*testing.T) *tls.Config { return PinnedConfig(pin, "hodei.example.com") },
			dialErr: "does not verify against the pinned CA",
		},
		{
			name:    "PinnedImpostorPresentsCA",
			server:  ServerConfig(impostor, nil),
			client:  func(*testing.T) *tls.Config { return PinnedConfig(pin, "127.0.0.1") },
			dialErr: "does not verify against the pinned CA",
		},
		{
			name:    "PinnedNoCAPresented",
			server:  ServerConfig(tls.Certificate{Certificate: serverCert.Certificate[:1], PrivateKey: serverCert.PrivateKey}, nil),
			client:  func(*testing.T) *tls.Config { return PinnedConfig(pin, "127.0.0.1") },
			dialErr: "server presented no CA certificate",
		},
		{
			name:   "CAFile",
			server: ServerConfig(serverCert, ca.Pool()),
			client: func(t *testing.T) *tls.Config { return caFile(t, ca.PEM(), nil) },
		},
		{
			name:    "CAFileOfOtherCA",
			server:  ServerConfig(serverCert, ca.Pool()),
			client:  func(t *testing.T) *tls.Config { return caFile(t, other.PEM(), nil) },
			dialErr: "certificate signed by unknown authority",
		},
		{
			name:   "AgentCert",
			server: ServerConfig(serverCert, ca.Pool()),
			client: func(t *testing.T) *tls.Config { return caFile(t, ca.PEM(), &agentCert) },
			worker: "w-1",
		},
		{
			name:    "AgentCertOfOtherCA",
			server:  ServerConfig(serverCert, ca.Pool()),
			client:  func(t *testing.T) *tls.Config { return caFile(t, ca.PEM(), &strangerCert) },
			refused: true,
		},
		{
			name:    "AgentCertNoClientCAs",
			server:  ServerConfig(serverCert, nil),
			client:  func(t *testing.T) *tls.Config { return caFile(t, ca.PEM(), &agentCert) },
			refused: true,
		},
		{
			name:    "ServerCertAsClientCert",
			server:  ServerConfig(serverCert, ca.Pool()),
			client:  func(t *testing.T) *tls.Config { return caFile(t, ca.PEM(), &serverCert) },
			refused: true,
		},
		{
			name:   "TLS12Refused",
			server: ServerConfig(serverCert, ca.Pool()),
			client: func(t *testing.T) *tls.Config {
				cfg := caFile(t, ca.PEM(), nil)
				cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
				return cfg
			},
			dialErr: "protocol version",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, conns := MustServe(t, tc.server)
			dialErr, err := roundTrip(addr, tc.client(t))
			got := <-conns
			switch {
			case tc.dialErr != "":
				require.ErrorContains(t, dialErr, tc.dialErr)
				require.Error(t, got.handshakeErr)
				require.Empty(t, got.read, "the handler read application bytes")
			case tc.refused:
				require.Error(t, errors.Join(dialErr, err))
				require.ErrorContains(t, got.handshakeErr, "certificate")
				require.Empty(t, got.read)
			default:
				require.NoError(t, dialErr)
				require.NoError(t, err)
				require.NoError(t, got.handshakeErr)
				require.Equal(t, "hello", string(got.read))
				require.Equal(t, uint16(tls.VersionTLS13), got.state.Version)
				if tc.worker == "" {
					require.Empty(t, got.state.VerifiedChains)
					return
				}
				require.NotEmpty(t, got.state.VerifiedChains)
				id, ok := WorkerID(got.state.VerifiedChains[0][0])
				require.True(t, ok)
				require.Equal(t, tc.worker, id)
			}
		})
	}
}

func TestFetchCA(t *testing.T) {
	ca, dir := MustCA(t)
	serverCert, err := ca.EnsureServerCert(dir, nil, time.Now())
	require.NoError(t, err)
	addr, conns := MustServe(t, ServerConfig(serverCert, ca.Pool()))
	pin, err := ParseFingerprint(ca.Fingerprint())
	require.NoError(t, err)
	other, _ := MustCA(t)
	otherPin, err := ParseFingerprint(other.Fingerprint())
	require.NoError(t, err)

	t.Run("OK", func(t *testing.T) {
		caPEM, err := FetchCA(t.Context(), addr, pin)
		require.NoError(t, err)
		require.Equal(t, ca.PEM(), caPEM)
		<-conns
		// What it fetched verifies the server from then on.
		cfg, err := ClientConfig(caPEM, nil, ServerName(addr))
		require.NoError(t, err)
		dialErr, err := roundTrip(addr, cfg)
		require.NoError(t, errors.Join(dialErr, err))
		<-conns
	})
	t.Run("WrongPin", func(t *testing.T) {
		_, err := FetchCA(t.Context(), addr, otherPin)
		require.ErrorContains(t, err, "server presented "+ca.Fingerprint())
		require.Error(t, (<-conns).handshakeErr)
	})
	t.Run("Cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := FetchCA(ctx, addr, pin)
		require.ErrorIs(t, err, context.Canceled)
	})
}

func TestClientConfigNoCA(t *testing.T) {
	_, err := ClientConfig([]byte("junk"), nil, "127.0.0.1")
	require.ErrorContains(t, err, "no CA certificate")
}

// The server's pool must not be the system's: a nil pool means none.
func TestServerConfigNilPool(t *testing.T) {
	cfg := ServerConfig(tls.Certificate{}, nil)
	require.NotNil(t, cfg.ClientCAs)
	require.True(t, cfg.ClientCAs.Equal(x509.NewCertPool()))
	require.Equal(t, tls.VerifyClientCertIfGiven, cfg.ClientAuth)
	require.Equal(t, uint16(tls.VersionTLS13), cfg.MinVersion)
}
