package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"

	"github.com/hodei-jobs/hodei/job"
)

// referenceMask masks text in one piece, the plain way: at each position
// the longest pattern that matches there, else the byte as it is.
func referenceMask(text []byte, pats [][]byte) []byte {
	var out []byte
	for i := 0; i < len(text); {
		n := 0
		for _, p := range pats {
			if len(p) > n && bytes.HasPrefix(text[i:], p) {
				n = len(p)
			}
		}
		if n > 0 {
			out = append(out, maskText...)
			i += n
			continue
		}
		out = append(out, text[i])
		i++
	}
	return out
}

// maskRandomChunks masks text through m in chunks of 1 to max bytes.
func maskRandomChunks(m *masker, text []byte, rng *rand.Rand, max int) []byte {
	var out []byte
	for rest := text; len(rest) > 0; {
		n := min(len(rest), 1+rng.IntN(max))
		out = m.mask(out, rest[:n])
		rest = rest[n:]
	}
	return m.flush(out)
}

// plantForm returns secret in a random one of the forms a job prints it in,
// inside some random text where the form allows, and the part of it that is
// made of the secret alone and must not survive masking.
func plantForm(rng *rand.Rand, secret []byte) (text, inner []byte) {
	s := string(secret)
	switch rng.IntN(9) {
	case 0:
		return secret, secret
	case 1:
		pty := strings.ReplaceAll(s, "\n", "\r\n")
		return []byte(pty), []byte(pty)
	case 2:
		h := hex.EncodeToString(secret)
		return []byte(h), []byte(h)
	case 3:
		h := strings.ToUpper(hex.EncodeToString(secret))
		return []byte(h), []byte(h)
	case 4:
		q := url.QueryEscape(s)
		return []byte(q), []byte(q)
	case 5:
		p := url.PathEscape(s)
		return []byte(p), []byte(p)
	case 6:
		j := jsonString(s)
		return []byte(`{"token":"` + j + `"}`), []byte(j)
	default:
		encs := []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding}
		before, after := randBytes(rng, rng.IntN(7)), randBytes(rng, rng.IntN(3))
		e := inBase64(encs[rng.IntN(len(encs))], string(before), s, string(after))
		return []byte(e.enc), []byte(e.enc[e.lo:e.hi])
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// FuzzMaskForms writes secrets in random forms at random places in random
// text, masks it in random chunks down to one byte, and checks that the
// stream is masked as the reference masks it in one piece, that no form of
// a secret survives, and that text without one passes unchanged.
//
//	go test -run '^$' -fuzz FuzzMaskForms -fuzztime 1m ./agent/
func FuzzMaskForms(f *testing.F) {
	for _, seed := range []struct {
		seed   uint64
		s1, s2 string
		noise  string
	}{
		{1, "s3cret-value", "", "some ordinary log output\n"},
		{2, formSecret, "another-secret", "build ok\r\n"},
		{3, "123456", "654321", "0123456789"},
		{4, "\x00\x01\x02\x03\x04\x05\x06", "\xff\xfe\xfd\xfc\xfb\xfa", "\x00\xff"},
		{5, "aaaaaaaa", "aaaaaaab", "aaaa"},
		{6, strings.Repeat("k3y/", 25), "line one\nline two\n", "-----BEGIN KEY-----\n"},
		{7, "short", "", "too short to be masked: short"},
		{8, "YWJjZGVm", "abcdef", "YWJj"},
	} {
		f.Add(seed.seed, []byte(seed.s1), []byte(seed.s2), []byte(seed.noise))
	}
	f.Fuzz(func(t *testing.T, seed uint64, s1, s2, noise []byte) {
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, 0))
		var secrets [][]byte
		var values []string
		for _, s := range [][]byte{s1, s2} {
			if len(s) >= job.MinSecretLen && len(s) <= 128 {
				secrets = append(secrets, s)
				values = append(values, string(s))
			}
		}
		if len(noise) > 256 {
			noise = noise[:256]
		}
		m := newMasker(values)
		if m == nil {
			if len(secrets) > 0 {
				t.Fatalf("newMasker(%q) = nil", values)
			}
			return
		}
		for range 8 {
			var text bytes.Buffer
			var inners [][]byte
			for range 1 + rng.IntN(6) {
				if len(noise) > 0 {
					i := rng.IntN(len(noise))
					text.Write(noise[i : i+rng.IntN(len(noise)-i+1)])
				}
				planted, inner := plantForm(rng, secrets[rng.IntN(len(secrets))])
				text.Write(planted)
				inners = append(inners, inner)
			}
			want := referenceMask(text.Bytes(), m.pats)
			got := maskRandomChunks(m, text.Bytes(), rng, 1+rng.IntN(64))
			if !bytes.Equal(got, want) {
				t.Fatalf("masked in chunks\n%q\n= %q\nwant %q", text.Bytes(), got, want)
			}
			// "***" written next to a part of a value with '*' in it could
			// spell a form anew: that is no leak.
			for _, p := range append(inners, m.pats...) {
				if bytes.IndexByte(p, '*') < 0 && bytes.Contains(got, p) {
					t.Fatalf("%q survived in %q (masked from %q)", p, got, text.Bytes())
				}
			}
		}
		if want := referenceMask(noise, m.pats); bytes.Equal(want, noise) {
			if got := maskRandomChunks(m, noise, rng, 8); !bytes.Equal(got, noise) {
				t.Fatalf("text without a secret %q masked to %q", noise, got)
			}
		}
	})
}
