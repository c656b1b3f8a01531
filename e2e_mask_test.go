package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// TestSecretFormsAreMaskedEndToEnd runs a real job through the real
// binary and agent, in a PTY, that prints its secret in every form the
// agent masks, most of them computed by the job itself; neither `hodei run`
// nor `hodei logs` shows any of them.
func TestSecretFormsAreMaskedEndToEnd(t *testing.T) {
	srv, _ := cluster(t)
	secret := "pa55-w0rd/z?&x\"<k>\nline2"
	script := strings.Join([]string{
		`printf '%s\n' "$S"`,                   // plain, and the PTY's \r\n form of the inner newline
		`printf 'x%s' "$S" | base64 -w0; echo`, // base64 at the three alignments
		`printf 'xy%s' "$S" | base64 -w0; echo`,
		`printf '%s' "$S" | base64 -w0 | tr '+/' '-_'; echo`, // URL alphabet
		`printf '%s' "$S" | od -An -tx1 | tr -d ' \n'; echo`, // hex
		`printf '%s\n' "$HEXU"`,
		`printf '%s\n' "$URLQ"`,
		`printf '%s\n' "$JSON"`,
		`echo done`,
	}, "\n")
	upper := strings.ToUpper(hex.EncodeToString([]byte(secret)))
	jsonForm := `pa55-w0rd/z?\u0026x\"\u003ck\u003e\nline2`
	out, errOut, code := hodei(t, srv.grpcAddr, "run", "--secret-env", "S="+secret,
		"--env", "HEXU="+upper, "--env", "URLQ="+url.QueryEscape(secret), "--env", "JSON="+jsonForm, "--", "sh", "-c", script)
	if code != 0 || !strings.Contains(out, "done") {
		t.Fatalf("run: exit %d, %s %s", code, out, errOut)
	}
	id := onlyJobID(t, srv.grpcAddr)
	logs := mustRun(t, srv.grpcAddr, "logs", "--raw", id)
	forms := map[string]string{
		"plain":      "pa55-w0rd",
		"pty":        "z?&x\"<k>\r\nline2",
		"base64":     base64.StdEncoding.EncodeToString([]byte(secret))[4:16],
		"base64-url": base64.URLEncoding.EncodeToString([]byte(secret))[4:16],
		"hex":        hex.EncodeToString([]byte(secret))[2:20],
		"hex-upper":  upper[2:20],
		"url":        url.QueryEscape(secret)[2:14],
		"json":       jsonForm[2:14],
	}
	for _, shown := range []string{out, logs} {
		for name, form := range forms {
			if strings.Contains(shown, form) {
				t.Errorf("the %s form %q of the secret is shown:\n%s", name, form, shown)
			}
		}
		if strings.Count(shown, "***") < 8 {
			t.Errorf("want *** for each of the 8 lines, got:\n%s", shown)
		}
	}
}

// onlyJobID returns the id of the one job on the server.
func onlyJobID(t *testing.T, addr string) string {
	t.Helper()
	var jobs []struct {
		ID string `json:"id"`
	}
	out := mustRun(t, addr, "jobs", "ls", "-o", "json")
	if err := json.Unmarshal([]byte(out), &jobs); err != nil || len(jobs) != 1 {
		t.Fatalf("jobs ls: %v, %s", err, out)
	}
	return jobs[0].ID
}
