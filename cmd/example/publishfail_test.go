package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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

// notSent is a broker that gives up every publish before sending it, as
// natsjs does one that waited on its stream's lookup before the first
// connection.
type notSent struct{ pubsub.Broker }

func (notSent) Publish(context.Context, *pubsub.Message) (pubsub.Confirmation, error) {
	return nil, fmt.Errorf("%w: natsjs: failed to look up stream: context deadline exceeded", pubsub.ErrNotSent)
}

// A change whose event the broker did not send says so, not that the event
// may still be delivered, and that the profile was saved; an unconfirmed
// one says that it may.
func TestChangeWithAnEventNotSent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		broker pubsub.Broker
		want   string
	}{
		{name: "not sent", broker: notSent{mem.New()}, want: "was saved, but its change event was not sent to the broker (it will not be delivered)"},
		{name: "unconfirmed", broker: unconfirmed{mem.New()}, want: "was saved, but the broker did not confirm its change event (it may still be delivered)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
				if err := wire(s, tc.broker); err != nil {
					t.Fatal(err)
				}
			})
			client := examplev1connect.NewProfileServiceClient(srv.HTTP2Client(), srv.URL)
			_, err := client.CreateProfile(t.Context(), connect.NewRequest(&examplev1.CreateProfileRequest{Name: "Ada", Email: "ada@example.com"}))
			if connect.CodeOf(err) != connect.CodeUnknown || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want unknown: … %s …", err, tc.want)
			}
		})
	}
}

// waiting is a broker that confirms no publish until the publisher's
// context ends, as an unconfirmed publish waits out its caller.
type waiting struct {
	pubsub.Broker
	started chan struct{}
}

func (w waiting) Publish(ctx context.Context, _ *pubsub.Message) (pubsub.Confirmation, error) {
	w.started <- struct{}{}
	<-ctx.Done()
	return nil, ctx.Err()
}

// A client that goes away while the change's event awaits confirmation
// ends its call Canceled, a client's doing, not Unknown, which the
// README's RPCErrors alert counts as a server error.
func TestChangeWhoseCallerLeavesIsCanceled(t *testing.T) {
	t.Parallel()
	bus := waiting{mem.New(), make(chan struct{}, 1)}
	var codes []string
	var mu sync.Mutex
	srv := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		if err := wire(s, bus); err != nil {
			t.Fatal(err)
		}
	}, kit.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			res, err := next(ctx, req)
			if req.Spec().Procedure == examplev1connect.ProfileServiceCreateProfileProcedure {
				mu.Lock()
				codes = append(codes, connect.CodeOf(err).String())
				mu.Unlock()
			}
			return res, err
		}
	})))
	client := examplev1connect.NewProfileServiceClient(srv.HTTP2Client(), srv.URL)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-bus.started; cancel() }()
	if _, err := client.CreateProfile(ctx, connect.NewRequest(&examplev1.CreateProfileRequest{Name: "Ada", Email: "ada@example.com"})); connect.CodeOf(err) != connect.CodeCanceled {
		t.Fatalf("err = %v, want canceled", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got := slices.Clone(codes)
		mu.Unlock()
		if len(got) == 1 {
			if got[0] != "canceled" {
				t.Errorf("the server ended the call %s, want canceled", got[0])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the server's call did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A change whose call the shutdown cuts while its event awaits the broker's
// confirmation ends Unknown, saying the profile was saved, as when the
// broker fails: not Unavailable ("the server is shutting down"), which its
// client would retry on another instance, storing the profile twice.
func TestChangeCutByShutdownIsUnknown(t *testing.T) {
	t.Parallel()
	bus := waiting{mem.New(), make(chan struct{}, 1)}
	srv := kittest.NewServer(t, kit.Config{ShutdownTimeout: 300 * time.Millisecond}, func(s *kit.Server) {
		if err := wire(s, bus); err != nil {
			t.Fatal(err)
		}
	})
	client := examplev1connect.NewProfileServiceClient(srv.HTTP2Client(), srv.URL)
	stopped := make(chan error, 1)
	go func() { <-bus.started; stopped <- srv.Stop() }()
	_, err := client.CreateProfile(t.Context(), connect.NewRequest(&examplev1.CreateProfileRequest{Name: "Ada", Email: "ada@example.com"}))
	if connect.CodeOf(err) != connect.CodeUnknown || !strings.Contains(err.Error(), "was saved") {
		t.Errorf("err = %v, want unknown: … was saved …", err)
	}
	<-stopped
}

// A change whose event awaits confirmation past the call's deadline (a
// broker outage) ends DeadlineExceeded, as its caller sees it, not
// Unknown: in a rolling-deploy run with NATS down, the server logged and
// counted Unknown for calls whose callers had seen DeadlineExceeded.
func TestChangePastItsDeadlineIsDeadlineExceeded(t *testing.T) {
	t.Parallel()
	bus := waiting{mem.New(), make(chan struct{}, 1)}
	srv := kittest.NewServer(t, kit.Config{CallTimeout: 100 * time.Millisecond}, func(s *kit.Server) {
		if err := wire(s, bus); err != nil {
			t.Fatal(err)
		}
	})
	client := examplev1connect.NewProfileServiceClient(srv.HTTP2Client(), srv.URL)
	// No deadline of the client's own: the server's (KIT_CALL_TIMEOUT)
	// ends the call, so the code is the server's.
	_, err := client.CreateProfile(t.Context(), connect.NewRequest(&examplev1.CreateProfileRequest{Name: "Ada", Email: "ada@example.com"}))
	if connect.CodeOf(err) != connect.CodeDeadlineExceeded || !strings.Contains(err.Error(), "was saved") {
		t.Fatalf("err = %v, want deadline_exceeded: … was saved …", err)
	}
}
