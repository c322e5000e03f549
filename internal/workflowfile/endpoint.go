package workflowfile

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// CheckTransport refuses a tracker endpoint that would carry the
// tracker's token in clear across a network: the token goes with every
// request, so plain http:// is allowed only to a loopback host
// (127.0.0.0/8, ::1, localhost: a local stand-in, a test server, a proxy
// on the same machine that speaks https onwards). https:// is allowed to
// any host. The workflow loader checks the Linear and GitHub endpoints
// with it, and the tracker's clients again before their first request.
func CheckTransport(u *url.URL) error {
	if !strings.EqualFold(u.Scheme, "http") || LoopbackHost(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("must use https: the tracker's token is sent with every request, and plain http is allowed only to a loopback host (127.0.0.0/8, ::1, localhost), got host %q", u.Hostname())
}

// LoopbackHost reports whether host (a URL's Hostname: no port, no
// brackets) is this machine's loopback: an address in 127.0.0.0/8 or ::1,
// or the name localhost (RFC 6761: always the loopback). Other names are
// not resolved: what a name resolves to may change after the check.
func LoopbackHost(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
