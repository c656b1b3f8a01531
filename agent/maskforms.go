package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strings"
)

// secretForms returns the texts that stand for secret in a job's output:
// the value itself and the forms a job commonly prints it in. Each form is
// at least as long as the secret, save the base64 ones (at least 7 bytes for
// a 6-byte secret); some may be equal, and the caller removes duplicates.
//
//   - the value as a PTY prints it: every "\n" becomes "\r\n";
//   - base64, standard and URL alphabets, at each of the three alignments
//     the value may have inside a longer encoded text (see base64Forms);
//   - hex, lower and upper case;
//   - URL-escaped, as url.QueryEscape and url.PathEscape write it;
//   - JSON-escaped: the inside of the quotes json.Marshal writes (with
//     "<", ">" and "&" as \u003c, \u003e, \u0026) and of an Encoder
//     without HTML escaping.
func secretForms(secret []byte) [][]byte {
	forms := [][]byte{secret}
	if bytes.IndexByte(secret, '\n') >= 0 {
		forms = append(forms, bytes.ReplaceAll(secret, []byte("\n"), []byte("\r\n")))
	}
	forms = append(forms, base64Forms(secret, base64.StdEncoding)...)
	forms = append(forms, base64Forms(secret, base64.URLEncoding)...)
	lower := hex.EncodeToString(secret)
	forms = append(forms, []byte(lower), []byte(strings.ToUpper(lower)))
	forms = append(forms, []byte(url.QueryEscape(string(secret))), []byte(url.PathEscape(string(secret))))
	forms = append(forms, jsonForms(secret)...)
	return forms
}

// base64Forms returns the encoded texts that stand for secret wherever it
// sits in a larger plaintext that is base64-encoded with enc (a padded
// encoding).
//
// Base64 turns each 3 bytes into 4 characters of 6 bits. A secret at offset k
// starts a = k mod 3 bytes into a group, so its encoding depends only on a,
// save at its two edges: the first character holding bits of the secret also
// holds bits of the byte before it (for a > 0), and the last one the bits of
// the byte after it. For each a this returns the characters made of the
// secret's bits alone, which appear whatever surrounds the secret; and, for a
// secret that ends the plaintext, those characters followed by the last one
// (whose other bits are the zero fill) with and without the "=" padding.
// What is left unmasked around the stable part is at most one character on
// each side, at most 4 bits of the secret each.
func base64Forms(secret []byte, enc *base64.Encoding) [][]byte {
	raw := enc.WithPadding(base64.NoPadding)
	var forms [][]byte
	buf := make([]byte, 0, len(secret)+2)
	for a := range 3 {
		buf = append(append(buf[:0], make([]byte, a)...), secret...)
		bits := 8 * len(buf)
		first := (8*a + 5) / 6 // first character without bits of the byte before
		stable := raw.EncodeToString(buf)[first : bits/6]
		forms = append(forms,
			[]byte(stable),
			[]byte(raw.EncodeToString(buf)[first:]),
			[]byte(enc.EncodeToString(buf)[first:]))
	}
	return forms
}

// jsonForms returns the inside of the JSON string for secret, with and
// without Go's HTML escaping.
func jsonForms(secret []byte) [][]byte {
	quoted, _ := json.Marshal(string(secret)) // a string always marshals
	var plain bytes.Buffer
	e := json.NewEncoder(&plain)
	e.SetEscapeHTML(false)
	_ = e.Encode(string(secret)) // writes to a bytes.Buffer: cannot fail
	unquoted := bytes.TrimSuffix(plain.Bytes(), []byte("\n"))
	return [][]byte{quoted[1 : len(quoted)-1], unquoted[1 : len(unquoted)-1]}
}
