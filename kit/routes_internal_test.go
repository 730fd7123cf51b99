package kit

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// TestRoutesChooseAsServeMux mounts services and other patterns on routes
// and on a bare ServeMux alike, and requires every request to get the same
// handler, pattern and answer (redirects included) from both; and requires
// the shortcut to be taken where it may be, so that the comparison is not
// of the ServeMux with itself.
func TestRoutesChooseAsServeMux(t *testing.T) {
	type mount struct {
		pattern string
		service bool
	}
	services := []mount{{"/", false}, {"/a.S/", true}, {"/b.T/", true}, {"/metrics", false}}
	// The targets that take the shortcut to a.S and to b.T, whatever the
	// host, when it is on.
	aS := []string{"/a.S/Ping", "/a.S/", "/a.S/.x", "/a.S/Pi%20ng", "/a.S/Special", "http://example.com/a.S/Ping"}
	bT := []string{"/b.T/Ping", "/b.T/Special"}
	cases := []struct {
		name   string
		mounts []mount
		fast   []string // request targets that take the shortcut
	}{
		{"services", services, append(aS, bT...)},
		{"exact path under a service", append(services, mount{"/a.S/Special", false}), bT},
		{"subtree under a service", append(services, mount{"/a.S/x/", false}), bT},
		{"mounted before the service", append([]mount{{"/b.T/Special", false}}, services...), aS},
		{"escaped path under a service", append(services, mount{"/a%2ES/Special", false}), bT},
		{"services at unclean paths", append(services, mount{"//c.U/", true}, mount{"/d.V//", true}), append(aS, bT...)},
		{"host", append(services, mount{"example.com/", false}), nil},
		{"method", append(services, mount{"GET /other/", false}), nil},
		{"wildcard", append(services, mount{"/other/{x}", false}), nil},
	}
	targets := []string{
		"/a.S/Ping", "/a.S/", "/a.S", "/a.S/.", "/a.S/..", "/a.S/.x", "/a.S//Ping", "/a.S/./Ping",
		"/x/../a.S/Ping", "/a.S%2FPing", "/a.S/Pi%6Eg", "/a.S/Pi%20ng", "/a.S/Special", "/a.S/x/y",
		"/b.T/Ping", "/b.T/Special", "/metrics", "/other/1", "/unknown", "a.S/Ping", "*",
		"http://example.com/a.S/Ping", "//c.U/Ping", "/d.V//Ping",
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rt, mux := newRoutes(), http.NewServeMux()
			for _, m := range c.mounts {
				h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					fmt.Fprintf(w, "%s pattern=%q path=%q", m.pattern, r.Pattern, r.URL.Path)
				})
				rt.handle(m.pattern, h, m.service)
				mux.Handle(m.pattern, h)
			}
			for _, method := range []string{"POST", "GET", "CONNECT", "OPTIONS"} {
				for _, target := range targets {
					for _, host := range []string{"localhost", "example.com"} {
						raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\n\r\n", method, target, host)
						got, want := serveRaw(t, rt, raw), serveRaw(t, mux, raw)
						if got != want {
							t.Errorf("%s %s (Host %s):\nroutes:   %s\nServeMux: %s", method, target, host, got, want)
						}
						r := readRaw(t, raw)
						// CONNECT takes an absolute URL as an authority, with no path.
						fast := slices.Contains(c.fast, target) && (method != "CONNECT" || target[0] == '/')
						if r == nil {
							continue
						}
						if h, _ := rt.service(r); (h != nil) != fast {
							t.Errorf("%s %s (Host %s): shortcut taken %v, want %v", method, target, host, h != nil, fast)
						}
					}
				}
			}
		})
	}
}

// readRaw parses a raw HTTP/1.1 request as the server does; nil if it
// cannot.
func readRaw(t *testing.T, raw string) *http.Request {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		return nil
	}
	r.RequestURI = strings.Fields(raw)[1]
	return r
}

// serveRaw serves a raw request with h and describes the answer.
func serveRaw(t *testing.T, h http.Handler, raw string) string {
	r := readRaw(t, raw)
	if r == nil {
		return "unparsable"
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return fmt.Sprintf("%d Location=%q %s", w.Code, w.Header().Get("Location"), strings.TrimSpace(w.Body.String()))
}

// hasPrefixFold compares without regard to ASCII case, as connect compares
// content types (lower-cased).
func TestHasPrefixFold(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s, prefix string
		want      bool
	}{
		{s: "application/grpc", prefix: "application/grpc", want: true},
		{s: "Application/GRPC+proto", prefix: "application/grpc", want: true},
		{s: "application/grp", prefix: "application/grpc"},
		{s: "application/json", prefix: "application/grpc"},
		{s: "application\x0fgrpc", prefix: "application/grpc"},
		{s: "APPLICATION/CONNECT+JSON", prefix: "application/connect+", want: true},
	} {
		if got := hasPrefixFold(tc.s, tc.prefix); got != tc.want {
			t.Errorf("hasPrefixFold(%q, %q) = %v, want %v", tc.s, tc.prefix, got, tc.want)
		}
	}
}

// connectCall tells Connect calls, unary or streams, from gRPC and
// gRPC-Web ones, without regard to the content type's case.
func TestConnectCall(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		method, contentType string
		ok, stream          bool
	}{
		{method: http.MethodGet, ok: true},
		{method: http.MethodPost, contentType: "application/json", ok: true},
		{method: http.MethodPost, contentType: "application/proto", ok: true},
		{method: http.MethodPost, contentType: "Application/JSON", ok: true},
		{method: http.MethodPost, contentType: "text/plain", ok: true},
		{method: http.MethodPost, contentType: "", ok: true},
		{method: http.MethodPost, contentType: "application/connect+json", ok: true, stream: true},
		{method: http.MethodPost, contentType: "APPLICATION/Connect+proto", ok: true, stream: true},
		{method: http.MethodPost, contentType: "application/grpc"},
		{method: http.MethodPost, contentType: "application/grpc-web+proto"},
		{method: http.MethodPost, contentType: "Application/gRPC"},
		{method: http.MethodPut, contentType: "application/json"},
	} {
		r := httptest.NewRequest(tc.method, "/a.S/M", nil)
		if tc.contentType != "" {
			r.Header.Set("Content-Type", tc.contentType)
		}
		if ok, stream := connectCall(r); ok != tc.ok || stream != tc.stream {
			t.Errorf("connectCall(%s %q) = %v, %v, want %v, %v", tc.method, tc.contentType, ok, stream, tc.ok, tc.stream)
		}
	}
}
