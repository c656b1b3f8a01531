package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/job"
	"github.com/stretchr/testify/require"
)

// MustAgent makes a key and has ca sign it for workerID; it returns the key
// and certificate PEMs.
func MustAgent(tb testing.TB, ca *CA, workerID string) (keyPEM, certPEM []byte) {
	tb.Helper()
	keyPEM, csr, err := NewKeyAndCSR(workerID)
	require.NoError(tb, err)
	certPEM, _, err = ca.SignAgent(csr, workerID, t0)
	require.NoError(tb, err)
	return keyPEM, certPEM
}

func TestAgentIdentity(t *testing.T) {
	ca, _ := MustCA(t)
	keyPEM, certPEM := MustAgent(t, ca, "w-1")

	t.Run("RoundTrip", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "agent")
		require.NoError(t, SaveAgentIdentity(dir, keyPEM, certPEM, ca.PEM()))
		require.Equal(t, os.FileMode(0o600), fileMode(t, filepath.Join(dir, AgentKeyFile)))
		require.Equal(t, os.FileMode(0o644), fileMode(t, filepath.Join(dir, AgentFile)))
		require.Equal(t, os.FileMode(0o644), fileMode(t, filepath.Join(dir, AgentCAFile)))
		require.Equal(t, os.FileMode(0o700), fileMode(t, dir))

		cert, pool, err := LoadAgentIdentity(dir)
		require.NoError(t, err)
		id, ok := WorkerID(cert.Leaf)
		require.True(t, ok)
		require.Equal(t, "w-1", id)
		_, err = cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		require.NoError(t, err)
	})
	t.Run("NotJoined", func(t *testing.T) {
		_, _, err := LoadAgentIdentity(t.TempDir())
		require.ErrorIs(t, err, os.ErrNotExist)
	})

	other, otherDir := MustCA(t)
	otherKey, otherCert := MustAgent(t, other, "w-1")
	server, err := ca.EnsureServerCert(otherDir, nil, t0)
	require.NoError(t, err)
	serverKey, err := encodeKey(server.PrivateKey.(*ecdsa.PrivateKey))
	require.NoError(t, err)
	for _, tc := range []struct {
		name             string
		key, cert, caPEM []byte
		want             string
	}{
		{"OtherCA", keyPEM, certPEM, other.PEM(), "not issued by the CA"},
		{"CertOfOtherCA", otherKey, otherCert, ca.PEM(), "not issued by the CA"},
		{"OtherKey", otherKey, certPEM, ca.PEM(), "does not match"},
		{"NoWorker", serverKey, encodeCert(server.Leaf.Raw), ca.PEM(), "names no worker"},
		{"NoCA", keyPEM, certPEM, nil, "CA: no PEM"},
	} {
		t.Run("Refused"+tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := SaveAgentIdentity(dir, tc.key, tc.cert, tc.caPEM)
			require.ErrorContains(t, err, tc.want)
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Empty(t, entries, "nothing written")
		})
	}
}

