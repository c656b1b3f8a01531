package pki

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/stretchr/testify/require"
)

func TestEnsureServerCert(t *testing.T) {
	ca, dir := MustCA(t)
	first, err := ca.EnsureServerCert(dir, []string{"10.1.2.3", "hodei.example.com", "node-7:7070"}, t0)
	require.NoError(t, err)

	t.Run("Names", func(t *testing.T) {
		leaf := first.Leaf
		wantIPs := []string{"127.0.0.1", "::1", "10.1.2.3"}
		for _, ip := range wantIPs {
			require.NoError(t, leaf.VerifyHostname(ip), ip)
		}
		require.Len(t, leaf.IPAddresses, len(wantIPs))
		for _, name := range []string{"localhost", "hodei.example.com", "node-7"} {
			require.NoError(t, leaf.VerifyHostname(name), name)
		}
		if h, err := os.Hostname(); err == nil && validDNSName(h) {
			require.NoError(t, leaf.VerifyHostname(h), "hostname")
		}
		require.Error(t, leaf.VerifyHostname("10.1.2.4"))
		require.False(t, leaf.IsCA)
	})
	t.Run("ChainEndsWithCA", func(t *testing.T) {
		require.Len(t, first.Certificate, 2)
		require.Equal(t, first.Leaf.Raw, first.Certificate[0])
		require.Equal(t, ca.Cert().Raw, first.Certificate[1])
		require.NoError(t, first.Leaf.CheckSignatureFrom(ca.Cert()))
	})
	t.Run("Files", func(t *testing.T) {
		require.Equal(t, os.FileMode(0o600), fileMode(t, filepath.Join(dir, ServerKeyFile)))
		require.Equal(t, os.FileMode(0o644), fileMode(t, filepath.Join(dir, ServerFile)))
	})

	other, _ := MustCA(t)
	for _, tc := range []struct {
		name  string
		ca    *CA
		hosts []string
		now   time.Time
		kept  bool
	}{
		{"SameHostsKept", ca, []string{"10.1.2.3", "hodei.example.com", "node-7:7070"}, t0.Add(time.Hour), true},
		{"FewerHostsKept", ca, []string{"HODEI.example.com."}, t0.Add(time.Hour), true},
		{"NewIPRemade", ca, []string{"10.1.2.3", "10.9.9.9"}, t0.Add(time.Hour), false},
		{"NewNameRemade", ca, []string{"other.example.com"}, t0.Add(time.Hour), false},
		{"FarFromExpiryKept", ca, nil, t0.Add(ServerValidity - ServerRenewBefore - time.Hour), true},
		{"NearExpiryRemade", ca, nil, t0.Add(ServerValidity - ServerRenewBefore + time.Hour), false},
		{"OtherCARemade", other, nil, t0.Add(time.Hour), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			copyFiles(t, dir, d, ServerFile, ServerKeyFile)
			got, err := tc.ca.EnsureServerCert(d, tc.hosts, tc.now)
			require.NoError(t, err)
			require.Equal(t, tc.kept, got.Leaf.Equal(first.Leaf))
			require.NoError(t, got.Leaf.CheckSignatureFrom(tc.ca.Cert()))
			for _, h := range tc.hosts {
				require.NoError(t, got.Leaf.VerifyHostname(ServerName(h)), h)
			}
			if !tc.kept {
				require.Equal(t, tc.now.Add(ServerValidity).UTC(), got.Leaf.NotAfter.UTC())
				again, err := tc.ca.EnsureServerCert(d, tc.hosts, tc.now)
				require.NoError(t, err)
				require.True(t, again.Leaf.Equal(got.Leaf), "the new one was saved")
			}
		})
	}

	t.Run("KeyMismatchRemade", func(t *testing.T) {
		d := t.TempDir()
		copyFiles(t, dir, d, ServerFile)
		k, err := os.ReadFile(filepath.Join(dir, CAKeyFile)) // not the server's key
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(d, ServerKeyFile), k, 0o600))
		got, err := ca.EnsureServerCert(d, nil, t0)
		require.NoError(t, err)
		require.False(t, got.Leaf.Equal(first.Leaf))
	})

	for _, tc := range []struct{ name, host string }{
		{"Space", "a b"},
		{"Slash", "a/b"},
		{"EmptyLabel", "a..b"},
		{"DashLabel", "-a.b"},
	} {
		t.Run("Invalid"+tc.name, func(t *testing.T) {
			_, err := ca.EnsureServerCert(t.TempDir(), []string{tc.host}, t0)
			require.ErrorIs(t, err, job.ErrInvalid)
			require.ErrorContains(t, err, "hosts: ")
		})
	}
}

func copyFiles(tb testing.TB, from, to string, names ...string) {
	tb.Helper()
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(from, n))
		require.NoError(tb, err)
		require.NoError(tb, os.WriteFile(filepath.Join(to, n), b, 0o600))
	}
}

func TestLoadServerCert(t *testing.T) {
	ca, dir := MustCA(t)
	made, err := ca.EnsureServerCert(dir, nil, t0)
	require.NoError(t, err)
	t.Run("OK", func(t *testing.T) {
		got, err := LoadServerCert(filepath.Join(dir, ServerFile), filepath.Join(dir, ServerKeyFile))
		require.NoError(t, err)
		require.True(t, got.Leaf.Equal(made.Leaf))
	})
	t.Run("Missing", func(t *testing.T) {
		_, err := LoadServerCert(filepath.Join(dir, "nope.pem"), filepath.Join(dir, ServerKeyFile))
		require.ErrorIs(t, err, os.ErrNotExist)
	})
	t.Run("WrongKey", func(t *testing.T) {
		_, err := LoadServerCert(filepath.Join(dir, ServerFile), filepath.Join(dir, CAKeyFile))
		require.ErrorContains(t, err, "does not match")
	})
}

func TestServerName(t *testing.T) {
	for _, tc := range []struct{ name, addr, want string }{
		{"IPv4Port", "127.0.0.1:7070", "127.0.0.1"},
		{"IPv6Port", "[::1]:7070", "::1"},
		{"NamePort", "hodei.example.com:443", "hodei.example.com"},
		{"NameOnly", "hodei.example.com", "hodei.example.com"},
		{"IPv6Only", "[::1]", "::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, ServerName(tc.addr))
		})
	}
}
