package admin

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzGuard sends requests with any Authorization header and Host to a
// guarded, loopback-only handler: one that reaches it carries the token
// after a "Bearer " (in any case), and a Host that a browser resolves to
// loopback only: "localhost" or a loopback address, by the URL's reading
// of the Host as well as by the guard's (or none, which no browser sends).
func FuzzGuard(f *testing.F) {
	for _, seed := range []struct{ auth, host string }{
		{"Bearer s3cret", "localhost:9090"}, {"bearer  s3cret ", "127.0.0.1"}, {"Bearer s3cret", "[::1]:9090"},
		{"Basic s3cret", "localhost"}, {"Bearer", "localhost"}, {"Bearer s3cretx", "localhost"}, {"s3cret", ""},
		{"Bearer s3cret", "evil.example:9090"}, {"Bearer s3cret", "127.0.0.1.evil.example"}, {"Bearer s3cret", "[127.0.0.1]"},
		{"Bearer s3cret", "localhost.:80"}, {"Bearer s3cret", "[::ffff:127.0.0.1]:1"}, {"Bearer s3cret", "evil@127.0.0.1"},
		{"BeArer s3cret", ":"}, {"Bearer s3cret", "127.1"}, {"Bearer s3cret", "0x7f.0.0.1"}, {"Bearer s3cret", "[fe80::1%25lo]:1"},
	} {
		f.Add(seed.auth, seed.host)
	}
	const secret = "s3cret"
	f.Fuzz(func(t *testing.T, auth, host string) {
		reached := false
		h := loopbackHosts{next: &guard{token: newToken(secret), next: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true })}}
		r := httptest.NewRequest(http.MethodGet, "/debug/loglevel", nil)
		r.Host = host
		r.Header.Set("Authorization", auth)
		h.ServeHTTP(httptest.NewRecorder(), r)
		if !reached {
			return
		}
		scheme, tok, _ := strings.Cut(auth, " ")
		if !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(tok) != secret {
			t.Fatalf("Authorization %q let through", auth)
		}
		if host == "" {
			return // HTTP/1.0, from no browser
		}
		u, err := url.Parse("http://" + host + "/")
		if err != nil {
			return // no browser sends it
		}
		name := u.Hostname()
		if name == "" {
			return // no name (":9090"): no browser sends it either
		}
		if ip := net.ParseIP(name); !strings.EqualFold(name, "localhost") && (ip == nil || !ip.IsLoopback()) {
			t.Fatalf("Host %q (host name %q) let through", host, name)
		}
	})
}
