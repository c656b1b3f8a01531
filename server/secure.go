package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/hodei-jobs/hodei/atomicfile"
	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/pki"
)

// Files in the data dir that hold the server's identity.
const (
	TokenKeyFile = "token.key" // Ed25519 key that signs tokens
	TLSDir       = "tls"       // ca.pem, ca-key.pem, server.pem, server-key.pem
)

// secure sets up authentication and TLS: the token signing key, the
// bootstrap admin token, the CA and the server certificate, or with
// InsecureNoAuth nothing but a warning.
func (s *Server) secure(ctx context.Context) error {
	if s.cfg.InsecureNoAuth {
		s.log.Warn("AUTHENTICATION AND TLS ARE OFF (--insecure-no-auth): every local process may run any command on every agent")
		g, err := newGate(ctx, s.store, nil, true, s.now, s.log)
		s.gate = g
		return err
	}
	keyPath := filepath.Join(s.cfg.DataDir, TokenKeyFile)
	var key ed25519.PrivateKey
	err := s.identity(ctx, keyPath, "tokens were signed with it", s.store.TokenKeyCheck, s.store.SetTokenKeyCheck,
		func() ([]byte, error) {
			var err error
			if key, _, err = auth.LoadOrCreateKey(keyPath); err != nil {
				return nil, err
			}
			fp := sha256.Sum256(key.Public().(ed25519.PublicKey))
			return fp[:], nil
		})
	if err != nil {
		return err
	}
	s.authority = auth.NewAuthority(key, s.now)
	if s.gate, err = newGate(ctx, s.store, s.authority, false, s.now, s.log); err != nil {
		return err
	}
	if err := s.bootstrapAdmin(ctx); err != nil {
		return err
	}
	return s.setupTLS(ctx)
}

// checkSecurity checks the security settings of cfg before anything is
// written to the data dir.
func checkSecurity(cfg Config) error {
	if cfg.InsecureNoAuth {
		for _, a := range []string{cfg.GRPCAddr, cfg.HTTPAddr} {
			if a != "-" && !pki.Loopback(a) {
				return job.Invalid("insecure-no-auth", "refused: %s is not a loopback address; without authentication anyone who reaches it runs commands on every agent", a)
			}
		}
		if cfg.TLSCert != "" || cfg.TLSKey != "" || cfg.TLSClientCA != "" {
			return job.Invalid("insecure-no-auth", "turns TLS off; it does not go with --tls-cert, --tls-key or --tls-client-ca")
		}
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return job.Invalid("tls-cert", "--tls-cert and --tls-key go together")
	}
	return nil
}

// clusterCA loads the cluster CA from dir, or makes it, refusing a missing
// or other CA than the one the database's agents joined with.
func (s *Server) clusterCA(ctx context.Context, dir string) (*pki.CA, error) {
	var ca *pki.CA
	err := s.identity(ctx, filepath.Join(dir, pki.CAFile), "agents joined with its certificates", s.store.CACheck, s.store.SetCACheck,
		func() ([]byte, error) {
			var err error
			if ca, err = pki.EnsureCA(dir, s.now()); err != nil {
				return nil, err
			}
			fp := sha256.Sum256(ca.Cert().Raw)
			return fp[:], nil
		})
	return ca, err
}

// identity guards one of the server's identity files (the token key, the
// CA): load reads the file, or makes it when missing, and returns its
// fingerprint. The database records that fingerprint at first use; from
// then on a missing file or another one is refused, where starting would
// lock out every token or agent that depends on the old one.
func (s *Server) identity(ctx context.Context, path, dependents string,
	get func(context.Context) ([]byte, error), set func(context.Context, []byte) error,
	load func() ([]byte, error)) error {
	stored, err := get(ctx)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); stored != nil && errors.Is(err, os.ErrNotExist) {
		return job.Quietly(job.ErrConflict, "%s is missing but this database depends on it (%s): restore it from a backup; "+
			"to start over instead, move hodei.db aside too", path, dependents)
	}
	fp, err := load()
	if err != nil {
		return err
	}
	if stored != nil && !bytes.Equal(stored, fp) {
		return job.Quietly(job.ErrConflict, "%s is not the one this database was used with (%s): restore the right file from a backup",
			path, dependents)
	}
	return set(ctx, fp)
}

