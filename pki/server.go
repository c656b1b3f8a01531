package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hodei-jobs/hodei/atomicfile"
	"github.com/hodei-jobs/hodei/job"
)

// ServerSubject is the common name of server certificates the CA makes.
// Clients match names against SANs, never against it.
const ServerSubject = "hodei server"

// EnsureServerCert loads dir/server.pem and dir/server-key.pem, or makes
// them, signed by ca, when they are missing, unreadable, not signed by ca,
// short of a wanted name, or expire within ServerRenewBefore of now. The
// wanted names are 127.0.0.1, ::1, localhost, this machine's hostname and
// hosts, each an IP address or a DNS name (a host:port is taken as its
// host). A new certificate lasts ServerValidity.
//
// The returned tls.Certificate carries the CA certificate after the leaf, so
// a client that knows only the CA's fingerprint can pin it from the
// handshake (PinnedConfig). Errors: an invalid host is a *job.FieldError on
// "hosts"; I/O and signing errors are wrapped.
func (ca *CA) EnsureServerCert(dir string, hosts []string, now time.Time) (tls.Certificate, error) {
	ips, names, err := serverNames(hosts)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPath, keyPath := filepath.Join(dir, ServerFile), filepath.Join(dir, ServerKeyFile)
	if leaf, key, ok := ca.loadServerCert(certPath, keyPath, ips, names, now); ok {
		return ca.tlsCert(leaf, key), nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: ServerSubject},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(ServerValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create server certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	// Key first: a crash in between leaves a certificate that does not match
	// the key, which the next start detects and replaces.
	if err := atomicfile.Write(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("write server key: %w", err)
	}
	if err := atomicfile.Write(certPath, encodeCert(der), 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("write server certificate: %w", err)
	}
	return ca.tlsCert(leaf, key), nil
}

// loadServerCert returns the certificate on disk when it may be kept.
func (ca *CA) loadServerCert(certPath, keyPath string, ips []net.IP, names []string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, bool) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, false
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, false
	}
	leaf, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, nil, false
	}
	key, err := parseECKeyPEM(keyPEM)
	if err != nil || !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, nil, false
	}
	if leaf.CheckSignatureFrom(ca.cert) != nil || leaf.NotAfter.Sub(now) < ServerRenewBefore || now.Before(leaf.NotBefore) {
		return nil, nil, false
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return nil, nil, false
		}
	}
	for _, n := range names {
		if !slices.Contains(leaf.DNSNames, n) {
			return nil, nil, false
		}
	}
	return leaf, key, true
}

func (ca *CA) tlsCert(leaf *x509.Certificate, key *ecdsa.PrivateKey) tls.Certificate {
	return tls.Certificate{
		Certificate: [][]byte{leaf.Raw, ca.cert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}
}

// serverNames splits the wanted names of a server certificate into IPs and
// DNS names, defaults first, without duplicates.
func serverNames(hosts []string) ([]net.IP, []string, error) {
	ips := []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	names := []string{"localhost"}
	// The hostname is wanted when it is a usable name; an odd one is no
	// reason to refuse to start.
	if h, err := os.Hostname(); err == nil {
		if h = strings.ToLower(strings.TrimSuffix(h, ".")); validDNSName(h) && h != "localhost" {
			names = append(names, h)
		}
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if !validDNSName(h) {
			return nil, nil, job.Invalid("hosts", "%q is neither an IP address nor a DNS name", h)
		}
		if !slices.Contains(names, h) {
			names = append(names, h)
		}
	}
	return ips, names, nil
}

// validDNSName accepts names of letters, digits, '-' and '_' in labels of
// 1 to 63 bytes, and a leading "*." wildcard.
func validDNSName(name string) bool {
	if len(name) > 253 {
		return false
	}
	name = strings.TrimPrefix(name, "*.")
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// LoadServerCert loads an operator's certificate chain and key (PEM files,
// as tls.LoadX509KeyPair reads them). The chain in certFile should end with
// the issuing CA when clients are to pin it; otherwise clients need the CA
// file (ClientConfig).
func LoadServerCert(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load server certificate %s: %w", certFile, err)
	}
	if cert.Leaf == nil {
		return tls.Certificate{}, errors.New("load server certificate: no leaf")
	}
	return cert, nil
}

// ServerConfig returns the listening side's TLS config: TLS 1.3 only,
// serving cert, and verifying a client certificate against clientCAs when
// one is presented (tls.VerifyClientCertIfGiven): agents present theirs,
// people and scripts authenticate with tokens instead. A nil clientCAs
// trusts no client certificate at all (never the system roots). The
// handler reads the agent's identity with WorkerID on
// ConnectionState().VerifiedChains[0][0], and must itself refuse revoked
// workers.
func ServerConfig(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	if clientCAs == nil {
		clientCAs = x509.NewCertPool()
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    clientCAs,
	}
}
