package agent

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"
)

// maskChunks runs chunks through a masker for secrets and returns the output.
func maskChunks(t *testing.T, secrets []string, chunks ...string) string {
	t.Helper()
	m := newMasker(secrets)
	if m == nil {
		t.Fatalf("newMasker(%q) = nil, want a masker", secrets)
	}
	var out []byte
	for _, c := range chunks {
		out = m.mask(out, []byte(c))
	}
	return string(m.flush(out))
}

func TestMasker(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secrets []string
		chunks  []string
		want    string
	}{
		{"Whole", []string{"s3cret"}, []string{"a s3cret b"}, "a *** b"},
		{"Split", []string{"s3cret"}, []string{"xx s3c", "ret yy"}, "xx *** yy"},
		{"SplitThreeWays", []string{"s3cret"}, []string{"xx s", "3cr", "et yy"}, "xx *** yy"},
		{"Repeated", []string{"s3cret"}, []string{"s3crets3cret"}, "******"},
		{"PrefixAtEnd", []string{"s3cret"}, []string{"ends with s3c"}, "ends with s3c"},
		{"PrefixNotCompleted", []string{"s3cret"}, []string{"s3c", "ond"}, "s3cond"},
		{"TwoSecrets", []string{"alpha-1", "beta-22"}, []string{"alpha-1 beta-", "22 gamma"}, "*** *** gamma"},
		{"LongestAtSamePosition", []string{"abcdef", "abcdefgh"}, []string{"xabcdef", "ghy"}, "x***y"},
		{"ShorterWhenLongerFails", []string{"abcdef", "abcdefgh"}, []string{"xabcdef", "gXy"}, "x***gXy"},
		{"IncompleteLongerWins", []string{"abcdefghij", "cdefgh"}, []string{"abcdefgh", "ij"}, "***"},
		{"IncompleteLongerFails", []string{"abcdefghij", "cdefgh"}, []string{"abcdefgh", "xx"}, "ab***xx"},
		{"OverlapLeftmostWins", []string{"abcdefgh", "efghijkl"}, []string{"abcdefghijkl"}, "***ijkl"},
		{"ShortIgnored", []string{"abcde", "s3cret"}, []string{"abcde s3cret"}, "abcde ***"},
		{"Empty", []string{"s3cret"}, []string{"", "", ""}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := maskChunks(t, tc.secrets, tc.chunks...); got != tc.want {
				t.Errorf("masked %q = %q, want %q", tc.chunks, got, tc.want)
			}
		})
	}
}

func TestMaskerNoSecrets(t *testing.T) {
	for _, secrets := range [][]string{nil, {}, {"abcde", "", "x"}} {
		if m := newMasker(secrets); m != nil {
			t.Errorf("newMasker(%q) = %v, want nil (pass-through)", secrets, m)
		}
	}
}

// TestMaskerRandomSplits checks, for random output and random chunk
// boundaries, that masking a stream equals masking it in one piece, that
// no secret survives and that at most (longest pattern − 1) bytes are held
// back.
func TestMaskerRandomSplits(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	const secret = "p4ssw0rd"
	for range 500 {
		var in bytes.Buffer
		for in.Len() < 300 {
			switch rng.IntN(4) {
			case 0:
				in.WriteString(secret)
			case 1:
				in.WriteString(secret[:1+rng.IntN(len(secret)-1)])
			default:
				in.WriteByte("ap4sw0rd\n"[rng.IntN(9)])
			}
		}
		want := bytes.ReplaceAll(in.Bytes(), []byte(secret), maskText)

		m := newMasker([]string{secret})
		var out []byte
		for rest := in.Bytes(); len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(20))
			out = m.mask(out, rest[:n])
			rest = rest[n:]
			if len(m.held) > m.maxLen-1 {
				t.Fatalf("held %d bytes, want at most %d", len(m.held), m.maxLen-1)
			}
		}
		out = m.flush(out)
		if !bytes.Equal(out, want) {
			t.Fatalf("masked\n%q\n= %q\nwant %q", in.Bytes(), out, want)
		}
		if bytes.Contains(out, []byte(secret)) {
			t.Fatalf("secret survived in %q", out)
		}
	}
}

func BenchmarkMasker(b *testing.B) {
	chunk := bytes.Repeat([]byte("some ordinary log output, nothing to hide\n"), 1600)
	m := newMasker([]string{"s3cret-token-value", "another-secret"})
	var out []byte
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		out = m.mask(out[:0], chunk)
	}
}
