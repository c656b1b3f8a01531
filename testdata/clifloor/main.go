// Command clifloor is the least a Go client of Hodei's API needs: gRPC over
// TLS, the generated protobuf code, a bearer token, one Submit call. It
// has no CLI framework, no login file and no output formatting, so
// BenchmarkCLI runs it beside hodei to show the floor a Go CLI cannot go
// under on the machine.
//
//	clifloor version       prints a version, as `hodei --version`
//	clifloor submit        submits /bin/true, as `hodei submit -- /bin/true`
//
// submit reads HODEI_ADDR, HODEI_TOKEN and HODEI_CA_FILE.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "submit" {
		if err := submit(); err != nil {
			fmt.Fprintln(os.Stderr, "clifloor:", err)
			os.Exit(1)
		}
		return
	}
	fmt.Println("clifloor dev")
}

func submit() error {
	addr := os.Getenv("HODEI_ADDR")
	caPEM, err := os.ReadFile(os.Getenv("HODEI_CA_FILE"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("no CA certificate in %s", os.Getenv("HODEI_CA_FILE"))
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: host}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithPerRPCCredentials(bearer(os.Getenv("HODEI_TOKEN"))))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := hodeipb.NewJobServiceClient(conn).Submit(context.Background(),
		&hodeipb.SubmitRequest{Spec: &hodeipb.JobSpec{Command: []string{"/bin/true"}}})
	if err != nil {
		return err
	}
	fmt.Println(resp.GetId())
	return nil
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }
