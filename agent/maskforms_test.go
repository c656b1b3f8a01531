package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// formSecret has a character that each escaping form changes, so that every
// form differs from the plain value.
const formSecret = "pa<ss> w&rd/+?\"\\\n=s3cret"

// encoded is a text a job may print: enc, of which enc[lo:hi] is made of
// the secret alone and must not be seen.
type encoded struct {
	enc    string
	lo, hi int
}

// whole is a form printed by itself: all of it must be masked.
func whole(s string) encoded { return encoded{s, 0, len(s)} }

// inBase64 encodes before+secret+after with enc and says which characters
// are the secret's alone: those after the first 8·len(before) bits and
// before its end (or, when it ends the text, up to the end with padding).
func inBase64(enc *base64.Encoding, before, secret, after string) encoded {
	e := enc.EncodeToString([]byte(before + secret + after))
	lo := (8*len(before) + 5) / 6
	hi := 8 * (len(before) + len(secret)) / 6
	if after == "" {
		hi = len(e)
	}
	return encoded{e, lo, hi}
}

// jsonString is the inside of json.Marshal's string for s.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

// printedForms returns, by name, the forms of secret a job may print.
// They are derived here independently of secretForms.
func printedForms(secret string) map[string]encoded {
	forms := map[string]encoded{
		"Plain":       whole(secret),
		"PTY":         whole(strings.ReplaceAll(secret, "\n", "\r\n")),
		"HexLower":    whole(hex.EncodeToString([]byte(secret))),
		"HexUpper":    whole(strings.ToUpper(hex.EncodeToString([]byte(secret)))),
		"QueryEscape": whole(url.QueryEscape(secret)),
		"PathEscape":  whole(url.PathEscape(secret)),
		"JSON":        whole(jsonString(secret)),
		"JSONNoHTML": whole(strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").
			Replace(jsonString(secret))),
	}
	for _, e := range []struct {
		name string
		enc  *base64.Encoding
	}{
		{"Base64", base64.StdEncoding}, {"Base64Raw", base64.RawStdEncoding},
		{"Base64URL", base64.URLEncoding}, {"Base64URLRaw", base64.RawURLEncoding},
	} {
		for _, before := range []string{"", "T", "TO", "TOK", "TOKE", "TOKEN"} {
			for _, after := range []string{"", "\n", "\"}"} {
				name := fmt.Sprintf("%s/Before%q/After%q", e.name, before, after)
				forms[name] = inBase64(e.enc, before, secret, after)
			}
		}
	}
	return forms
}

// checkMasked fails unless out is e.enc with one "***" standing for a
// span that covers e.enc[lo:hi].
func checkMasked(t *testing.T, e encoded, out string) {
	t.Helper()
	before, after, ok := strings.Cut(out, "***")
	switch {
	case !ok || strings.Contains(after, "***"):
		t.Errorf("masked %q = %q, want one ***", e.enc, out)
	case !strings.HasPrefix(e.enc, before) || !strings.HasSuffix(e.enc, after) || len(before)+len(after) > len(e.enc):
		t.Errorf("masked %q = %q, want it with *** for a part", e.enc, out)
	case len(before) > e.lo || len(e.enc)-len(after) < e.hi:
		t.Errorf("masked %q = %q, want %q covered", e.enc, out, e.enc[e.lo:e.hi])
	}
}

func TestMaskerForms(t *testing.T) {
	forms := printedForms(formSecret)
	seen := make(map[string]string)
	for name, e := range forms {
		if other, ok := seen[e.enc[e.lo:e.hi]]; ok && !strings.Contains(name, "/") {
			t.Fatalf("forms %s and %s are both %q: the test secret should tell them apart", name, other, e.enc)
		}
		seen[e.enc[e.lo:e.hi]] = name
	}
	for name, e := range forms {
		t.Run(name, func(t *testing.T) {
			checkMasked(t, e, maskChunks(t, []string{formSecret}, e.enc))
			// Byte by byte, as a slow PTY may deliver it.
			chunks := strings.Split(e.enc, "")
			checkMasked(t, e, maskChunks(t, []string{formSecret}, chunks...))
		})
	}
}

// TestMaskerFormsShortest checks the shortest secret accepted: its base64
// forms at alignments 1 and 2 are the shortest patterns there are.
func TestMaskerFormsShortest(t *testing.T) {
	const secret = "123456"
	for name, e := range printedForms(secret) {
		t.Run(name, func(t *testing.T) {
			checkMasked(t, e, maskChunks(t, []string{secret}, e.enc))
		})
	}
}

// TestMaskerOrdinaryText checks that forms of a secret do not catch text
// that merely resembles them.
func TestMaskerOrdinaryText(t *testing.T) {
	for _, tc := range []struct{ name, secret, text string }{
		{"Prose", "s3cret-value", "the secret value is not here\r\n"},
		{"OtherBase64", "s3cret-value", base64.StdEncoding.EncodeToString([]byte("s3cret-valuf"))[:12]},
		{"OtherHex", "s3cret-value", hex.EncodeToString([]byte("s3cret-valu"))},
		{"PrefixOfJSON", "a<b>c&d-e", `a\u003cb\u003ec`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := maskChunks(t, []string{tc.secret}, tc.text); got != tc.text {
				t.Errorf("masked %q = %q, want it unchanged", tc.text, got)
			}
		})
	}
}

// TestSecretFormsDistinctEnough checks that a 6-byte secret yields no
// pattern shorter than itself: a short pattern would mask ordinary text.
func TestSecretFormsDistinctEnough(t *testing.T) {
	for _, secret := range []string{"123456", "\x00\x00\x00\x00\x00\x00", "\xff\xfe\xfd\xfc\xfb\xfa"} {
		for _, f := range secretForms([]byte(secret)) {
			if len(f) < len(secret) {
				t.Errorf("form %q of %q is shorter than the secret", f, secret)
			}
		}
	}
	if got := secretForms([]byte("abcdef")); !bytes.Equal(got[0], []byte("abcdef")) {
		t.Errorf("first form %q, want the plain value", got[0])
	}
}
