package kit

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FuzzConfigFrom sets one KIT_* variable (chosen by index) to any text and
// reads the config: every setting's parser returns a value or an error
// naming the variable, never panics; Validate never panics, nor New on a
// config Validate accepts (an interceptor's constructor panics on bad
// arguments: KIT_RATE_LIMIT, KIT_MAX_INFLIGHT must never reach one); and a
// valid value shows in -help (the flag's String) as text that parses back
// to the same setting.
func FuzzConfigFrom(f *testing.F) {
	for _, seed := range []struct {
		i uint8
		v string
	}{
		{0, ":8080"}, {2, "secret"}, {3, "true"}, {3, "maybe"}, {7, "https://a.example, *"},
		{11, "5s"}, {11, "-5s"}, {11, "1e9h"}, {15, "off"}, {15, "OFF"}, {15, "-2562047h47m16.854775808s"},
		{18, "4MiB"}, {18, "4 MiB"}, {18, "4611686018427387904"}, {18, "-1B"}, {18, "9999999999GiB"},
		{21, "100"}, {21, "99999999999999999999"}, {22, "false"}, {24, "debug+2"}, {24, "warn-8"},
		{25, "100"}, {25, "-3"}, {25, "abc"}, {25, "1e-300"}, {25, "NaN"}, {25, "off"}, {26, "20"}, {27, "off"}, {27, "64"},
	} {
		f.Add(seed.i, seed.v)
	}
	f.Fuzz(func(t *testing.T, i uint8, v string) {
		s := settings[int(i)%len(settings)]
		c, err := configFrom(func(env string) (string, bool) { return v, env == s.env })
		if err != nil {
			if !strings.Contains(err.Error(), s.env+"=") {
				t.Fatalf("%s=%q: error does not name the variable: %v", s.env, v, err)
			}
			return
		}
		if c.Validate() != nil {
			return // New refuses it: how -help shows it matters not
		}
		newAndClose(t, c)
		shown := (&settingFlag{c: &c, s: s}).String()
		if s.secret || shown == "" {
			return // a secret, or a default worth hiding
		}
		var back Config
		if err := s.set(&back, shown); err != nil {
			t.Fatalf("%s=%q shows as %q, which does not parse: %v", s.env, v, shown, err)
		}
		if got, want := s.get(&back), s.get(ptrTo(c.withDefaults())); !sameSetting(got, want) {
			t.Fatalf("%s=%q shows as %q, which reads back as %v, not %v", s.env, v, shown, got, want)
		}
	})
}

func ptrTo[T any](v T) *T { return &v }

