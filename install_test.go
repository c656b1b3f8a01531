package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// makeInstall runs `make install` of the test's binary (BIN=; install
// builds nothing) with vars, and fails the test if it fails.
func makeInstall(t *testing.T, vars ...string) {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	args := append([]string{"-s", "install", "BIN=" + hodeiBin}, vars...)
	out, err := exec.Command("make", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMakeInstall installs into a DESTDIR: the binary, the units pointed
// at it, the example configs, and serve.yaml only where there is none.
func TestMakeInstall(t *testing.T) {
	dest := t.TempDir()
	makeInstall(t, "DESTDIR="+dest)
	bin, err := os.ReadFile(filepath.Join(dest, "usr/local/bin/hodei"))
	if want, _ := os.ReadFile(hodeiBin); err != nil || !bytes.Equal(bin, want) {
		t.Fatalf("usr/local/bin/hodei is not the binary (%v)", err)
	}
	if fi, _ := os.Stat(filepath.Join(dest, "usr/local/bin/hodei")); fi.Mode().Perm() != 0o755 {
		t.Errorf("binary mode %v", fi.Mode())
	}
	units := filepath.Join(dest, "usr/local/lib/systemd/system")
	for unit, exec := range map[string]string{"hodei-server.service": "ExecStart=/usr/local/bin/hodei serve\n",
		"hodei-agent.service": "ExecStart=/usr/local/bin/hodei agent\n"} {
		if text := readText(t, filepath.Join(units, unit)); !strings.Contains(text, exec) || !strings.Contains(text, "Type=notify\n") {
			t.Errorf("%s lacks %q or Type=notify", unit, exec)
		}
	}
	etc := filepath.Join(dest, "etc/hodei")
	for _, f := range []string{"serve.yaml.example", "agent.yaml.example", "serve.yaml"} {
		if _, err := os.Stat(filepath.Join(etc, f)); err != nil {
			t.Errorf("etc/hodei/%s: %v", f, err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(etc, "agent.yaml.example")); fi == nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("agent.yaml.example (it will hold a join token) is not 0600: %v", fi)
	}

	// A second install keeps the operator's config.
	mine := "data-dir: /srv/mine\n"
	if err := os.WriteFile(filepath.Join(etc, "serve.yaml"), []byte(mine), 0o644); err != nil {
		t.Fatal(err)
	}
	makeInstall(t, "DESTDIR="+dest)
	if got := readText(t, filepath.Join(etc, "serve.yaml")); got != mine {
		t.Errorf("a second install changed serve.yaml to:\n%s", got)
	}

	// Another PREFIX: the units start the binary where it went.
	opt := t.TempDir()
	makeInstall(t, "DESTDIR="+opt, "PREFIX=/opt/hodei")
	if text := readText(t, filepath.Join(opt, "opt/hodei/lib/systemd/system/hodei-server.service")); !strings.Contains(text, "ExecStart=/opt/hodei/bin/hodei serve\n") {
		t.Errorf("PREFIX=/opt/hodei: unit says\n%s", text)
	}
}

// TestSystemdUnitsVerify installs the units with a PREFIX in a temporary
// dir (systemd-analyze verify wants ExecStart's binary to exist) and
// verifies them: any warning fails the test. It also checks that the
// example configs are valid.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian: apt-get install systemd; .ci/run installs it)")
	}
	root := t.TempDir()
	makeInstall(t, "PREFIX="+root, "SYSCONFDIR="+filepath.Join(root, "etc"))
	units := filepath.Join(root, "lib/systemd/system")
	cmd := exec.Command(analyze, "verify", "--man=no",
		filepath.Join(units, "hodei-server.service"), filepath.Join(units, "hodei-agent.service"))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, stderr.String())
	}
	for _, c := range []string{"serve", "agent"} {
		example := filepath.Join(root, "etc/hodei", c+".yaml.example")
		if out, err := exec.Command(filepath.Join(root, "bin/hodei"), "config", "print", c, "--config", example).CombinedOutput(); err != nil {
			t.Errorf("hodei config print %s --config %s: %v\n%s", c, example, err, out)
		}
	}
}
