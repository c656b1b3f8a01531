package cli

// Credentials: where the CLI finds the token and the CA it trusts for a
// server, and `hodei login`, which stores them per server address in the
// user's config dir.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/atomicfile"
	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/pki"
	pb "github.com/hodei-jobs/hodei/proto"
)

const (
	flagCAFile = "ca-file"
	loginsFile = "logins.json"
)

// login is what `hodei login` keeps for one server address.
type login struct {
	Token string `json:"token"`
	CA    string `json:"ca_pem"` // the pinned CA certificate, PEM
}

// logins is the file DIR/hodei/logins.json: logins by server address.
type logins struct {
	Servers map[string]login `json:"servers"`
}

// configDir is $XDG_CONFIG_HOME/hodei, or the platform's user config dir.
func configDir() (string, error) {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "hodei"), nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("config dir: %w", err)
	}
	return filepath.Join(d, "hodei"), nil
}

// loadLogins reads the logins file; a missing file is no logins.
func loadLogins() (*logins, string, error) {
	dir, err := configDir()
	if err != nil {
		return nil, "", err
	}
	path := filepath.Join(dir, loginsFile)
	l := &logins{Servers: map[string]login{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return l, path, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("logins: %w", err)
	}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, "", fmt.Errorf("logins %s: %w", path, err)
	}
	if l.Servers == nil {
		l.Servers = map[string]login{}
	}
	return l, path, nil
}

// saveLogin stores the login of addr, with the file and its directory
// readable by the user alone.
func saveLogin(addr string, lg login) (string, error) {
	l, path, err := loadLogins()
	if err != nil {
		return "", err
	}
	l.Servers[addr] = lg
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return "", err
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("logins: %w", err)
	}
	return path, nil
}

// dialOptions resolves how to reach addr: the token from --token, then
// HODEI_TOKEN, then the stored login; the CA from --ca-file, then
// HODEI_CA_FILE, then the stored login. Without a CA the connection is
// plaintext, which only a loopback server run with --insecure-no-auth
// accepts; elsewhere that is an error that says how to log in.
func dialOptions(c *ucli.Context, addr string) ([]client.Option, error) {
	token, caFile := globalString(c, flagToken), globalString(c, flagCAFile)
	l, _, err := loadLogins()
	if err != nil {
		return nil, err
	}
	stored := l.login(addr)
	if token == "" {
		token = stored.Token
	}
	caPEM := []byte(stored.CA)
	if caFile != "" {
		if caPEM, err = os.ReadFile(caFile); err != nil {
			return nil, usagef(c, "--ca-file: %s", err)
		}
	}
	if len(caPEM) == 0 {
		if !pki.Loopback(addr) {
			return nil, fmt.Errorf("no CA certificate for %s: run `hodei login --addr %s --ca-fingerprint sha256:…` (the server logs its fingerprint) or pass --ca-file", addr, addr)
		}
		return nil, nil // plaintext, to a --insecure-no-auth server
	}
	cfg, err := pki.ClientConfig(caPEM, nil, pki.ServerName(addr))
	if err != nil {
		return nil, err
	}
	return []client.Option{client.WithTLS(cfg), client.WithToken(token)}, nil
}

// loginCommand is `hodei login`.
func loginCommand(*env) *ucli.Command {
	return &ucli.Command{
		Name:  "login",
		Usage: "store a token and the server's CA for the CLI",
		Description: "Keeps the token and the pinned CA certificate for --addr in $XDG_CONFIG_HOME/hodei/logins.json (mode 0600).\n" +
			"The token comes from --token-file, --token or HODEI_TOKEN; the CA from --ca-file, or from the server itself,\n" +
			"checked against --ca-fingerprint (the sha256: value the server logs at start).",
		Flags: withFlags(false,
			&ucli.StringFlag{Name: "token-file", Usage: "read the token from `FILE` (DATA-DIR/admin.token on the server host)"},
			&ucli.StringFlag{Name: "ca-fingerprint", Usage: "pin the server's CA by its `sha256:HEX` fingerprint"},
		),
		Action: func(c *ucli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			addr := serverAddr(c)
			if err := checkAddr(c, addr); err != nil {
				return err
			}
			token := globalString(c, flagToken)
			if f := c.String("token-file"); f != "" {
				b, err := os.ReadFile(f)
				if err != nil {
					return usagef(c, "--token-file: %s", err)
				}
				token = strings.TrimSpace(string(b))
			}
			if token == "" {
				return usagef(c, "no token: pass --token-file FILE, --token or HODEI_TOKEN")
			}
			caPEM, err := loginCA(c, addr)
			if err != nil {
				return err
			}
			who, err := whoAmI(c.Context, addr, token, caPEM)
			if err != nil {
				return err
			}
			path, err := saveLogin(addr, login{Token: token, CA: string(caPEM)})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "logged in to %s as %s (%s); saved in %s\n", addr, who.GetName(), who.GetRole(), path)
			return nil
		},
	}
}

// loginCA finds the CA to pin for addr: --ca-file, the server's own CA
// checked against --ca-fingerprint, or the one stored by an earlier login.
func loginCA(c *ucli.Context, addr string) ([]byte, error) {
	file, fp := globalString(c, flagCAFile), c.String("ca-fingerprint")
	switch {
	case file != "" && fp != "":
		return nil, usagef(c, "--ca-file and --ca-fingerprint: give one")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, usagef(c, "--ca-file: %s", err)
		}
		return b, nil
	case fp != "":
		pin, err := pki.ParseFingerprint(fp)
		if err != nil {
			return nil, usagef(c, "--ca-fingerprint: %s", err)
		}
		return pki.FetchCA(c.Context, addr, pin)
	}
	l, _, err := loadLogins()
	if err != nil {
		return nil, err
	}
	if ca := l.Servers[addr].CA; ca != "" {
		return []byte(ca), nil
	}
	return nil, usagef(c, "no CA for %s: pass --ca-file FILE (DATA-DIR/tls/ca.pem on the server host) or --ca-fingerprint sha256:…", addr)
}

// whoAmI checks a token against the server.
func whoAmI(ctx context.Context, addr, token string, caPEM []byte) (*pb.TokenInfo, error) {
	cfg, err := pki.ClientConfig(caPEM, nil, pki.ServerName(addr))
	if err != nil {
		return nil, err
	}
	cl, err := client.Dial(ctx, addr, client.WithTLS(cfg), client.WithToken(token))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return cl.Admin().WhoAmI(ctx, &pb.WhoAmIRequest{})
}
