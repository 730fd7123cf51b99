package kit_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/connectkit/connectkit/kit"
)

// A New that fails after it set up tracing shuts the tracer provider down:
// with spans exported over OTLP, the batch processor's goroutine (and the
// exporter's connections) stayed for the life of the process, one more for
// each attempt of an application that builds its server again.
func TestFailedNewStopsTracing(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	taken := prometheus.NewRegistry()
	// Taken, so that the chain's metrics, registered after tracing is set
	// up, fail to register.
	taken.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "grpc_server_started_total", Help: "other"}))
	before := runtime.NumGoroutine()
	for range 5 {
		if _, err := kit.New(kit.Config{AdminAddr: kit.AdminOff}, kit.WithRegistry(taken)); err == nil {
			t.Fatal("New succeeded with the chain's metric taken")
		}
	}
	var now int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if now = runtime.NumGoroutine(); now <= before {
			return
		}
	}
	t.Errorf("%d goroutines after 5 failed New, %d before", now, before)
}
