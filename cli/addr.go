package cli

import (
	"net"
	"strconv"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/hodei-jobs/hodei/pki"
)

// checkAddr refuses a server address (--addr or HODEI_ADDR, with the
// default port added) that no dial could reach: no host, or a port that is
// not a number from 1 to 65535, or a host no name or address is written
// with (a space, a slash). It is a usage error, exit 2.
func checkAddr(c *ucli.Context, addr string) error {
	typed := globalString(c, flagAddr)
	host, port, err := net.SplitHostPort(addr)
	if err != nil || strings.Contains(host, ":") && net.ParseIP(host) == nil || strings.ContainsAny(host, " \t/@?#") {
		return usagef(c, "--addr: %q is not HOST[:PORT] (127.0.0.1:7070, say)", typed)
	}
	if host == "" {
		return usagef(c, "--addr: %q has no host; give HOST[:PORT] (127.0.0.1:7070, say)", typed)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return usagef(c, "--addr: %q: the port must be a number from 1 to 65535 (or leave it out for 7070)", typed)
	}
	return nil
}

// loopbackNames are the names of this host's loopback server that a
// login stored for one of them serves for the others too, in the order
// they are tried: the server's own certificate holds all three.
var loopbackNames = []string{"127.0.0.1", "localhost", "::1"}

// login returns the login stored for addr or, for a loopback address
// with none, the one stored for another name of the loopback on the same
// port: localhost:7070, 127.0.0.1:7070 and [::1]:7070 are one server.
func (l *logins) login(addr string) login {
	if lg, ok := l.Servers[addr]; ok || !pki.Loopback(addr) {
		return lg
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return login{}
	}
	for _, h := range loopbackNames {
		if lg, ok := l.Servers[net.JoinHostPort(h, port)]; ok {
			return lg
		}
	}
	return login{}
}
