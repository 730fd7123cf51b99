package kit_test

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

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
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	reg := prometheus.NewRegistry()
	caller := kittest.NewServer(t, kit.Config{}, nil, kit.WithRegistry(reg),
		kit.WithInterceptorOptions(interceptors.WithTracerProvider(tp)))
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
		if len(versions) != 2 || versions[0] != tc.version || versions[1] != tc.version {
			t.Errorf("%s: the client spans' network.protocol.version = %q, want 2 spans with %q", tc.name, versions, tc.version)
		}
		spans.Reset()
	}
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