// bootstrapAdmin writes an admin token to DATA-DIR/admin.token on first
// start (when the file is missing).
func (s *Server) bootstrapAdmin(ctx context.Context) error {
	path := filepath.Join(s.cfg.DataDir, AdminTokenFile)
	if b, err := os.ReadFile(path); err == nil {
		// The file must hold a token of this server: after a lost or
		// replaced database or key, it would only lock the admin out.
		c, err := s.authority.Verify(strings.TrimSpace(string(b)))
		if err != nil {
			return fmt.Errorf("%s does not hold a token of this server (%w); move it aside to have a new one written", path, err)
		}
		rec, ok := s.gate.tokens.Load(c.ID)
		switch {
		case !ok:
			return job.Quietly(job.ErrConflict, "%s holds token %s, which this database does not know (was hodei.db replaced?); move it aside to have a new one written",
				path, c.ID)
		case rec.Revoked() || rec.Role != string(auth.Admin):
			s.log.Warn("the token in the admin token file is no working admin token; move the file aside to have a new one written at the next start",
				"path", path, "token_id", rec.ID, "role", rec.Role, "revoked", rec.Revoked())
		default:
			s.log.Info("admin token", "path", path)
		}
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("admin token: %w", err)
	}
	text, rec, err := s.issue(ctx, auth.Admin, nil, bootstrapName, "bootstrap", auth.MaxTTL)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if err := atomicfile.Write(path, []byte(text+"\n"), 0o600); err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	s.log.Info("admin token written", "path", path, "token_id", rec.ID)
	return nil
}

// setupTLS loads the operator's certificates or makes the cluster's own.
func (s *Server) setupTLS(ctx context.Context) error {
	dir := filepath.Join(s.cfg.DataDir, TLSDir)
	var clientCAs *x509.CertPool
	if s.cfg.TLSClientCA != "" {
		b, err := os.ReadFile(s.cfg.TLSClientCA)
		if err != nil {
			return fmt.Errorf("tls-client-ca: %w", err)
		}
		clientCAs = x509.NewCertPool()
		if !clientCAs.AppendCertsFromPEM(b) {
			return job.Invalid("tls-client-ca", "%s holds no PEM certificate", s.cfg.TLSClientCA)
		}
	}
	if s.cfg.TLSCert != "" {
		cert, err := pki.LoadServerCert(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return err
		}
		if clientCAs == nil {
			// Agents still join through the cluster's own CA.
			if s.ca, err = s.clusterCA(ctx, dir); err != nil {
				return err
			}
			clientCAs = s.ca.Pool()
		}
		s.tlsConfig = pki.ServerConfig(cert, clientCAs)
		s.log.Info("tls", "cert", s.cfg.TLSCert)
		return nil
	}
	ca, err := s.clusterCA(ctx, dir)
	if err != nil {
		return err
	}
	hosts := append([]string(nil), s.cfg.TLSHosts...)
	for _, a := range []string{s.cfg.GRPCAddr, s.cfg.HTTPAddr} {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" && !net.ParseIP(h).IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	cert, err := ca.EnsureServerCert(dir, hosts, s.now())
	if err != nil {
		return err
	}
	if clientCAs == nil {
		clientCAs = ca.Pool()
		s.ca = ca
	}
	s.tlsConfig = pki.ServerConfig(cert, clientCAs)
	s.log.Info("cluster CA", "path", filepath.Join(dir, "ca.pem"), "fingerprint", ca.Fingerprint())
	return nil
}

// CAFingerprint is the sha256 fingerprint of the cluster CA that agents
// pin when they join, or "" when the server has none.
func (s *Server) CAFingerprint() string {
	if s.ca == nil {
		return ""
	}
	return s.ca.Fingerprint()
}

// IssueToken creates a token for in-process callers (serve --dev's agent
// and login). It fails with InsecureNoAuth.
func (s *Server) IssueToken(ctx context.Context, role auth.Role, name string) (string, error) {
	if s.authority == nil {
		return "", errors.New("tokens: the server runs with --insecure-no-auth")
	}
	text, _, err := s.issue(ctx, role, nil, name, "serve", auth.DefaultTTL)
	return text, err
}

// DataDir is the server's data directory.
func (s *Server) DataDir() string { return s.cfg.DataDir }
