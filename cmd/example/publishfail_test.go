package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
	"github.com/connectkit/connectkit/gen/example/v1/examplev1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
	"github.com/connectkit/connectkit/pubsub"
	"github.com/connectkit/connectkit/pubsub/mem"
)

// unconfirmed is a broker whose publishes are never confirmed, as when the
// broker is unreachable and nats.go times out waiting for the ack.
type unconfirmed struct{ pubsub.Broker }

func (unconfirmed) Publish(context.Context, *pubsub.Message) (pubsub.Confirmation, error) {
	return nil, errors.New("nats: timeout waiting for ack")
}

// A change whose event the broker did not confirm is reported as Unknown,
// which clients do not retry (a retried create would store the profile
// twice), saying that the profile was saved.
func TestChangeWithAnUnconfirmedEvent(t *testing.T) {
	t.Parallel()
	bus := mem.New()
	srv := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		if err := wire(s, unconfirmed{bus}); err != nil {
			t.Fatal(err)
		}
	})
	client := examplev1connect.NewProfileServiceClient(srv.HTTP2Client(), srv.URL)
	_, err := client.CreateProfile(t.Context(), connect.NewRequest(&examplev1.CreateProfileRequest{Name: "Ada", Email: "ada@example.com"}))
	if connect.CodeOf(err) != connect.CodeUnknown || !strings.Contains(err.Error(), "was saved") {
		t.Fatalf("err = %v, want unknown: … was saved …", err)
	}
	list, err := client.ListProfiles(t.Context(), connect.NewRequest(&examplev1.ListProfilesRequest{}))
	if err != nil || len(list.Msg.GetProfiles()) != 1 {
		t.Fatalf("ListProfiles = %v, %v; want the saved profile", list, err)
	}
}
