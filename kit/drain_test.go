package kit_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// HTTP/1.1 has no GOAWAY: a keep-alive connection that is idle when the
// drain delay ends is closed under a client that may be sending on it just
// then (seen in a rolling restart: a few calls per restart failed with
// "unexpected EOF", "connection reset by peer" or "broken pipe"). During the
// drain, responses over HTTP/1.x say "Connection: close", so clients that
// keep calling leave their connections before the listener closes.
func TestDrainAsksHTTP1ClientsToCloseTheirConnections(t *testing.T) {
	t.Parallel()
	srv := kittest.NewServer(t, kit.Config{AdminAddr: "127.0.0.1:0", DrainDelay: 2 * time.Second}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...))
	})
	ping := func() *http.Response {
		t.Helper()
		res, err := srv.HTTP1Client().Post(srv.URL+pingv1connect.PingServicePingProcedure, "application/json", strings.NewReader(`{"number": 7}`))
		if err != nil {
			t.Fatalf("ping: %v", err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("ping: status %d", res.StatusCode)
		}
		return res
	}
	if res := ping(); res.Close {
		t.Fatal("Connection: close before shutdown began")
	}

	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop() }()
	waitNotReady(t, srv.AdminURL)

	// Still served during the drain, but the connection is not kept.
	if res := ping(); !res.Close {
		t.Errorf("response during the drain delay: Connection %q, want close", res.Header.Get("Connection"))
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// The drain delay lets load balancers notice a planned stop. A failed
// background component stops the server at once: Config.DrainDelay says
// so, and the README's shutdown steps.
func TestDrainDelaySkippedWhenAComponentFails(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	srv, err := kit.New(kit.Config{Addr: "127.0.0.1:0", AdminAddr: kit.AdminOff, DrainDelay: 2 * time.Second},
		kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	failure := errors.New("consumer: broker unreachable")
	srv.Go(func(context.Context) error { return failure })
	if err := srv.Run(t.Context()); !errors.Is(err, failure) {
		t.Fatalf("Run = %v, want %v", err, failure)
	}
	if got := logs.String(); strings.Contains(got, "draining") || !strings.Contains(got, "shutdown complete") {
		t.Errorf("shutdown after a failure waited for the drain delay:\n%s", got)
	}
}
