package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/pki"
)

// TestLoginTokensAndAgentJoinAsANewUser follows the README: log in with the
// admin token file and the CA fingerprint, create an agent token, paste the
// join line it prints, run a job, and use a scoped token.
func TestLoginTokensAndAgentJoinAsANewUser(t *testing.T) {
	dataDir := t.TempDir()
	srv := startServer(t, dataDir)
	home := t.TempDir() // this user's config dir, empty
	cli := func(args ...string) (string, string, int) {
		cmd := exec.Command(hodeiBin, append([]string{"--addr", srv.grpcAddr}, args...)...)
		cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+home, "HODEI_TOKEN=", "HODEI_CA_FILE=")
		return runCmd(t, cmd)
	}
	// Not logged in: refused, with the login to run.
	if _, errOut, code := cli("jobs", "ls"); code == 0 || !strings.Contains(errOut, "it runs with TLS") || !strings.Contains(errOut, "hodei login --addr "+srv.grpcAddr) {
		t.Fatalf("jobs ls before login: exit %d, %s", code, errOut)
	}
	caFingerprint := fingerprintOf(t, dataDir)
	tokenFile := filepath.Join(dataDir, "admin.token")

	_, errOut, code := cli("login", "--token-file", tokenFile, "--ca-fingerprint", "sha256:"+strings.Repeat("0", 64))
	if code == 0 || !strings.Contains(errOut, "fingerprint did not match") {
		t.Fatalf("login with a wrong fingerprint: exit %d, %s", code, errOut)
	}
	out, errOut, code := cli("login", "--token-file", tokenFile, "--ca-fingerprint", caFingerprint)
	if code != 0 || !strings.Contains(out, "as admin (admin)") {
		t.Fatalf("login: exit %d, %s %s", code, out, errOut)
	}
	fi, err := os.Stat(filepath.Join(home, "hodei", "logins.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("logins file: %v, %v", fi, err)
	}

	// The agent join line goes to stderr, the token alone to stdout; the
	// line passes the token in the environment, where ps does not show it.
	out, errOut, code = cli("token", "create", "--role", "agent", "--name", "rack1")
	line := ""
	for _, l := range strings.Split(errOut, "\n") {
		if strings.Contains(l, "hodei agent --server") {
			line = strings.TrimSpace(l)
		}
	}
	token := strings.TrimSpace(out)
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.HasPrefix(line, "HODEI_JOIN="+token+" hodei agent ") ||
		!strings.Contains(line, "--ca-fingerprint "+caFingerprint) || strings.Contains(line, "--join") {
		t.Fatalf("token create --role agent: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	startAgent(t, srv.grpcAddr, t.TempDir(), "--join", token, "--ca-fingerprint", caFingerprint)

	out, errOut, code = cli("run", "--", "echo", "hello")
	if code != 0 || !strings.Contains(out, "hello") {
		t.Fatalf("run after login: exit %d, %s %s", code, out, errOut)
	}

	// A viewer token of another tenant sees nothing of default's and may
	// not submit.
	if _, _, code := cli("tenants", "set", "team-b"); code != 0 {
		t.Fatal("tenants set team-b")
	}
	viewer, _, code := cli("token", "create", "--role", "viewer", "--tenant", "team-b", "--name", "b-viewer")
	if code != 0 {
		t.Fatal("token create viewer")
	}
	viewer = strings.TrimSpace(viewer)
	out, _, code = cli("--token", viewer, "jobs", "ls")
	if code != 0 || strings.Contains(out, "echo") {
		t.Fatalf("jobs ls as another tenant's viewer: exit %d, %s", code, out)
	}
	_, errOut, code = cli("--token", viewer, "submit", "--", "true")
	if code == 0 || !strings.Contains(errOut, "PermissionDenied") && !strings.Contains(errOut, "may not") {
		t.Fatalf("submit as viewer: exit %d, %s", code, errOut)
	}

	// token ls shows names and roles, never a token's text.
	out, _, code = cli("token", "ls")
	if code != 0 || !strings.Contains(out, "rack1") || !strings.Contains(out, "b-viewer") || strings.Contains(out, viewer) {
		t.Fatalf("token ls: exit %d, %s", code, out)
	}
	// Revoked, the viewer token is refused on its next call.
	id := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "b-viewer") {
			id = strings.Fields(l)[0]
		}
	}
	if _, _, code := cli("token", "revoke", id); code != 0 {
		t.Fatal("token revoke")
	}
	_, errOut, code = cli("--token", viewer, "jobs", "ls")
	if code == 0 || !strings.Contains(errOut, "revoked") {
		t.Fatalf("jobs ls with a revoked token: exit %d, %s", code, errOut)
	}
}

// fingerprintOf is the sha256: fingerprint the server prints for its CA.
func fingerprintOf(t *testing.T, dataDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := parseCertPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func parseCertPEM(b []byte) (string, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return "", errors.New("no PEM block")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return "", err
	}
	return pki.Fingerprint(c), nil
}
