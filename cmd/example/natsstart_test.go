package main

import (
	"context"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
	"github.com/connectkit/connectkit/gen/example/v1/examplev1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
	"github.com/connectkit/connectkit/pubsub/natsjs"
)

// newExampleNATSDown runs the example's wiring with NATS_URL at a loopback
// address where nothing listens yet, and returns the server and that
// address.
func newExampleNATSDown(t *testing.T) (*kittest.Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	bus, err := natsjs.New(context.Background(), natsjs.Config{URL: "nats://" + addr})
	if err != nil {
		t.Fatalf("natsjs.New with nothing at NATS_URL = %v, want a broker that connects later", err)
	}
	// Registered before the server's cleanup, so it runs after it.
	t.Cleanup(func() {
		if err := bus.Close(); err != nil {
			t.Errorf("closing the broker: %v", err)
		}
	})
	return kittest.NewServer(t, kit.Config{AdminAddr: "127.0.0.1:0"}, func(srv *kit.Server) {
		if err := wire(srv, bus); err != nil {
			t.Fatal(err)
		}
	}), addr
}

// readyz returns the status code of the server's /readyz.
func readyz(t *testing.T, srv *kittest.Server) int {
	t.Helper()
	res, err := http.Get(srv.AdminURL + "/readyz")
	if err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestStartWhileNATSDown: the example started while no NATS server answers
// at NATS_URL serves its RPCs and is not ready; once a server (JetStream,
// file storage) listens there it turns ready without a restart, and the
// change events of calls made before and after reach the audit log's
// subscriber. The shutdown is clean.
func TestStartWhileNATSDown(t *testing.T) {
	t.Parallel()
	// Made before the server's cleanup is registered, so that it is
	// removed after the server stopped: cleanups run last in, first out,
	// and a store removed under a running server (a consumer's directory
	// being written) failed the test with "directory not empty".
	dir := t.TempDir()
	var nats *natsjs.Broker // the server, standing for an external one; closed last
	t.Cleanup(func() {
		if nats != nil {
			_ = nats.Close()
		}
	})
	srv, addr := newExampleNATSDown(t)
	client := examplev1connect.NewProfileServiceClient(srv.HTTP2Client(), srv.URL, connect.WithGRPC())
	ctx := t.Context()

	if _, err := client.GetProfile(ctx, connect.NewRequest(&examplev1.GetProfileRequest{Id: "00000000-0000-4000-8000-000000000000"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("GetProfile while NATS is down = %v, want NotFound (served)", err)
	}
	if code := readyz(t, srv); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while NATS is down = %d, want 503", code)
	}
	// A change made meanwhile: its event is held until NATS answers.
	type result struct {
		id  string
		err error
	}
	before := make(chan result, 1)
	go func() {
		res, err := client.CreateProfile(ctx, connect.NewRequest(&examplev1.CreateProfileRequest{Name: "Grace", Email: "grace@example.com"}))
		before <- result{res.Msg.GetProfile().GetId(), err}
	}()

	var err error
	nats, err = natsjs.New(context.Background(), natsjs.Config{DataDir: dir, Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); readyz(t, srv) != http.StatusOK; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still not 200 20s after NATS came")
		}
	}
	first := <-before
	if first.err != nil {
		t.Fatalf("CreateProfile made while NATS was down = %v, want its event held and confirmed", first.err)
	}
	created, err := client.CreateProfile(ctx, connect.NewRequest(&examplev1.CreateProfileRequest{Name: "Ada", Email: "ada@example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{first.id, created.Msg.GetProfile().GetId()} {
		if kinds := auditKinds(t, client, id, 1); !slices.Equal(kinds, []examplev1.ProfileChanged_Kind{examplev1.ProfileChanged_KIND_CREATED}) {
			t.Errorf("audit log of %s = %v, want created", id, kinds)
		}
	}
}

// TestShutdownWhileNATSNeverCame: the example started while no NATS server
// answers shuts down cleanly (Run returns nil, the broker's Close too)
// without one ever coming.
func TestShutdownWhileNATSNeverCame(t *testing.T) {
	t.Parallel()
	srv, _ := newExampleNATSDown(t)
	if code := readyz(t, srv); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while NATS is down = %d, want 503", code)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}
