package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// token is the expected bearer token, kept as a digest: comparing digests
// in constant time hides the token's length as well as its bytes.
type token [sha256.Size]byte

func newToken(s string) token { return sha256.Sum256([]byte(s)) }

func (t token) matches(s string) bool {
	got := sha256.Sum256([]byte(s))
	return subtle.ConstantTimeCompare(got[:], t[:]) == 1
}

// guard lets through requests that carry the bearer token; the others reach
// only the probes (with their error texts hidden), or get 401.
type guard struct {
	token  token
	next   http.Handler
	probes http.Handler // nil when no health is served
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bearer, present := bearerToken(r)
	if present && g.token.matches(bearer) {
		g.next.ServeHTTP(w, r)
		return
	}
	if g.probes != nil && (r.URL.Path == "/healthz" || r.URL.Path == "/readyz") {
		g.probes.ServeHTTP(w, r)
		return
	}
	if !present {
		w.Header().Set("WWW-Authenticate", `Bearer realm="connectkit-admin"`)
		http.Error(w, "unauthorized: send Authorization: Bearer <admin token>", http.StatusUnauthorized)
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="connectkit-admin", error="invalid_token"`)
	http.Error(w, "unauthorized: wrong admin token", http.StatusUnauthorized)
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header (the scheme is case-insensitive) and whether there was one.
func bearerToken(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// loopbackHosts refuses requests whose Host is not a loopback name or
// address, for a listener bound to loopback (see [Config.Loopback]). A
// request without a Host (HTTP/1.0) comes from no browser and passes.
type loopbackHosts struct{ next http.Handler }

func (l loopbackHosts) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !loopbackHost(r.Host) {
		http.Error(w, fmt.Sprintf("forbidden: Host %q is not a loopback name or address, the only ones this admin listener on loopback answers", r.Host), http.StatusForbidden)
		return
	}
	l.next.ServeHTTP(w, r)
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "" || strings.EqualFold(host, "localhost") {
		return true
	}
	if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' { // "[::1]", without a port
		host = host[1 : len(host)-1]
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
