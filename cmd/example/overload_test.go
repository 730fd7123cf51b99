package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
	"github.com/connectkit/connectkit/gen/example/v1/examplev1connect"
	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/kit"
)

// TestRateLimitSparesProbesAndEvents: with KIT_RATE_LIMIT refusing every
// call past the first, the health service still answers and the event of
// the one admitted change still reaches the audit log through JetStream
// (deliveries are exempt); ListProfileChanges is exempted by the test, to
// watch for it.
func TestRateLimitSparesProbesAndEvents(t *testing.T) {
	t.Parallel()
	srv := newExample(t, kit.Config{RateLimit: 1.0 / 3600, RateLimitBurst: 1},
		kit.WithLimitOptions(interceptors.WithExemptProcedures(examplev1connect.ProfileServiceListProfileChangesProcedure)))
	client := examplev1connect.NewProfileServiceClient(srv.HTTP2Client(), srv.URL)
	created, err := client.CreateProfile(t.Context(), connect.NewRequest(&examplev1.CreateProfileRequest{Name: "Mary", Email: "mary@example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	res, err := srv.HTTP1Client().Post(srv.URL+examplev1connect.ProfileServiceCreateProfileProcedure, "application/json",
		strings.NewReader(`{"name": "Jean", "email": "jean@example.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "rate limit exceeded") {
		t.Errorf("second call: %d %s, want 429 naming the rate limit", res.StatusCode, body)
	}

	id := created.Msg.GetProfile().GetId()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		changes, err := client.ListProfileChanges(t.Context(), connect.NewRequest(&examplev1.ListProfileChangesRequest{Id: id}))
		if err != nil {
			t.Fatal(err)
		}
		if len(changes.Msg.GetChanges()) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the admitted change never reached the audit log")
		}
	}

	// Checked once the audit log has handled an event, so its subscriber
	// has started: before, health is NOT_SERVING for it, rate limit or not.
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if h, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v %v, want SERVING", h, err)
	}
}