// newAndClose makes a server of c, with no admin listener (which needs a
// port), and closes it: New must not panic on a valid config.
func newAndClose(t *testing.T, c Config) {
	t.Helper()
	c.AdminAddr = "off"
	srv, err := New(c, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return // a value that only New refuses (a certificate file that is not there)
	}
	if err := srv.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// sameSetting compares two values of a setting: every negative timeout is off.
func sameSetting(a, b any) bool {
	if da, ok := a.(time.Duration); ok {
		if db := b.(time.Duration); da < 0 && db < 0 {
			return true
		}
	}
	return reflect.DeepEqual(a, b)
}

// FuzzRoutesChooseAsServeMux is TestRoutesChooseAsServeMux's differential
// check on fuzzed mounts and requests: mounted alike on routes and on a
// bare ServeMux, every request gets the same answer (handler, pattern,
// path, redirect) from both. mounts holds one pattern a line; a service's
// is "/name/" (slashes around it as Mount accepts them), as [serviceOf]
// finds it.
func FuzzRoutesChooseAsServeMux(f *testing.F) {
	for _, seed := range []struct{ mounts, method, target string }{
		{"/\n/a.S/\n/b.T/\n/metrics", "POST", "/a.S/Ping"},
		{"/a.S/\n/a.S/Special", "POST", "/a.S/Special"},
		{"/a.S/\n/a.S/x/", "POST", "/a.S/x/y"},
		{"/b.T/Special\n/b.T/", "GET", "/b.T/Special"},
		{"/a.S/\n/a%2ES/Special", "POST", "/a.S/Special"},
		{"//c.U/\n/d.V//", "POST", "//c.U/Ping"},
		{"/a.S/\nexample.com/", "POST", "http://example.com/a.S/Ping"},
		{"/a.S/\nGET /other/", "GET", "/a.S/Ping"},
		{"/a.S/\n/other/{x}", "CONNECT", "/a.S/Ping"},
		{"/a.S/", "POST", "/a.S/.."},
		{"/a.S/", "POST", "/a.S/Pi%6Eg"},
		{"/a.S/", "OPTIONS", "*"},
		{"/a.S/\n/a.S", "POST", "/a.S"},
	} {
		f.Add(seed.mounts, seed.method, seed.target)
	}
	f.Fuzz(func(t *testing.T, mounts, method, target string) {
		if strings.ContainsAny(method+target, " \r\n") || method == "" || target == "" {
			return // not one request line
		}
		raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: localhost\r\n\r\n", method, target)
		if readRaw(t, raw) == nil {
			return
		}
		rt, mux := newRoutes(), http.NewServeMux()
		for pattern := range strings.SplitSeq(mounts, "\n") {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%s pattern=%q path=%q", pattern, r.Pattern, r.URL.Path)
			})
			if !mounts1(mux, pattern, h) {
				continue // invalid or taken: Mount panics
			}
			rt.handle(pattern, h, serviceName(pattern))
		}
		if got, want := serveRaw(t, rt, raw), serveRaw(t, mux, raw); got != want {
			t.Fatalf("mounts %q, %s %s:\nroutes:   %s\nServeMux: %s", mounts, method, target, got, want)
		}
	})
}

// mounts1 mounts h at pattern on mux, and says whether the ServeMux took it.
func mounts1(mux *http.ServeMux, pattern string, h http.Handler) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	mux.Handle(pattern, h)
	return true
}

