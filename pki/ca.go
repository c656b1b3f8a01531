package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hodei-jobs/hodei/atomicfile"
	"github.com/hodei-jobs/hodei/job"
)

// File names in the server's dir.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	ServerFile    = "server.pem"
	ServerKeyFile = "server-key.pem"
)

// Validity periods, and the backdating that absorbs clock skew between the
// machine that signs and the one that verifies.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 365 * 24 * time.Hour
	AgentValidity  = 365 * 24 * time.Hour
	// ServerRenewBefore: EnsureServerCert makes a new server certificate
	// when the one on disk expires sooner than this.
	ServerRenewBefore = 30 * 24 * time.Hour
	backdate          = time.Hour
)

// CASubject is the common name of the cluster CA.
const CASubject = "hodei cluster CA"

// fingerprintPrefix names the hash of a fingerprint's text form.
const fingerprintPrefix = "sha256:"

// CA is the cluster's certificate authority: its certificate and the key
// that signs server and agent certificates. It is immutable and safe for
// concurrent use.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

// EnsureCA loads the CA from dir/ca.pem and dir/ca-key.pem, or makes one
// (ECDSA P-256, ten years from now) when neither file exists, creating dir
// (0700) if need be. It never overwrites: when only one of the two files
// exists, when they do not parse, or when the key does not match the
// certificate, it returns an error naming the file, and the operator
// decides; likewise when the CA has expired at now.
func EnsureCA(dir string, now time.Time) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		return loadCA(certPEM, keyPEM, certPath, keyPath, now)
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
		return createCA(dir, now)
	case certErr != nil && !errors.Is(certErr, os.ErrNotExist):
		return nil, fmt.Errorf("read CA: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, os.ErrNotExist):
		return nil, fmt.Errorf("read CA key: %w", keyErr)
	case certErr != nil:
		return nil, fmt.Errorf("CA key %s exists without its certificate: %w", keyPath, certErr)
	default:
		return nil, fmt.Errorf("CA certificate %s exists without its key: %w", certPath, keyErr)
	}
}

func loadCA(certPEM, keyPEM []byte, certPath, keyPath string, now time.Time) (*CA, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate %s: %w", certPath, err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("CA certificate %s: not a CA that may sign certificates", certPath)
	}
	key, err := parseECKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key %s: %w", keyPath, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("CA key %s does not match certificate %s", keyPath, certPath)
	}
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("CA certificate %s expired on %s: no certificate it signed verifies; move the data dir's certificates aside to make a new CA, and have agents join again",
			certPath, cert.NotAfter.Format(time.DateOnly))
	}
	return &CA{cert: cert, key: key, certPEM: encodeCert(cert.Raw)}, nil
}

func createCA(dir string, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: CASubject},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true, // it signs leaves only
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	certPEM := encodeCert(der)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	// Key first: a crash between the two leaves a key without a certificate,
	// which EnsureCA reports rather than silently replacing.
	if err := atomicfile.Create(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("write CA key: %w", err)
	}
	if err := atomicfile.Create(filepath.Join(dir, CAFile), certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write CA: %w", err)
	}
	return &CA{cert: cert, key: key, certPEM: certPEM}, nil
}

// Cert returns the CA certificate. The caller must not modify it.
func (ca *CA) Cert() *x509.Certificate { return ca.cert }

// PEM returns the CA certificate in PEM form, as written to ca.pem. The
// caller must not modify it.
func (ca *CA) PEM() []byte { return ca.certPEM }

// Fingerprint returns the CA certificate's fingerprint, the value agents
// and clients pin on first contact.
func (ca *CA) Fingerprint() string { return Fingerprint(ca.cert) }

// Pool returns a new pool holding only the CA certificate, for verifying
// agents' client certificates (ServerConfig) or the server (ClientConfig).
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return pool
}

// Fingerprint returns "sha256:" and the lowercase hex sha256 of the
// certificate's DER bytes.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return fingerprintPrefix + hex.EncodeToString(sum[:])
}

// ParseFingerprint parses the text form Fingerprint makes, "sha256:"
// followed by 64 hex digits, and returns the 32-byte hash. Case and
// surrounding space are ignored. Its errors wrap job.ErrInvalid (a
// *job.FieldError on "fingerprint") and say what is wrong with s.
func ParseFingerprint(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	ok := len(s) >= len(fingerprintPrefix) && strings.EqualFold(s[:len(fingerprintPrefix)], fingerprintPrefix)
	rest := s[min(len(s), len(fingerprintPrefix)):]
	if !ok {
		if strings.Contains(s, ":") {
			alg, _, _ := strings.Cut(s, ":")
			return nil, job.Invalid("fingerprint", "hash %q is not supported: must start with %q", alg, fingerprintPrefix)
		}
		return nil, job.Invalid("fingerprint", "%q must start with %q", s, fingerprintPrefix)
	}
	if len(rest) != 2*sha256.Size {
		return nil, job.Invalid("fingerprint", "must have %d hex digits after %q, not %d", 2*sha256.Size, fingerprintPrefix, len(rest))
	}
	sum, err := hex.DecodeString(rest)
	if err != nil {
		return nil, job.Invalid("fingerprint", "%q is not hexadecimal", rest)
	}
	return sum, nil
}

// newSerial returns a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	if serial.Sign() == 0 { // serials must be positive; 2^-128 odds
		serial.SetInt64(1)
	}
	return serial, nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// parseCertPEM parses the first CERTIFICATE block of data.
func parseCertPEM(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// parseECKeyPEM parses an ECDSA key in PKCS #8 or SEC 1 PEM.
func parseECKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("key is %T, not ECDSA", k)
		}
		return ec, nil
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
}
