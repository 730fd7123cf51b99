package kit_test

import (
	"net"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/kit"
)

// The main listener's connections are counted while open and in total:
// raw TCP connections that send nothing, and the connections of an
// HTTP/1.1 and an h2c client that made calls; all closed, the gauge is
// back at 0.
func TestOpenConnectionsAreCounted(t *testing.T) {
	t.Parallel()
	// The raw connections send no request: with the default 5s header
	// timeout, a loaded machine that takes longer to reach the first wait
	// sees them closed before they are counted open.
	srv := newPingServer(t, kit.Config{ReadHeaderTimeout: time.Hour}, nil)
	reg := srv.Registry()
	raw := make([]net.Conn, 3)
	for i := range raw {
		raw[i] = srv.Dial(t)
	}
	h1 := &http.Client{Transport: &http.Transport{}}
	var h2proto http.Protocols
	h2proto.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{Protocols: &h2proto}}
	for _, c := range []struct {
		client *http.Client
		opts   []connect.ClientOption
	}{{h1, nil}, {h2, []connect.ClientOption{connect.WithGRPC()}}} {
		if _, err := newPingClient(srv, c.client, c.opts...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	}
	// The raw connections were accepted before the calls' answers came,
	// but net/http counts them from its own accept: wait for all five.
	waitForMetric(t, reg, "kit_server_open_connections", 5)
	if got := metricValue(t, reg, "kit_server_connections_total"); got != 5 {
		t.Errorf("kit_server_connections_total = %v, want 5", got)
	}
	for _, c := range raw {
		_ = c.Close()
	}
	h1.CloseIdleConnections()
	h2.CloseIdleConnections()
	waitForMetric(t, reg, "kit_server_open_connections", 0)
	if got := metricValue(t, reg, "kit_server_connections_total"); got != 5 {
		t.Errorf("kit_server_connections_total = %v after the closes, want 5", got)
	}
}

// waitForMetric waits until the unlabelled gauge name in reg is want: the
// server learns of a connection's accept and close asynchronously. Not a
// timing check: the deadline only ends a test that would hang.
func waitForMetric(t *testing.T, reg prometheus.Gatherer, name string, want float64) {
	t.Helper()
	var got float64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = metricValue(t, reg, name); got == want {
			return
		}
	}
	t.Fatalf("%s = %v, want %v", name, got, want)
}
