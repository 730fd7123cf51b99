package kit_test

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	dto "github.com/prometheus/client_model/go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/kit"
)

// The Accept header of a Prometheus that scrapes native histograms (its
// first choice, the delimited protobuf exposition).
const acceptProtobuf = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"

// TestNativeHistogramsAtMetrics scrapes /metrics after a sampled call as a
// Prometheus with native histograms does (protobuf) and as one without
// them does (OpenMetrics): with KIT_METRICS_NATIVE_HISTOGRAMS the protobuf
// exposition carries grpc_server_handling_seconds as a native histogram
// too, and the OpenMetrics one is the same as without it: classic buckets,
// one with the call's exemplar.
func TestNativeHistogramsAtMetrics(t *testing.T) {
	t.Parallel()
	for _, native := range []bool{false, true} {
		t.Run(map[bool]string{false: "classic", true: "native"}[native], func(t *testing.T) {
			t.Parallel()
			tp := sdktrace.NewTracerProvider()
			t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
			srv := newPingServer(t, kit.Config{AdminAddr: "127.0.0.1:0", NativeHistograms: native}, nil,
				kit.WithInterceptorOptions(interceptors.WithTracerProvider(tp)))
			if _, err := newPingClient(srv, srv.HTTP2Client()).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
				t.Fatal(err)
			}

			ct, body := scrape(t, srv.AdminURL, acceptProtobuf)
			if !strings.Contains(ct, "application/vnd.google.protobuf") {
				t.Fatalf("Content-Type %q, want protobuf", ct)
			}
			h := pingHistogram(t, body)
			if isNative := h.Schema != nil && len(h.GetPositiveSpan()) > 0; isNative != native || len(h.GetBucket()) == 0 {
				t.Errorf("protobuf: native histogram %v with %d classic buckets, want %v with classic ones", isNative, len(h.GetBucket()), native)
			}

			ct, body = scrape(t, srv.AdminURL, "application/openmetrics-text; version=1.0.0")
			if !strings.HasPrefix(ct, "application/openmetrics-text") {
				t.Fatalf("Content-Type %q, want OpenMetrics", ct)
			}
			var buckets, exemplars int
			for line := range strings.SplitSeq(string(body), "\n") {
				if strings.HasPrefix(line, "grpc_server_handling_seconds_bucket{") && strings.Contains(line, `grpc_method="Ping"`) {
					buckets++
					if strings.Contains(line, ` # {trace_id="`) {
						exemplars++
					}
				}
			}
			if buckets != 12 || exemplars != 1 { // DefBuckets and +Inf
				t.Errorf("OpenMetrics: %d bucket lines, %d exemplars; want 12 and 1", buckets, exemplars)
			}
		})
	}
}

// scrape GETs /metrics from the admin listener at base, asking for accept,
// and returns the answer's Content-Type and body.
func scrape(t *testing.T, base, accept string) (string, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.Header.Get("Content-Type"), body
}

// pingHistogram returns the histogram of grpc_server_handling_seconds'
// Ping series in a delimited protobuf exposition.
func pingHistogram(t *testing.T, body []byte) *dto.Histogram {
	t.Helper()
	r := bufio.NewReader(strings.NewReader(string(body)))
	for {
		mf := &dto.MetricFamily{}
		if err := protodelim.UnmarshalFrom(r, mf); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("protobuf exposition: %v", err)
		}
		if mf.GetName() != "grpc_server_handling_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "grpc_method" && lp.GetValue() == "Ping" {
					return m.GetHistogram()
				}
			}
		}
	}
	t.Fatal("no grpc_server_handling_seconds series of Ping")
	return nil
}
