package ui

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// The dashboard has no authentication (it is for the operator on this
// machine), so three guards stand in for it:
//
//   - Host: a browser tricked by DNS rebinding sends the attacker's name as
//     Host. Only loopback names and addresses (and an explicitly configured
//     bind host) are served; anything else gets 421.
//   - Origin: a page on another site can make the operator's browser POST
//     here (CSRF). A state-changing request must come from the dashboard's
//     own origin: Sec-Fetch-Site same-origin (or none, typed by the user),
//     else an Origin, else a Referer, naming this very host. A request with
//     none of the three is not from a browser and is allowed (curl).
//   - Headers: a CSP without inline script, nosniff, no framing.

// contentSecurityPolicy allows only the dashboard's own files: no inline
// script or style, no eval, no framing, forms post only here.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if !s.hostAllowed(r.Host) {
			s.log.Warn("refused request with a foreign Host header (DNS rebinding?)", "host", clip(r.Host, 100), "path", clip(r.URL.Path, 200), "remote", r.RemoteAddr)
			writeError(w, r, http.StatusMisdirectedRequest, "host_not_allowed", "this dashboard answers only to loopback host names (got Host "+strconvQuote(clip(r.Host, 100))+")")
			return
		}
		if !safeMethod(r.Method) {
			if why := crossOrigin(r); why != "" {
				s.log.Warn("refused cross-origin state change (CSRF?)", "why", why, "method", r.Method, "path", clip(r.URL.Path, 200), "remote", r.RemoteAddr)
				writeError(w, r, http.StatusForbidden, "cross_origin_refused", "state-changing requests must come from the dashboard's own pages: "+why)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// hostAllowed accepts loopback names and addresses, with or without a
// port, and the configured bind host.
func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	return isLoopbackHost(host) || s.allowedHosts[host]
}

// isLoopbackHost reports whether host is "localhost", a name under
// .localhost (RFC 6761 reserves both for loopback) or a loopback address.
func isLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

func isUnspecified(host string) bool {
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.IsUnspecified()
}

// crossOrigin explains why a state-changing request is not from the
// dashboard's own pages, or returns "".
func crossOrigin(r *http.Request) string {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "same-origin", "none":
		return ""
	case "":
	default:
		return "Sec-Fetch-Site is " + strconvQuote(clip(site, 40))
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		if origin == "null" {
			return "Origin is null"
		}
		u, err := url.Parse(origin)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return "Origin " + strconvQuote(clip(origin, 100)) + " is not this dashboard"
		}
		return ""
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return "Referer " + strconvQuote(clip(ref, 100)) + " is not this dashboard"
		}
	}
	return ""
}
