package agent

// The agent's identity: the client certificate it gets by joining, kept in
// DATA-DIR/tls and used for every connection after (mTLS).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/pki"
	pb "github.com/hodei-jobs/hodei/proto"
)

// joinTimeout bounds the first contact with the server.
const joinTimeout = 30 * time.Second

// transport returns the credentials the agent connects with: plaintext
// with Insecure, else its client certificate, joining first with the join
// token when it has none.
func (a *Agent) transport(cfg Config) (grpc.DialOption, error) {
	if cfg.Insecure {
		if !pki.Loopback(cfg.Server) {
			return nil, job.Invalid("insecure-no-auth", "refused: %s is not a loopback address", cfg.Server)
		}
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	dir := filepath.Join(cfg.DataDir, "tls")
	cert, roots, err := pki.LoadAgentIdentity(dir)
	joinedBefore := err == nil
	if errors.Is(err, os.ErrNotExist) {
		switch {
		case cfg.Join == "":
			return nil, job.Invalid("join", "this agent has not joined a cluster yet: start it once with HODEI_JOIN_TOKEN=TOKEN (or --join TOKEN) and --ca-fingerprint sha256:… (hodei token create --role agent prints the line)")
		case cfg.CAFingerprint == "":
			return nil, job.Invalid("ca-fingerprint", "is required to join: the sha256:… fingerprint of the cluster CA, which the server logs at start and hodei token create --role agent prints")
		}
		ctx, cancel := context.WithTimeout(context.Background(), joinTimeout)
		defer cancel()
		if err := a.join(ctx, cfg, dir); err != nil {
			return nil, err
		}
		cert, roots, err = pki.LoadAgentIdentity(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("agent identity: %w", err)
	}
	if joinedBefore && cfg.Join != "" {
		a.log.Warn("already joined: --join is not needed and was not used", "identity", dir)
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      roots,
		ServerName:   pki.ServerName(cfg.Server),
		Certificates: []tls.Certificate{cert},
	})), nil
}

// join pins the server's CA by its fingerprint, then trades the join token
// for a client certificate over TLS verified against that CA, and keeps it
// in dir. A wrong fingerprint fails the TLS handshake, before the token is
// sent.
func (a *Agent) join(ctx context.Context, cfg Config, dir string) error {
	pin, err := pki.ParseFingerprint(cfg.CAFingerprint)
	if fe, ok := errors.AsType[*job.FieldError](err); ok {
		return job.Invalid("ca-fingerprint", "%s", fe.Rule)
	} else if err != nil {
		return job.Invalid("ca-fingerprint", "%s", err)
	}
	caPEM, err := pki.FetchCA(ctx, cfg.Server, pin)
	if _, dial := errors.AsType[*net.OpError](err); dial {
		return fmt.Errorf("join: no server answers at %s (is it running, and is --server its gRPC address?): %w", cfg.Server, err)
	} else if err != nil {
		return fmt.Errorf("join: %w", err) // it names the server
	}
	tlsCfg, err := pki.ClientConfig(caPEM, nil, pki.ServerName(cfg.Server))
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(cfg.Server, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithPerRPCCredentials(joinToken(cfg.Join)))
	if err != nil {
		return fmt.Errorf("join %s: %w", cfg.Server, err)
	}
	defer conn.Close()
	keyPEM, csr, err := pki.NewKeyAndCSR(a.id)
	if err != nil {
		return err
	}
	resp, err := pb.NewAgentServiceClient(conn).Join(ctx, &pb.JoinRequest{WorkerId: a.id, CsrDer: csr, Hostname: a.host})
	if err != nil {
		return fmt.Errorf("join %s: %w", cfg.Server, err)
	}
	if err := pki.SaveAgentIdentity(dir, keyPEM, resp.GetCertificatePem(), resp.GetCaPem()); err != nil {
		return err
	}
	a.log.Info("joined the cluster", "server", cfg.Server) // a.log names the worker
	return nil
}

// joinToken sends the join token on the Join call, over TLS only.
type joinToken string

func (t joinToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (joinToken) RequireTransportSecurity() bool { return true }
