package natsjs_test

import (
	"net"
	"net/url"
	"testing"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/natsjs"
	"github.com/connectkit/connectkit/pubsub/pubsubtest"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestServerAddress checks the server a broker reports, and that the spans
// of its publishes and deliveries carry it as server.address and
// server.port.
func TestServerAddress(t *testing.T) {
	t.Parallel()
	inProcess, err := natsjs.New(t.Context(), natsjs.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inProcess.Close() })
	if addr := inProcess.ServerAddress(); addr != "" {
		t.Errorf("in-process broker's ServerAddress() = %q, want none", addr)
	}
	owner := newListening(t, natsjs.Config{})
	u, err := url.Parse(owner.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	b := connectTo(t, owner)
	for name, got := range map[string]string{"listening": owner.ServerAddress(), "connected by URL": b.ServerAddress()} {
		if got != u.Host {
			t.Errorf("%s broker's ServerAddress() = %q, want %q", name, got, u.Host)
		}
	}

	spans := tracetest.NewInMemoryExporter()
	ic, err := interceptors.Tracing(interceptors.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))))
	if err != nil {
		t.Fatal(err)
	}
	var c collector
	sub, err := pubsub.NewSubscriber(b, "addressed", "s", c.handle, pubsub.WithHandlerOptions(connect.WithInterceptors(ic)))
	if err != nil {
		t.Fatal(err)
	}
	pubsubtest.Start(t, sub)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "addressed", pubsub.WithClientOptions(connect.WithInterceptors(ic)))
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(t.Context(), &pingv1.PingRequest{Number: 1}); err != nil {
		t.Fatal(err)
	}
	pubsubtest.WaitFor(t, "the publish and process spans", func() bool { return len(spans.GetSpans()) == 2 })
	for _, span := range spans.GetSpans() {
		got := map[string]string{}
		for _, kv := range span.Attributes {
			got[string(kv.Key)] = kv.Value.String()
		}
		if got["server.address"] != u.Hostname() || got["server.port"] != u.Port() {
			t.Errorf("span %q: server.address %q, server.port %q; want %s and %s", span.Name,
				got["server.address"], got["server.port"], u.Hostname(), u.Port())
		}
	}
}

// TestAddressesOfAWildcardListener checks the server an embedded server
// listening on every interface (NATS_LISTEN=":4222") reports, and the URL
// it gives other processes: the loopback address its own connection
// reaches, not the unspecified address 0.0.0.0 or ::, which names no
// server.
func TestAddressesOfAWildcardListener(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		listen, host string
	}{
		{listen: ":-1", host: "127.0.0.1"},
		{listen: "0.0.0.0:-1", host: "127.0.0.1"},
		{listen: "[::]:-1", host: "::1"},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			t.Parallel()
			b, err := natsjs.New(t.Context(), natsjs.Config{DataDir: t.TempDir(), Listen: tc.listen})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			u, err := url.Parse(b.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			if u.Scheme != "nats" || u.Hostname() != tc.host || u.Port() == "" {
				t.Errorf("ClientURL() = %q, want nats://%s", b.ClientURL(), net.JoinHostPort(tc.host, "PORT"))
			}
			if got, want := b.ServerAddress(), net.JoinHostPort(tc.host, u.Port()); got != want {
				t.Errorf("ServerAddress() = %q, want %q", got, want)
			}
			// The broker's own connection dials that URL, not the
			// unspecified address, which Windows refuses to dial.
			if got, want := b.Conn().ConnectedUrl(), b.ClientURL(); got != want {
				t.Errorf("Conn().ConnectedUrl() = %q, want %q", got, want)
			}
		})
	}
}
