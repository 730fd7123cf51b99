package natsjs_test

import (
	"strings"
	"testing"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/pubsub"
)

// A message over the server's max payload is no transient failure: its
// code must not invite a retry (Unavailable).
func TestPublishOverMaxPayload(t *testing.T) {
	t.Parallel()
	b := newEmbedded(t)
	pub, err := pubsub.NewPublisher[pingv1.PingRequest](b, "big", pubsub.WithoutValidation())
	if err != nil {
		t.Fatal(err)
	}
	err = pub.Publish(t.Context(), &pingv1.PingRequest{Text: strings.Repeat("x", int(b.Conn().MaxPayload())+1)})
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "max payload") {
		t.Errorf("publishing over the max payload = %v, want resource_exhausted naming the max payload", err)
	}
}