// serviceName says whether pattern has the shape of a service's path that
// [serviceOf] accepts: a protobuf full name between slashes.
func serviceName(pattern string) bool {
	name := strings.Trim(pattern, "/")
	if !strings.HasSuffix(pattern, "/") || name == "" {
		return false
	}
	for _, r := range name {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// FuzzUnimplemented answers requests with fuzzed paths, methods, content
// types and query to an unknown procedure: whatever they are, a gRPC one
// gets a trailers-only Unimplemented whose Grpc-Message is printable ASCII
// that percent-decodes to the procedure's path, a Connect one a JSON
// unimplemented error naming it, anything else net/http's 404.
func FuzzUnimplemented(f *testing.F) {
	for _, seed := range []struct {
		method, path, query, ct, protocol string
		rpc                               bool
	}{
		{"POST", "/a.S/Ping", "", "application/grpc", "", false},
		{"POST", "/a.S/Ping", "", "application/grpc-web+proto", "", true},
		{"POST", "/a.S/Pïng%", "", "application/grpc+json", "", false},
		{"POST", "/a.S/Ping", "", "application/json; charset=utf-8", "", false},
		{"POST", "/a.S/Ping", "", " application/proto ;x", "", false},
		{"POST", "/a.S/Ping", "", "application/connect+proto", "", false},
		{"GET", "/a.S/Ping", "connect=v1&encoding=json", "", "", false},
		{"GET", "/a.S/Ping", "connect=v1;x", "", "", false},
		{"GET", "/a.S/Ping", "%zz", "", "", false},
		{"PUT", "/a.S/Ping", "", "text/plain", "1", false},
		{"GET", "/favicon.ico", "", "", "", false},
		{"POST", "/\x00\xff", "", "application/grpc", "", true},
	} {
		f.Add(seed.method, seed.path, seed.query, seed.ct, seed.protocol, seed.rpc)
	}
	calls := prometheus.NewCounter(prometheus.CounterOpts{Name: "calls"})
	f.Fuzz(func(t *testing.T, method, path, query, ct, protocol string, rpc bool) {
		r := &http.Request{Method: method, URL: &url.URL{Path: path, RawQuery: query}, Header: http.Header{}}
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		if protocol != "" {
			r.Header.Set("Connect-Protocol-Version", protocol)
		}
		w := httptest.NewRecorder()
		unimplemented(w, r, calls, rpc)
		switch {
		case strings.HasPrefix(ct, "application/grpc"):
			msg := w.Header().Get("Grpc-Message")
			for i := range len(msg) {
				if msg[i] < ' ' || msg[i] > '~' {
					t.Fatalf("Grpc-Message %q: byte %#x", msg, msg[i])
				}
			}
			decoded, err := url.PathUnescape(msg)
			if w.Code != http.StatusOK || w.Header().Get("Grpc-Status") != "12" || err != nil || decoded != "unknown procedure "+path {
				t.Fatalf("gRPC: %d, Grpc-Status %q, Grpc-Message %q (%q, %v)", w.Code, w.Header().Get("Grpc-Status"), msg, decoded, err)
			}
		case w.Header().Get("Content-Type") == "application/json":
			var e struct{ Code, Message string }
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || w.Code != http.StatusNotFound || e.Code != "unimplemented" ||
				e.Message != "unknown procedure "+jsonString(path) {
				t.Fatalf("Connect: %d %q (%v)", w.Code, w.Body, err)
			}
		case rpc:
			t.Fatalf("a call to a mounted service got %d %q", w.Code, w.Body)
		default:
			if w.Code != http.StatusNotFound {
				t.Fatalf("not a call: %d %q", w.Code, w.Body)
			}
		}
	})
}

// jsonString is s as it reads back from JSON: each invalid UTF-8 byte U+FFFD.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	_ = json.Unmarshal(b, &s)
	return s
}

// FuzzConnectUnaryBody checks connectUnaryBody against the content type
// connect serves a request as: connect lower-cases it and drops its
// parameters and spaces (canonicalizeContentType in connect-go's
// protocol.go, with mime.ParseMediaType), so a request it answers as gRPC,
// gRPC-Web or a Connect stream must never be taken for a Connect unary
// call, whose too-large body kit answers in the Connect protocol (HTTP 429,
// which a gRPC client reads as Unavailable and retries).
func FuzzConnectUnaryBody(f *testing.F) {
	for _, seed := range []struct{ method, ct, ce string }{
		{"POST", "application/proto", ""}, {"POST", "application/json", "identity"}, {"POST", "application/json", "gzip"},
		{"POST", "application/grpc", ""}, {"POST", "application/grpc-web+proto", ""}, {"POST", "application/connect+json", ""},
		{"GET", "application/proto", ""}, {"POST", "", ""}, {"POST", "application/json; charset=utf-8", ""},
		{"POST", "Application/GRPC", ""}, {"POST", " application/grpc", ""}, {"POST", "application/Connect+proto; x=1", ""},
	} {
		f.Add(seed.method, seed.ct, seed.ce)
	}
	f.Fuzz(func(t *testing.T, method, ct, ce string) {
		r := &http.Request{Method: method, Header: http.Header{}}
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		if ce != "" {
			r.Header.Set("Content-Encoding", ce)
		}
		if !connectUnaryBody(r) {
			return
		}
		served := ct
		if base, _, err := mime.ParseMediaType(ct); err == nil {
			served = base
		}
		if strings.HasPrefix(served, "application/grpc") || strings.HasPrefix(served, "application/connect+") {
			t.Fatalf("Content-Type %q, which connect serves as %q, taken for a Connect unary call", ct, served)
		}
		if method != http.MethodPost || ce != "" && ce != "identity" {
			t.Fatalf("%s with Content-Encoding %q taken for a Connect unary call's message", method, ce)
		}
	})
}
