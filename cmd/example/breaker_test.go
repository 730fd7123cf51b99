package main

import (
	"strings"
	"testing"

	"connectrpc.com/connect"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
	"github.com/connectkit/connectkit/gen/example/v1/examplev1connect"
	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
	"github.com/connectkit/connectkit/pubsub/mem"
)

// With the client breaker on (KIT_CLIENT_BREAKER=on), publishes, which go
// through the same client chain, are never refused: each change whose event
// the broker does not confirm still tries to publish it, however many failed
// before.
func TestClientBreakerLetsPublishesThrough(t *testing.T) {
	t.Parallel()
	bus := mem.New()
	srv := kittest.NewServer(t, kit.Config{ClientBreaker: kit.ClientBreakerConfig{Enabled: true}}, func(s *kit.Server) {
		if err := wire(s, unconfirmed{bus}); err != nil {
			t.Fatal(err)
		}
	})
	client := examplev1connect.NewProfileServiceClient(srv.HTTP2Client(), srv.URL)
	for range 3 * interceptors.DefaultBreakerConsecutiveFailures {
		_, err := client.CreateProfile(t.Context(), connect.NewRequest(&examplev1.CreateProfileRequest{Name: "Ada", Email: "ada@example.com"}))
		if connect.CodeOf(err) != connect.CodeUnknown || !strings.Contains(err.Error(), "nats: timeout waiting for ack") {
			t.Fatalf("err = %v, want the broker's own error", err)
		}
	}
}
