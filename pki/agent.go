package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hodei-jobs/hodei/atomicfile"
	"github.com/hodei-jobs/hodei/job"
)

// File names in the agent's dir.
const (
	AgentFile    = "agent.pem"
	AgentKeyFile = "agent-key.pem"
	AgentCAFile  = "ca.pem"
)

// The URI SAN that names an agent's worker: hodei://worker/<escaped id>.
const (
	workerScheme = "hodei"
	workerHost   = "worker"
)

// SignAgent issues the client certificate of worker workerID for the key in
// csrDER, a PKCS #10 request in DER. It checks the request's signature (the
// requester holds the key) and takes nothing else from it: the subject is
// CN=workerID, the only SAN is the URI hodei://worker/<workerID> (escaped),
// the only use is client authentication, and it lasts AgentValidity from
// now. It returns the certificate in PEM and its serial number in lowercase
// hex, for the audit log.
//
// Errors wrap job.ErrInvalid: a *job.FieldError on "worker_id" when the id
// is empty, longer than job.MaxIDLen, or holds control characters or bad
// UTF-8; on "csr_der" when the request does not parse, its signature is
// wrong, or its key is not ECDSA P-256/P-384, Ed25519 or RSA of 2048 bits
// or more.
func (ca *CA) SignAgent(csrDER []byte, workerID string, now time.Time) (certPEM []byte, serial string, err error) {
	if err := checkWorkerID(workerID); err != nil {
		return nil, "", err
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", job.Invalid("csr_der", "not a PKCS #10 request"), err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, "", fmt.Errorf("%w: %w", job.Invalid("csr_der", "signature does not verify"), err)
	}
	if err := checkAgentKey(csr.PublicKey); err != nil {
		return nil, "", err
	}
	sn, err := newSerial()
	if err != nil {
		return nil, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: workerID},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(AgentValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{workerURI(workerID)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, "", fmt.Errorf("sign agent certificate: %w", err)
	}
	return encodeCert(der), sn.Text(16), nil
}

func checkWorkerID(id string) error {
	switch {
	case id == "" || len(id) > job.MaxIDLen:
		return job.Invalid("worker_id", "%q must be 1 to %d bytes", id, job.MaxIDLen)
	case !utf8.ValidString(id):
		return job.Invalid("worker_id", "%q is not UTF-8", id)
	case strings.ContainsFunc(id, unicode.IsControl):
		return job.Invalid("worker_id", "%q holds control characters", id)
	}
	return nil
}

func checkAgentKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return job.Invalid("csr_der", "ECDSA curve %s is not accepted: use P-256 or P-384", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return nil
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return nil
		}
		return job.Invalid("csr_der", "RSA key of %d bits is too short: use 2048 or more", k.N.BitLen())
	default:
		return job.Invalid("csr_der", "key type %T is not accepted", pub)
	}
}

func workerURI(id string) *url.URL {
	return &url.URL{Scheme: workerScheme, Host: workerHost, Path: "/" + id, RawPath: "/" + url.PathEscape(id)}
}

// WorkerID returns the worker id a certificate was issued for, read from
// its one hodei://worker/<id> URI SAN, the only source trusted (never the
// common name). It reports false when there is no such SAN, more than one,
// or one that does not decode to a valid id. It checks no signature: call
// it on the leaf of a chain crypto/tls has verified
// (ConnectionState().VerifiedChains[0][0]), never on PeerCertificates.
func WorkerID(cert *x509.Certificate) (string, bool) {
	if cert == nil {
		return "", false
	}
	var id string
	found := 0
	for _, u := range cert.URIs {
		if u.Scheme != workerScheme || u.Host != workerHost {
			continue
		}
		found++
		escaped, ok := strings.CutPrefix(u.EscapedPath(), "/")
		if !ok || strings.Contains(escaped, "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return "", false
		}
		s, err := url.PathUnescape(escaped)
		if err != nil || checkWorkerID(s) != nil {
			return "", false
		}
		id = s
	}
	return id, found == 1
}

// NewKeyAndCSR makes an agent's key (ECDSA P-256) and a certificate
// request for it, CN=workerID. It returns the key in PKCS #8 PEM, for
// SaveAgentIdentity, and the request in DER, for the Join call. The key
// never leaves the agent.
func NewKeyAndCSR(workerID string) (keyPEM []byte, csrDER []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("agent key: %w", err)
	}
	csrDER, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: workerID},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate request: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("agent key: %w", err)
	}
	return keyPEM, csrDER, nil
}

// SaveAgentIdentity writes what an agent got from joining into dir
// (created 0700 if need be): agent-key.pem (0600), ca.pem and, last,
// agent.pem (0644), each atomically, so that a crash leaves the agent
// either joined or not. It first checks that certPEM holds a worker
// certificate for keyPEM issued by the CA in caPEM, and writes nothing
// otherwise.
func SaveAgentIdentity(dir string, keyPEM, certPEM, caPEM []byte) error {
	if _, _, err := agentIdentity(keyPEM, certPEM, caPEM); err != nil {
		return fmt.Errorf("save agent identity: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save agent identity: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{AgentKeyFile, keyPEM, 0o600},
		{AgentCAFile, caPEM, 0o644},
		{AgentFile, certPEM, 0o644},
	} {
		if err := atomicfile.Write(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("save agent identity: %w", err)
		}
	}
	return nil
}

// LoadAgentIdentity reads what SaveAgentIdentity wrote: the agent's
// certificate (with its Leaf set) for ClientConfig, and a pool holding the
// cluster CA. When the agent has not joined yet (no agent.pem) the error
// wraps os.ErrNotExist. It does not check expiry: the handshake does.
func LoadAgentIdentity(dir string) (tls.Certificate, *x509.CertPool, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, AgentFile))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("agent identity: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, AgentKeyFile))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("agent identity: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, AgentCAFile))
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("agent identity: %w", err)
	}
	cert, pool, err := agentIdentity(keyPEM, certPEM, caPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("agent identity in %s: %w", dir, err)
	}
	return cert, pool, nil
}

// agentIdentity checks that the three PEMs belong together.
func agentIdentity(keyPEM, certPEM, caPEM []byte) (tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	if _, ok := WorkerID(cert.Leaf); !ok {
		return tls.Certificate{}, nil, errors.New("certificate names no worker")
	}
	ca, err := parseCertPEM(caPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("CA: %w", err)
	}
	if err := cert.Leaf.CheckSignatureFrom(ca); err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("certificate not issued by the CA: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return cert, pool, nil
}
