package seal

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the length of a key file, in bytes.
const KeySize = chacha20poly1305.KeySize

// Prefix starts every sealed value; the version in it names the format.
const Prefix = "hodei-sealed:v1:"

// Info strings of the subkeys derived from a key file (HKDF-SHA256), so that
// the AEAD and the check never use the same key.
const (
	sealInfo   = "hodei secret env seal v1"
	checkInfo  = "hodei secrets.key check v1"
	checkInput = "hodei: this database's secret env values are sealed under this key"
)

// Errors of Open, OpenEnv and LoadOrCreate.
var (
	// ErrNotSealed: the value does not start with Prefix or is not valid
	// base64 of at least a nonce and a tag.
	ErrNotSealed = errors.New("not a sealed value")
	// ErrOpen: the value is sealed, but not under this key, not for this job
	// and env key, or it was altered.
	ErrOpen = errors.New("sealed value cannot be opened (another key, another job or key, or altered)")
	// ErrKeyMismatch: the key file is not the key the database's check value
	// was made with.
	ErrKeyMismatch = errors.New("key file does not match the database")
	// ErrKeyMissing: the database has a check value but the key file does
	// not exist.
	ErrKeyMissing = errors.New("key file is missing")
)

// Key seals and opens secret env values. Create it with NewKey or
// LoadOrCreate. It is immutable and safe for concurrent use. Printing or
// logging a Key shows only its ID.
type Key struct {
	aead  cipher.AEAD
	check []byte
}

// NewKey returns the Key of raw, which must be KeySize bytes (a key file's
// content). raw is not kept.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(raw), KeySize)
	}
	sk, err := hkdf.Key(sha256.New, raw, nil, sealInfo, chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive seal key: %w", err)
	}
	ck, err := hkdf.Key(sha256.New, raw, nil, checkInfo, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("derive check key: %w", err)
	}
	aead, err := chacha20poly1305.NewX(sk)
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	mac := hmac.New(sha256.New, ck)
	mac.Write([]byte(checkInput))
	return &Key{aead: aead, check: mac.Sum(nil)}, nil
}

// GenerateKey returns KeySize random bytes: the content of a new key file.
func GenerateKey() []byte {
	b := make([]byte, KeySize)
	rand.Read(b) // never fails (crypto/rand panics instead)
	return b
}

// Check is the value a database stores to recognise its key: an HMAC of a
// fixed string under a key derived from this one. It does not reveal the
// key. The caller must not modify it.
func (k *Key) Check() []byte { return k.check }

// Verify reports whether check is this key's Check, in constant time.
func (k *Key) Verify(check []byte) bool { return hmac.Equal(k.check, check) }

// ID is a short, public name of the key (the start of its Check in hex), for
// messages that must tell two keys apart.
func (k *Key) ID() string { return idOf(k.check) }

func idOf(check []byte) string {
	return hex.EncodeToString(check[:min(len(check), 6)])
}

// String shows the key's ID only.
func (k *Key) String() string { return "seal.Key(" + k.ID() + ")" }

// GoString shows the key's ID only, so %#v does not print the cipher state.
func (k *Key) GoString() string { return k.String() }

// LogValue shows the key's ID only.
func (k *Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// ad is the associated data of one env value: the format, the job id and
// the env key. Env keys cannot hold a NUL, so the encoding is unambiguous.
func ad(jobID, name string) []byte {
	return []byte(Prefix + jobID + "\x00" + name)
}

// IsSealed reports whether v has the form of a sealed value. It does not
// say whether any key opens it.
func IsSealed(v string) bool { return strings.HasPrefix(v, Prefix) }

// Seal returns value sealed for env key name of job jobID. Each call draws a
// fresh nonce, so sealing one value twice gives two different strings.
func (k *Key) Seal(jobID, name, value string) string {
	nonce := make([]byte, chacha20poly1305.NonceSizeX, chacha20poly1305.NonceSizeX+len(value)+k.aead.Overhead())
	rand.Read(nonce) // never fails (crypto/rand panics instead)
	out := k.aead.Seal(nonce, nonce, []byte(value), ad(jobID, name))
	return Prefix + base64.RawStdEncoding.EncodeToString(out)
}

// Open returns the value Seal sealed for name of jobID. Errors: ErrNotSealed,
// ErrOpen. Neither message contains the value.
func (k *Key) Open(jobID, name, sealed string) (string, error) {
	if !IsSealed(sealed) {
		return "", ErrNotSealed
	}
	b, err := base64.RawStdEncoding.DecodeString(sealed[len(Prefix):])
	if err != nil || len(b) < chacha20poly1305.NonceSizeX+k.aead.Overhead() {
		return "", ErrNotSealed
	}
	nonce, ct := b[:chacha20poly1305.NonceSizeX], b[chacha20poly1305.NonceSizeX:]
	plain, err := k.aead.Open(ct[:0], nonce, ct, ad(jobID, name))
	if err != nil {
		return "", ErrOpen
	}
	return string(plain), nil
}

// SealEnv returns a new map with every value of env sealed for its key and
// jobID, or nil when env is empty. env is not modified, so a map shared by
// several jobs (an array's, a matrix's) can be sealed once per job.
func (k *Key) SealEnv(jobID string, env map[string]string) map[string]string {
	if len(env) == 0 {
		return nil
	}
	out := make(map[string]string, len(env))
	for name, v := range env {
		out[name] = k.Seal(jobID, name, v)
	}
	return out
}

// OpenEnv returns a new map with every value of env opened, or nil when env
// is empty. Errors wrap ErrNotSealed or ErrOpen and name the env key, never
// the value.
func (k *Key) OpenEnv(jobID string, env map[string]string) (map[string]string, error) {
	if len(env) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(env))
	for name, v := range env {
		plain, err := k.Open(jobID, name, v)
		if err != nil {
			return nil, fmt.Errorf("secret_env %s of job %s: %w", name, jobID, err)
		}
		out[name] = plain
	}
	return out, nil
}

// SealPlain seals, in place, every value of env that this key does not
// already open for its key and jobID, and reports how many it sealed. It is
// the one-time migration of values stored before sealing existed: running it
// again changes nothing. A plain value that merely looks sealed is sealed too.
func (k *Key) SealPlain(jobID string, env map[string]string) int {
	n := 0
	for name, v := range env {
		if _, err := k.Open(jobID, name, v); err == nil {
			continue
		}
		env[name] = k.Seal(jobID, name, v)
		n++
	}
	return n
}
