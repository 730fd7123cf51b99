package kit_test

import (
	"context"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"golang.org/x/net/http2"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// TestHTTPClientHTTP1CallsShow calls a kit server (h2c) and a connect
// handler served over HTTP/1.1 only, twice each, through HTTPClient with
// ClientOptions: the two calls over HTTP/1.1 (the first sent again after
// its h2c attempt, the second straight) count in
// kit_client_http1_calls_total, under the server's host and port as peer,
// and their client spans carry
// network.protocol.version "1.1"; the calls over h2c do neither.
func TestHTTPClientHTTP1CallsShow(t *testing.T) {
	t.Parallel()
	caller, reg, spans := observedCaller(t)
	var tl tally
	backend := pingBackend(t, &tl, &pingServer{})
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(&pingServer{}))
	h1 := httptest.NewServer(mux)
	t.Cleanup(h1.Close)

	for _, tc := range []struct {
		name, url string
		http1     float64 // kit_client_http1_calls_total{peer} after the calls
		version   string  // network.protocol.version of their client spans
	}{
		{name: "kit server over h2c", url: "http://" + backend.Addr().String(), http1: 0, version: ""},
		{name: "HTTP/1.1-only server", url: h1.URL, http1: 2, version: "1.1"},
	} {
		ping := pingv1connect.NewPingServiceClient(caller.HTTPClient(), tc.url, caller.ClientOptions()...)
		for range 2 {
			if _, err := ping.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
				t.Fatalf("%s: Ping: %v", tc.name, err)
			}
		}
		want := map[string]float64{} // no series before the first call over HTTP/1.1
		if tc.http1 > 0 {
			want[strings.TrimPrefix(h1.URL, "http://")] = tc.http1
		}
		if got := http1Calls(t, reg); !maps.Equal(got, want) {
			t.Errorf("%s: kit_client_http1_calls_total by peer = %v, want %v", tc.name, got, want)
		}
		versions := clientSpanVersions(spans)
		if len(versions) != 2 || versions[0] != tc.version || versions[1] != tc.version {
			t.Errorf("%s: the client spans' network.protocol.version = %q, want 2 spans with %q", tc.name, versions, tc.version)
		}
		spans.Reset()
	}
}

// TestHTTPClientCallMovedToH2CShowsNoHTTP1 calls an HTTP/1.1-only server
// twice (counted over HTTP/1.1), then, at its address, one that speaks
// HTTP/2 alone and sends its SETTINGS frame first, as grpc-go's and
// x/net/http2's do: the third call, sent over HTTP/1.1 since the address
// is known to speak HTTP/1.x, is refused with that frame and sent again
// over h2c, where it is answered. It counts in no
// kit_client_http1_calls_total and its client span says no
// network.protocol.version "1.1": it went over HTTP/2.
func TestHTTPClientCallMovedToH2CShowsNoHTTP1(t *testing.T) {
	t.Parallel()
	caller, reg, spans := observedCaller(t)
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(&pingServer{}))
	var pri atomic.Int32
	addr, stop := serveAt(t, "127.0.0.1:0", false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // no connection kept for the next server's calls
		mux.ServeHTTP(w, r)
	}), &pri)
	ping := pingv1connect.NewPingServiceClient(caller.HTTPClient(), "http://"+addr, caller.ClientOptions()...)
	for range 2 {
		if _, err := ping.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
			t.Fatalf("Ping of the HTTP/1.1 server: %v", err)
		}
	}
	stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var h2calls atomic.Int32
	go func() {
		// x/net/http2's server answers an HTTP/1.1 request with its SETTINGS
		// frame, as grpc-go does; net/http's HTTP/2-only server closes instead.
		//lint:ignore SA1019 the deprecated server is the behaviour under test
		h2 := &http2.Server{}
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			//lint:ignore SA1019 as above
			go h2.ServeConn(c, &http2.ServeConnOpts{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h2calls.Add(1)
				mux.ServeHTTP(w, r)
			})})
		}
	}()
	if _, err := ping.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
		t.Fatalf("Ping of the HTTP/2-only server: %v", err)
	}
	if h2calls.Load() != 1 {
		t.Fatalf("the HTTP/2-only server got %d calls; want the third Ping", h2calls.Load())
	}
	want := map[string]float64{addr: 2}
	if got := http1Calls(t, reg); !maps.Equal(got, want) {
		t.Errorf("kit_client_http1_calls_total by peer = %v, want %v (the Ping sent again over h2c not counted)", got, want)
	}
	if versions, want := clientSpanVersions(spans), []string{"1.1", "1.1", ""}; !slices.Equal(versions, want) {
		t.Errorf("the client spans' network.protocol.version = %q, want %q", versions, want)
	}
}

// observedCaller returns a kit server whose client's metrics go to reg
// and whose client spans to spans.
func observedCaller(t *testing.T) (caller *kittest.Server, reg *prometheus.Registry, spans *tracetest.InMemoryExporter) {
	t.Helper()
	spans = tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	reg = prometheus.NewRegistry()
	caller = kittest.NewServer(t, kit.Config{}, nil, kit.WithRegistry(reg),
		kit.WithInterceptorOptions(interceptors.WithTracerProvider(tp)))
	return caller, reg, spans
}

// clientSpanVersions returns the network.protocol.version of each client
// span in spans ("" for none), in the order they ended.
func clientSpanVersions(spans *tracetest.InMemoryExporter) []string {
	var versions []string
	for _, s := range spans.GetSpans().Snapshots() {
		if s.SpanKind().String() != "client" {
			continue
		}
		version := ""
		for _, a := range s.Attributes() {
			if a.Key == "network.protocol.version" {
				version = a.Value.String()
			}
		}
		versions = append(versions, version)
	}
	return versions
}

// http1Calls returns the values of kit_client_http1_calls_total in reg, by
// peer.
func http1Calls(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "kit_client_http1_calls_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "peer" {
					got[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return got
}