func TestSignAgent(t *testing.T) {
	ca, _ := MustCA(t)

	t.Run("IgnoresRequestedNames", func(t *testing.T) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject:        pkix.Name{CommonName: "admin", Organization: []string{"root"}},
			DNSNames:       []string{"localhost", "hodei.example.com"},
			IPAddresses:    []net.IP{net.IPv4(127, 0, 0, 1)},
			EmailAddresses: []string{"admin@example.com"},
			URIs:           []*url.URL{{Scheme: "hodei", Host: "worker", Path: "/w-admin"}},
		}, key)
		require.NoError(t, err)
		certPEM, serial, err := ca.SignAgent(csr, "w-2", t0)
		require.NoError(t, err)
		cert, err := parseCertPEM(certPEM)
		require.NoError(t, err)

		require.Equal(t, "w-2", cert.Subject.CommonName)
		require.Empty(t, cert.Subject.Organization)
		require.Empty(t, cert.DNSNames)
		require.Empty(t, cert.IPAddresses)
		require.Empty(t, cert.EmailAddresses)
		require.Len(t, cert.URIs, 1)
		require.Equal(t, "hodei://worker/w-2", cert.URIs[0].String())
		id, ok := WorkerID(cert)
		require.True(t, ok)
		require.Equal(t, "w-2", id)

		require.False(t, cert.IsCA)
		require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, cert.ExtKeyUsage)
		require.True(t, key.PublicKey.Equal(cert.PublicKey))
		require.NoError(t, cert.CheckSignatureFrom(ca.Cert()))
		require.Equal(t, t0.Add(AgentValidity).UTC(), cert.NotAfter.UTC())
		require.Equal(t, cert.SerialNumber.Text(16), serial)
		require.Greater(t, cert.SerialNumber.BitLen(), 64, "random 128-bit serial")
	})

	_, goodCSR, err := NewKeyAndCSR("w-3")
	require.NoError(t, err)
	tampered := mustTamper(t, goodCSR)
	weakRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	require.NoError(t, err)
	for _, tc := range []struct {
		name, worker string
		csr          []byte
		field, want  string
	}{
		{"TamperedCSR", "w-3", tampered, "csr_der", "signature does not verify"},
		{"GarbageCSR", "w-3", []byte("not a csr"), "csr_der", "not a PKCS #10 request"},
		{"WeakRSA", "w-3", mustCSR(t, weakRSA), "csr_der", "RSA key of 1024 bits is too short"},
		{"P224", "w-3", mustCSR(t, p224), "csr_der", "curve P-224 is not accepted"},
		{"EmptyWorker", "", goodCSR, "worker_id", "must be 1 to 256 bytes"},
		{"LongWorker", strings.Repeat("w", job.MaxIDLen+1), goodCSR, "worker_id", "must be 1 to 256 bytes"},
		{"ControlInWorker", "w\n-3", goodCSR, "worker_id", "control characters"},
		{"BadUTF8Worker", "w\xff", goodCSR, "worker_id", "not UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, _, err := ca.SignAgent(tc.csr, tc.worker, t0)
			require.Nil(t, cert)
			require.ErrorContains(t, err, tc.want)
			var fe *job.FieldError
			require.True(t, errors.As(err, &fe))
			require.Equal(t, tc.field, fe.Field)
		})
	}
}

func mustCSR(tb testing.TB, key any) []byte {
	tb.Helper()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, key)
	require.NoError(tb, err)
	return csr
}

// mustTamper returns csr with its subject's common name changed in place,
// so that it parses but its signature no longer covers it.
func mustTamper(tb testing.TB, csr []byte) []byte {
	tb.Helper()
	out := append([]byte(nil), csr...)
	i := strings.Index(string(out), "w-3")
	require.GreaterOrEqual(tb, i, 0)
	out[i] = 'x'
	parsed, err := x509.ParseCertificateRequest(out)
	require.NoError(tb, err, "still parses")
	require.Equal(tb, "x-3", parsed.Subject.CommonName)
	return out
}

func TestWorkerID(t *testing.T) {
	ca, _ := MustCA(t)
	for _, id := range []string{"w-1", "a/b", "with space", "ü-ñ", "100%", "x?y#z", "a:b@c"} {
		t.Run("RoundTrip/"+id, func(t *testing.T) {
			_, certPEM := MustAgent(t, ca, id)
			cert, err := parseCertPEM(certPEM)
			require.NoError(t, err)
			got, ok := WorkerID(cert)
			require.True(t, ok)
			require.Equal(t, id, got)
		})
	}
	for _, tc := range []struct {
		name string
		cn   string
		uris []string
	}{
		{"None", "w-1", nil},
		{"Two", "", []string{"hodei://worker/w-1", "hodei://worker/w-2"}},
		{"OtherScheme", "", []string{"spiffe://worker/w-1"}},
		{"OtherHost", "", []string{"hodei://admin/w-1"}},
		{"Nested", "", []string{"hodei://worker/a/b"}},
		{"Empty", "", []string{"hodei://worker/"}},
		{"Query", "", []string{"hodei://worker/w-1?x=1"}},
		{"UserInfo", "", []string{"hodei://u@worker/w-1"}},
		{"ControlChar", "", []string{"hodei://worker/w%0a1"}},
	} {
		t.Run("Refused"+tc.name, func(t *testing.T) {
			cert := &x509.Certificate{Subject: pkix.Name{CommonName: tc.cn}}
			for _, s := range tc.uris {
				u, err := url.Parse(s)
				require.NoError(t, err)
				cert.URIs = append(cert.URIs, u)
			}
			_, ok := WorkerID(cert)
			require.False(t, ok)
		})
	}
	t.Run("RefusedNil", func(t *testing.T) {
		_, ok := WorkerID(nil)
		require.False(t, ok)
	})
}
