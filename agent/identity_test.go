package agent

import (
	"net"
	"strings"
	"testing"
)

// TestJoinNoServer: an agent's first join to an address where nothing
// listens says so and names --server, rather than a bare dial error.
func TestJoinNoServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	_, err = New(Config{
		Server: addr, DataDir: t.TempDir(), Join: "token",
		CAFingerprint: "sha256:" + strings.Repeat("ab", 32),
	})
	if err == nil || !strings.Contains(err.Error(), "no server answers at "+addr) || !strings.Contains(err.Error(), "--server") {
		t.Fatalf("New = %v; want it to say no server answers at %s and name --server", err, addr)
	}
}
