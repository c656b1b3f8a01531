package seal

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const jobA, jobB = "01J0000000000000000000000A", "01J0000000000000000000000B"

// mustKey returns a new random key.
func mustKey(tb testing.TB) *Key {
	tb.Helper()
	k, err := NewKey(GenerateKey())
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := mustKey(t)
	for _, v := range []string{"", "s3cret", "with\nnewline and ünïcode", strings.Repeat("x", 1<<16), Prefix + "looks sealed"} {
		t.Run(fmt.Sprintf("len%d", len(v)), func(t *testing.T) {
			s := k.Seal(jobA, "TOKEN", v)
			if !IsSealed(s) {
				t.Fatalf("sealed value %q lacks the prefix", s[:20])
			}
			if len(v) >= 4 && strings.Contains(s, v) {
				t.Fatal("sealed value contains the plain value")
			}
			got, err := k.Open(jobA, "TOKEN", s)
			if err != nil {
				t.Fatal(err)
			}
			if got != v {
				t.Fatalf("open = %q, want %q", got, v)
			}
			if s2 := k.Seal(jobA, "TOKEN", v); s2 == s {
				t.Fatal("two seals of one value are equal: nonce reused")
			}
		})
	}
}

func TestOpenRefuses(t *testing.T) {
	k, other := mustKey(t), mustKey(t)
	sealed := k.Seal(jobA, "TOKEN", "s3cret")
	flip := func(i int) string { // one base64 character changed
		b := []byte(sealed)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for _, tc := range []struct {
		name        string
		key         *Key
		job, envKey string
		value       string
		want        error
	}{
		{"OK", k, jobA, "TOKEN", sealed, nil},
		{"WrongJob", k, jobB, "TOKEN", sealed, ErrOpen},
		{"WrongEnvKey", k, jobA, "OTHER", sealed, ErrOpen},
		{"WrongKey", other, jobA, "TOKEN", sealed, ErrOpen},
		{"TamperedNonce", k, jobA, "TOKEN", flip(len(Prefix) + 2), ErrOpen},
		{"TamperedCiphertext", k, jobA, "TOKEN", flip(len(sealed) - 30), ErrOpen},
		{"TamperedTag", k, jobA, "TOKEN", flip(len(sealed) - 2), ErrOpen},
		{"Truncated", k, jobA, "TOKEN", sealed[:len(sealed)-4], ErrOpen},
		{"TooShort", k, jobA, "TOKEN", Prefix + "AAAA", ErrNotSealed},
		{"NotBase64", k, jobA, "TOKEN", Prefix + "!!!!", ErrNotSealed},
		{"Plain", k, jobA, "TOKEN", "s3cret", ErrNotSealed},
		{"OtherVersion", k, jobA, "TOKEN", strings.Replace(sealed, ":v1:", ":v2:", 1), ErrNotSealed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.key.Open(tc.job, tc.envKey, tc.value)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err == nil && got != "s3cret" {
				t.Fatalf("open = %q", got)
			}
			if err != nil && got != "" {
				t.Fatalf("failed open returned %q", got)
			}
		})
	}
}

func TestEnv(t *testing.T) {
	k := mustKey(t)
	env := map[string]string{"A": "alpha-value", "B": "beta-value"}
	sealed := k.SealEnv(jobA, env)
	if env["A"] != "alpha-value" {
		t.Fatal("SealEnv changed its input")
	}
	got, err := k.OpenEnv(jobA, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(env) {
		t.Fatalf("OpenEnv = %v, want %v", got, env)
	}
	_, err = k.OpenEnv(jobB, sealed)
	if !errors.Is(err, ErrOpen) || strings.Contains(err.Error(), "alpha-value") || strings.Contains(err.Error(), "beta-value") {
		t.Fatalf("OpenEnv for another job: %v", err)
	}
	// Values swapped between keys of one job fail too.
	swapped := map[string]string{"A": sealed["B"], "B": sealed["A"]}
	if _, err := k.OpenEnv(jobA, swapped); !errors.Is(err, ErrOpen) {
		t.Fatalf("swapped values: %v", err)
	}
	if k.SealEnv(jobA, nil) != nil {
		t.Fatal("SealEnv(nil) != nil")
	}
}

func TestSealPlainIdempotent(t *testing.T) {
	k := mustKey(t)
	env := map[string]string{"PLAIN": "plain-value", "DONE": k.Seal(jobA, "DONE", "done-value"), "FAKE": Prefix + "not really"}
	if n := k.SealPlain(jobA, env); n != 2 {
		t.Fatalf("first run sealed %d, want 2 (PLAIN and FAKE)", n)
	}
	before := fmt.Sprint(env)
	if n := k.SealPlain(jobA, env); n != 0 {
		t.Fatalf("second run sealed %d, want 0", n)
	}
	if fmt.Sprint(env) != before {
		t.Fatal("second run changed the values")
	}
	got, err := k.OpenEnv(jobA, env)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"PLAIN": "plain-value", "DONE": "done-value", "FAKE": Prefix + "not really"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("opened %v, want %v", got, want)
	}
}

func TestKeyNeverPrinted(t *testing.T) {
	raw := GenerateKey()
	k, err := NewKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("key", "k", k)
	out := fmt.Sprintf("%v %+v %#v %s", k, k, k, k) + buf.String()
	if !strings.Contains(out, k.ID()) {
		t.Fatalf("output %q does not name the key id", out)
	}
	for _, form := range []string{string(raw), fmt.Sprintf("%x", raw), fmt.Sprint(raw)} {
		if strings.Contains(out, form) {
			t.Fatalf("key material printed: %q", out)
		}
	}
	if bytes.Contains(k.Check(), raw) {
		t.Fatal("check holds the key")
	}
}

func TestNewKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := NewKey(make([]byte, n)); err == nil {
			t.Errorf("NewKey of %d bytes: no error", n)
		}
	}
}

func TestLoadOrCreate(t *testing.T) {
	first := func(t *testing.T) (string, *Key) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "secrets.key")
		k, created, err := LoadOrCreate(path, nil)
		if err != nil || !created {
			t.Fatalf("create: created=%v err=%v", created, err)
		}
		return path, k
	}
	t.Run("CreateThenLoad", func(t *testing.T) {
		path, k := first(t)
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 || st.Size() != KeySize {
			t.Fatalf("key file mode %v size %d", st.Mode(), st.Size())
		}
		if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
			t.Fatalf("left files behind: %v", ents)
		}
		k2, created, err := LoadOrCreate(path, k.Check())
		if err != nil || created {
			t.Fatalf("load: created=%v err=%v", created, err)
		}
		if got, err := k2.Open(jobA, "T", k.Seal(jobA, "T", "v")); err != nil || got != "v" {
			t.Fatalf("loaded key does not open: %q %v", got, err)
		}
	})
	t.Run("LoadWithoutCheck", func(t *testing.T) {
		path, k := first(t)
		k2, created, err := LoadOrCreate(path, nil)
		if err != nil || created || k2.ID() != k.ID() {
			t.Fatalf("created=%v err=%v", created, err)
		}
	})
	t.Run("ErrKeyMissing", func(t *testing.T) {
		path, k := first(t)
		os.Remove(path)
		_, _, err := LoadOrCreate(path, k.Check())
		if !errors.Is(err, ErrKeyMissing) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), k.ID()) {
			t.Fatalf("err = %v", err)
		}
		// A key check is stored at the first start, secrets or not: the
		// message must not claim the database holds sealed values.
		if strings.Contains(err.Error(), "holds secret env values") || !strings.Contains(err.Error(), "if any") {
			t.Fatalf("err = %v, want it to say the values need the key if there are any", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Fatal("a new key file was created")
		}
	})
	t.Run("ErrKeyMismatch", func(t *testing.T) {
		path, _ := first(t)
		other := mustKey(t)
		_, _, err := LoadOrCreate(path, other.Check())
		if !errors.Is(err, ErrKeyMismatch) || !strings.Contains(err.Error(), path) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("WrongSize", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "secrets.key")
		os.WriteFile(path, []byte("short"), 0o600)
		if _, _, err := LoadOrCreate(path, nil); err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("OpenToOthers", func(t *testing.T) {
		path, _ := first(t)
		os.Chmod(path, 0o644)
		if _, _, err := LoadOrCreate(path, nil); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("err = %v", err)
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	k := mustKey(b)
	v := strings.Repeat("s", 64)
	for b.Loop() {
		k.Seal(jobA, "TOKEN", v)
	}
}

func BenchmarkOpen(b *testing.B) {
	k := mustKey(b)
	s := k.Seal(jobA, "TOKEN", strings.Repeat("s", 64))
	for b.Loop() {
		if _, err := k.Open(jobA, "TOKEN", s); err != nil {
			b.Fatal(err)
		}
	}
}
