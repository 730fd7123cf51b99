package pubsub

import (
	"context"
	"sync/atomic"
	"testing"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
)

// acceptingBroker takes every message and confirms it at once.
type acceptingBroker struct{ Broker }

func (acceptingBroker) System() string { return "test" }

func (acceptingBroker) Publish(context.Context, *Message) (Confirmation, error) {
	return confirmed{}, nil
}

type confirmed struct{}

func (confirmed) Wait(context.Context) error { return nil }

// askedValidator counts the messages protovalidate is asked about.
type askedValidator struct{ asked *atomic.Int64 }

func (v askedValidator) Validate(msg proto.Message, opts ...protovalidate.ValidationOption) error {
	v.asked.Add(1)
	return protovalidate.GlobalValidator.Validate(msg, opts...)
}

// TestPublisherValidatesOnlyMessagesWithRules checks that a publisher asks
// protovalidate about its messages only when their type holds rules, so
// that a service whose messages hold none never builds protovalidate's
// validator, as interceptors.Validation does for its calls.
func TestPublisherValidatesOnlyMessagesWithRules(t *testing.T) {
	t.Parallel()
	var asked atomic.Int64
	counting := optionFunc(func(c *config) { c.validator = askedValidator{&asked} })
	empty, err := NewPublisher[emptypb.Empty](acceptingBroker{}, "empty", counting)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := empty.Publish(t.Context(), &emptypb.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := asked.Load(); n != 0 {
		t.Errorf("protovalidate asked about %d messages without rules, want 0", n)
	}
	ping, err := NewPublisher[pingv1.PingRequest](acceptingBroker{}, "ping", counting)
	if err != nil {
		t.Fatal(err)
	}
	// Asked once already, so that protovalidate's global validator is
	// built by NewPublisher, not by the first publish (whose build could
	// deadlock with a file registered meanwhile).
	if n := asked.Load(); n != 1 {
		t.Errorf("protovalidate asked about %d messages by NewPublisher of a type with rules, want 1", n)
	}
	err = ping.Publish(t.Context(), &pingv1.PingRequest{Number: -1})
	if code := connect.CodeOf(err); code != connect.CodeInvalidArgument {
		t.Errorf("publishing an invalid ping: %v, want invalid_argument", err)
	}
	if asked.Load() == 0 {
		t.Error("protovalidate not asked about a message with rules")
	}
}
