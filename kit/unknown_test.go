package kit_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// A call to a procedure that nothing serves fails with Unimplemented, naming
// the procedure, in every protocol: what a gRPC server answers, and what
// tells a client with a stale package name where it went wrong.
func TestUnknownProcedureIsUnimplemented(t *testing.T) {
	t.Parallel()
	srv := kittest.NewServer(t, kit.Config{}, func(*kit.Server) {}) // no PingService
	const procedure = "/connectkit.ping.v1.PingService/Ping"
	for _, p := range srv.Protocols() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			_, err := newPingClient(srv, p.Client, p.Options...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
			if connect.CodeOf(err) != connect.CodeUnimplemented || !strings.Contains(err.Error(), procedure) {
				t.Errorf("err = %v, want unimplemented naming %s", err, procedure)
			}
		})
	}
	t.Run("grpc-go", func(t *testing.T) {
		t.Parallel()
		conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		err = conn.Invoke(t.Context(), procedure, &pingv1.PingRequest{}, &pingv1.PingResponse{})
		if st := status.Convert(err); st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), procedure) {
			t.Errorf("err = %v, want Unimplemented naming %s", err, procedure)
		}
	})
	t.Run("browser", func(t *testing.T) {
		t.Parallel()
		res, err := srv.HTTP1Client().Get(srv.URL + "/nowhere")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "not found") {
			t.Errorf("GET /nowhere = %d %q, want net/http's 404", res.StatusCode, body)
		}
	})
}

// A method that a mounted service does not have is Unimplemented too (the
// generated handler alone answers a text 404).
func TestUnknownMethodIsUnimplemented(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{}, nil)
	const procedure = "/connectkit.ping.v1.PingService/Nope"
	for _, p := range srv.Protocols() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			client := connect.NewClient[pingv1.PingRequest, pingv1.PingResponse](p.Client, srv.URL+procedure, p.Options...)
			_, err := client.CallUnary(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
			if connect.CodeOf(err) != connect.CodeUnimplemented || !strings.Contains(err.Error(), procedure) {
				t.Errorf("err = %v, want unimplemented naming %s", err, procedure)
			}
		})
	}
	t.Run("curl", func(t *testing.T) { // JSON, without Connect-Protocol-Version
		t.Parallel()
		res, err := srv.HTTP1Client().Post(srv.URL+procedure, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"code":"unimplemented"`) {
			t.Errorf("POST %s = %d %s, want 404 with a Connect unimplemented error", procedure, res.StatusCode, body)
		}
	})
}

// A handler mounted at "/" gets what no other path matches, RPCs included.
func TestMountRootTakesUnknownPaths(t *testing.T) {
	t.Parallel()
	srv := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		s.Mount("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "web app: "+r.URL.Path)
		}))
		s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, s.HandlerOptions()...))
	})
	res, err := srv.HTTP1Client().Get(srv.URL + "/profiles/42")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "web app: /profiles/42" {
		t.Errorf("GET /profiles/42 = %q, want the root handler's answer", body)
	}
	if _, err := newPingClient(srv, srv.HTTP2Client(), connect.WithGRPC()).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
		t.Errorf("mounted service: %v", err)
	}
}

// Calls answered Unimplemented are counted in
// kit_unknown_procedure_calls_total, by the mounted service whose method
// is unknown or "unknown": during a rolling deploy that removes a method,
// or for clients of a stale package name, an operator sees them, where the
// interceptors never run. Requests that are not calls (a browser's GET of
// a page) are not counted, and the labels stay bounded.
func TestUnknownProcedureCallsAreCounted(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{}, nil)
	count := func(service string) float64 {
		return counterValue(t, srv.Registry(), "kit_unknown_procedure_calls_total", map[string]string{"grpc_service": service})
	}
	for _, service := range []string{"connectkit.ping.v1.PingService", "unknown"} {
		if !hasSeries(t, srv.Registry(), "kit_unknown_procedure_calls_total", "grpc_service", service) || count(service) != 0 {
			t.Fatalf("before any call: no series of %s at 0 (increase() would miss the first call)", service)
		}
	}
	for _, procedure := range []string{"/connectkit.ping.v1.PingService/Nope", "/connectkit.gone.v1.GoneService/Ping", "/a/b/c/" + strings.Repeat("x", 100)} {
		for _, p := range srv.Protocols() {
			client := connect.NewClient[pingv1.PingRequest, pingv1.PingResponse](p.Client, srv.URL+procedure, p.Options...)
			if _, err := client.CallUnary(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); connect.CodeOf(err) != connect.CodeUnimplemented {
				t.Fatalf("%s over %s: %v; want unimplemented", procedure, p.Name, err)
			}
		}
	}
	res, err := srv.HTTP1Client().Get(srv.URL + "/favicon.ico") // not a call
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	protocols := float64(len(srv.Protocols()))
	if n := count("connectkit.ping.v1.PingService"); n != protocols {
		t.Errorf("calls of an unknown method of PingService counted %v; want %v", n, protocols)
	}
	if n := count("unknown"); n != 2*protocols {
		t.Errorf("calls of unknown services counted %v; want %v", n, 2*protocols)
	}
}

// hasSeries reports whether reg has a series of the metric name with the
// label set to value.
func hasSeries(tb testing.TB, reg prometheus.Gatherer, name, label, value string) bool {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if f.GetName() == name && l.GetName() == label && l.GetValue() == value {
					return true
				}
			}
		}
	}
	return false
}

// A gRPC call to an unknown procedure whose content type is written in
// another case (which connect serves as gRPC) gets gRPC's Unimplemented
// status, not a Connect error.
func TestUnknownProcedureOfAnyCase(t *testing.T) {
	t.Parallel()
	srv := kittest.NewServer(t, kit.Config{}, func(*kit.Server) {})
	for _, ct := range []string{"Application/GRPC", " application/grpc+proto", "APPLICATION/GRPC-WEB"} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/gone.v1.Gone/Ping", strings.NewReader(""))
		req.Header.Set("Content-Type", ct)
		res, err := srv.HTTP2Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if got := res.Header.Get("Grpc-Status") + res.Trailer.Get("Grpc-Status"); got != "12" {
			t.Errorf("Content-Type %q: status %d, Grpc-Status %q; want 12 (Unimplemented)", ct, res.StatusCode, got)
		}
	}
}
