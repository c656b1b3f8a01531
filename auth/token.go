package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oklog/ulid/v2"

	"github.com/hodei-jobs/hodei/atomicfile"
)

// Token text limits and claims.
const (
	// Issuer and Audience are the iss and aud every token carries and every
	// verification requires.
	Issuer   = "hodei"
	Audience = "hodei-api"
	// MaxTokenLen bounds the token text read from a request; longer ones
	// are refused before any parsing. Ours are about 400 bytes.
	MaxTokenLen = 4096
	// DefaultTTL is a new token's lifetime when none is asked for, and
	// DefaultAgentTTL that of an agent (join) token, which is pasted on
	// hosts and wants to be short-lived; MaxTTL is the longest allowed.
	DefaultTTL      = 90 * 24 * time.Hour
	DefaultAgentTTL = 24 * time.Hour
	MaxTTL          = 10 * 365 * 24 * time.Hour
	// leeway forgives small clock differences on exp, nbf and iat.
	leeway = 30 * time.Second
)

// ErrInvalidToken wraps every reason a token is refused.
var ErrInvalidToken = errors.New("invalid token")

// Claims are the token's JSON claims: the registered ones (jti, iss, aud,
// exp, nbf, iat) plus the role, tenant scope and name.
type Claims struct {
	jwt.RegisteredClaims
	Role    Role     `json:"role"`
	Tenants []string `json:"tenants,omitempty"`
	Name    string   `json:"name,omitempty"`
}

// Authority signs and verifies tokens with one Ed25519 key. It is safe for
// concurrent use.
type Authority struct {
	key ed25519.PrivateKey
	pub ed25519.PublicKey
	now func() time.Time
}

// NewAuthority returns an Authority for key; now defaults to time.Now.
func NewAuthority(key ed25519.PrivateKey, now func() time.Time) *Authority {
	if now == nil {
		now = time.Now
	}
	return &Authority{key: key, pub: key.Public().(ed25519.PublicKey), now: now}
}

// Issue signs a new token for role, scoped to tenants (none: all), named
// name, valid for ttl from now. It returns the token text and its claims.
func (a *Authority) Issue(role Role, tenants []string, name string, ttl time.Duration) (string, *Claims, error) {
	if _, err := ParseRole(string(role)); err != nil {
		return "", nil, err
	}
	if ttl <= 0 || ttl > MaxTTL {
		return "", nil, fmt.Errorf("ttl %s must be more than 0 and at most %s", ttl, MaxTTL)
	}
	now := a.now().Truncate(time.Second)
	c := &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			ID:        ulid.Make().String(),
			Issuer:    Issuer,
			Audience:  jwt.ClaimStrings{Audience},
			Subject:   name,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Role: role, Tenants: tenants, Name: name,
	}
	text, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(a.key)
	if err != nil {
		return "", nil, fmt.Errorf("sign token: %w", err)
	}
	return text, c, nil
}

// Verify checks a token's signature (EdDSA only: none, HMAC and every other
// algorithm are refused), its issuer, audience, expiry (required),
// not-before and id, and returns its claims. Every failure wraps
// ErrInvalidToken.
func (a *Authority) Verify(text string) (*Claims, error) {
	if len(text) > MaxTokenLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalidToken, MaxTokenLen)
	}
	var c Claims
	_, err := jwt.ParseWithClaims(text, &c, func(*jwt.Token) (any, error) { return a.pub, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(a.now),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if c.ID == "" {
		return nil, fmt.Errorf("%w: no token id (jti)", ErrInvalidToken)
	}
	if _, err := ParseRole(string(c.Role)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return &c, nil
}

// LoadOrCreateKey reads the Ed25519 signing key at path (PKCS #8 PEM), or
// creates one there with mode 0600 when the file does not exist. created
// reports which.
func LoadOrCreateKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		key, err := parseKey(b)
		if err != nil {
			return nil, false, fmt.Errorf("signing key %s: %w", path, err)
		}
		return key, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("signing key: %w", err)
	}
	_, key, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("encode signing key: %w", err)
	}
	// Never replaced: a key that signed tokens is not given up by accident.
	if err := atomicfile.Create(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, false, fmt.Errorf("signing key: %w", err)
	}
	return key, true, nil
}

func parseKey(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 key", k)
	}
	return ek, nil
}
