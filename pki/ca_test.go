package pki

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is the time tests make certificates at; real handshakes check against
// the wall clock, so it is close to it.
var t0 = time.Now().Truncate(time.Second)

// MustCA makes a CA in a fresh temporary dir.
func MustCA(tb testing.TB) (*CA, string) {
	tb.Helper()
	dir := tb.TempDir()
	ca, err := EnsureCA(dir, t0)
	require.NoError(tb, err)
	return ca, dir
}

func fileMode(tb testing.TB, path string) os.FileMode {
	tb.Helper()
	fi, err := os.Stat(path)
	require.NoError(tb, err)
	return fi.Mode().Perm()
}

func TestEnsureCA(t *testing.T) {
	t.Run("CreatedOnceReloadedIdentically", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		ca, err := EnsureCA(dir, t0)
		require.NoError(t, err)
		c := ca.Cert()
		require.True(t, c.IsCA)
		require.Equal(t, CASubject, c.Subject.CommonName)
		require.NotZero(t, c.KeyUsage&0x20, "KeyUsageCertSign")
		require.Equal(t, t0.Add(CAValidity).UTC(), c.NotAfter.UTC())
		require.NoError(t, c.CheckSignatureFrom(c), "self-signed")
		require.Equal(t, os.FileMode(0o644), fileMode(t, filepath.Join(dir, CAFile)))
		require.Equal(t, os.FileMode(0o600), fileMode(t, filepath.Join(dir, CAKeyFile)))
		require.Equal(t, os.FileMode(0o700), fileMode(t, dir))

		again, err := EnsureCA(dir, t0.Add(time.Hour))
		require.NoError(t, err)
		require.Equal(t, c.Raw, again.Cert().Raw)
		require.Equal(t, ca.PEM(), again.PEM())
		require.Equal(t, ca.Fingerprint(), again.Fingerprint())
		onDisk, err := os.ReadFile(filepath.Join(dir, CAFile))
		require.NoError(t, err)
		require.Equal(t, onDisk, ca.PEM())
	})

	other, otherDir := MustCA(t)
	otherKey, err := os.ReadFile(filepath.Join(otherDir, CAKeyFile))
	require.NoError(t, err)
	for _, tc := range []struct {
		name  string
		files map[string][]byte // written into an empty dir first
		want  string
	}{
		{"KeyWithoutCert", map[string][]byte{CAKeyFile: otherKey}, "exists without its certificate"},
		{"CertWithoutKey", map[string][]byte{CAFile: other.PEM()}, "exists without its key"},
		{"CertNotPEM", map[string][]byte{CAFile: []byte("junk"), CAKeyFile: otherKey}, "no PEM CERTIFICATE block"},
		{"KeyNotPEM", map[string][]byte{CAFile: other.PEM(), CAKeyFile: []byte("junk")}, "no PEM block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tc.files {
				require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
			}
			_, err := EnsureCA(dir, t0)
			require.ErrorContains(t, err, tc.want)
			for name, data := range tc.files { // never overwritten
				got, err := os.ReadFile(filepath.Join(dir, name))
				require.NoError(t, err)
				require.Equal(t, data, got)
			}
		})
	}

	t.Run("Expired", func(t *testing.T) {
		_, dir := MustCA(t)
		_, err := EnsureCA(dir, t0.Add(CAValidity+time.Second))
		require.ErrorContains(t, err, "expired on")
	})
	t.Run("KeyMismatch", func(t *testing.T) {
		_, dir := MustCA(t)
		require.NoError(t, os.WriteFile(filepath.Join(dir, CAKeyFile), otherKey, 0o600))
		_, err := EnsureCA(dir, t0)
		require.ErrorContains(t, err, "does not match")
	})
}

func TestFingerprint(t *testing.T) {
	ca, _ := MustCA(t)
	fp := ca.Fingerprint()
	require.Regexp(t, regexp.MustCompile(`^sha256:[0-9a-f]{64}$`), fp)
	sum := sha256.Sum256(ca.Cert().Raw)
	for _, tc := range []struct{ name, in string }{
		{"AsMade", fp},
		{"UpperCase", strings.ToUpper(fp)},
		{"SurroundingSpace", " " + fp + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFingerprint(tc.in)
			require.NoError(t, err)
			require.Equal(t, sum[:], got)
		})
	}
}

func TestParseFingerprint(t *testing.T) {
	hex64 := hex.EncodeToString(make([]byte, 32))
	for _, tc := range []struct {
		name, in, want string
	}{
		{"Empty", "", `"" must start with "sha256:"`},
		{"NoPrefix", hex64, `must start with "sha256:"`},
		{"OtherHash", "md5:" + hex64[:32], `hash "md5" is not supported`},
		{"Short", "sha256:" + hex64[:63], "must have 64 hex digits after \"sha256:\", not 63"},
		{"Long", "sha256:" + hex64 + "00", "not 66"},
		{"NotHex", "sha256:" + strings.Repeat("zz", 32), "is not hexadecimal"},
		{"Colons", "sha256:" + strings.Repeat("00:", 31) + "00", "not 95"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFingerprint(tc.in)
			require.ErrorContains(t, err, tc.want)
			require.ErrorIs(t, err, job.ErrInvalid)
			var fe *job.FieldError
			require.True(t, errors.As(err, &fe))
			require.Equal(t, "fingerprint", fe.Field)
		})
	}
}
