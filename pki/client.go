package pki

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// ServerName returns the name a client verifies the server as when it
// dials addr: the host of host:port ("127.0.0.1:7070" → "127.0.0.1",
// "[::1]:7070" → "::1"), or addr itself when it has no port. An IP address
// must then match one of the certificate's IP SANs, a name one of its DNS
// SANs.
func ServerName(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
}

// Loopback reports whether addr (host:port) names a loopback host: a
// loopback IP or localhost. An empty host (every interface) is not one.
func Loopback(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(h)
	return h == "localhost" || (ip != nil && ip.IsLoopback())
}

// ClientConfig returns a TLS 1.3 config that verifies the server against
// the CA certificates in caPEM, and only those, for serverName (see
// ServerName). When cert is not nil it is presented as the client
// certificate (an agent's, from LoadAgentIdentity). It fails when caPEM
// holds no certificate.
func ClientConfig(caPEM []byte, cert *tls.Certificate, serverName string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("client TLS: no CA certificate in the CA PEM")
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    pool,
		ServerName: serverName,
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg, nil
}

// PinnedConfig returns a TLS 1.3 config for first contact, when the client
// knows only the sha256 of the cluster CA (pin, from ParseFingerprint).
// The handshake succeeds only when one of the certificates the server
// presents is a CA whose sha256 equals pin and the server's leaf verifies
// against that CA, alone, for serverName, at the current time, for server
// authentication. Otherwise it fails, before the client sends any
// application data, with an error that names the fingerprint presented.
//
// It sets InsecureSkipVerify, which only turns off crypto/tls's own chain
// check against the system roots: the VerifyConnection hook does the whole
// check instead, as above, on every handshake including resumed ones. This
// is the standard pinning pattern; the config does not trust anything the
// pin does not.
func PinnedConfig(pin []byte, serverName string) *tls.Config {
	pin = bytes.Clone(pin)
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		ServerName:         serverName,
		InsecureSkipVerify: true, // VerifyConnection verifies the chain against the pinned CA
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyPinned(cs.PeerCertificates, pin, serverName, time.Now())
			return err
		},
	}
}

// verifyPinned returns the pinned CA after checking the chain as
// PinnedConfig documents.
func verifyPinned(certs []*x509.Certificate, pin []byte, serverName string, now time.Time) (*x509.Certificate, error) {
	if len(certs) == 0 {
		return nil, errors.New("server presented no certificate")
	}
	if serverName == "" {
		return nil, errors.New("no server name to verify the server's certificate for")
	}
	var ca *x509.Certificate
	var presented []string
	for _, c := range certs {
		if !c.IsCA || !c.BasicConstraintsValid {
			continue
		}
		if sum := sha256.Sum256(c.Raw); bytes.Equal(sum[:], pin) {
			ca = c
			break
		}
		presented = append(presented, Fingerprint(c))
	}
	if ca == nil {
		if len(presented) == 0 {
			return nil, fmt.Errorf("CA fingerprint did not match: want sha256:%x, server presented no CA certificate (leaf %s)", pin, Fingerprint(certs[0]))
		}
		return nil, fmt.Errorf("CA fingerprint did not match: want sha256:%x, server presented %s", pin, strings.Join(presented, ", "))
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		if c != ca {
			inter.AddCert(c)
		}
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		DNSName:       serverName,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return nil, fmt.Errorf("server certificate does not verify against the pinned CA: %w", err)
	}
	return ca, nil
}

// FetchCA dials addr over TLS pinned to pin (see PinnedConfig), and returns
// the pinned CA certificate in PEM, for the client or agent to keep and use
// with ClientConfig from then on. It offers ALPN "h2", so a gRPC server
// completes the handshake. ctx bounds the dial and the handshake.
func FetchCA(ctx context.Context, addr string, pin []byte) (caPEM []byte, err error) {
	name := ServerName(addr)
	cfg := PinnedConfig(pin, name)
	cfg.NextProtos = []string{"h2"}
	d := tls.Dialer{Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fetch CA from %s: %w", addr, err)
	}
	defer conn.Close()
	state := conn.(*tls.Conn).ConnectionState()
	ca, err := verifyPinned(state.PeerCertificates, pin, name, time.Now())
	if err != nil { // the handshake checked it already; this finds the CA again
		return nil, fmt.Errorf("fetch CA from %s: %w", addr, err)
	}
	return encodeCert(ca.Raw), nil
}
