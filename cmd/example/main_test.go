package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
	"github.com/connectkit/connectkit/gen/example/v1/examplev1connect"
	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
	"github.com/connectkit/connectkit/pubsub/natsjs"
)

// newExample runs the example's wiring on a random loopback port, with an
// embedded JetStream broker storing into a temporary directory.
func newExample(tb testing.TB, cfg kit.Config, opts ...kit.Option) *kittest.Server {
	tb.Helper()
	bus, err := natsjs.New(context.Background(), natsjs.Config{DataDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	// Registered before the server's cleanup, so it runs after it.
	tb.Cleanup(func() {
		if err := bus.Close(); err != nil {
			tb.Errorf("closing the broker: %v", err)
		}
	})
	return kittest.NewServer(tb, cfg, func(srv *kit.Server) {
		if err := wire(srv, bus); err != nil {
			tb.Fatal(err)
		}
	}, opts...)
}

func TestProfileLifecycleInEveryProtocol(t *testing.T) {
	t.Parallel()
	srv := newExample(t, kit.Config{})
	for _, p := range srv.Protocols() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			client := examplev1connect.NewProfileServiceClient(p.Client, srv.URL, p.Options...)

			created, err := client.CreateProfile(ctx, connect.NewRequest(&examplev1.CreateProfileRequest{Name: "Ada " + p.Name, Email: "ada@example.com"}))
			if err != nil {
				t.Fatalf("CreateProfile: %v", err)
			}
			id := created.Msg.GetProfile().GetId()

			got, err := client.GetProfile(ctx, connect.NewRequest(&examplev1.GetProfileRequest{Id: id}))
			if err != nil || got.Msg.GetProfile().GetName() != "Ada "+p.Name {
				t.Fatalf("GetProfile = %v, %v", got, err)
			}

			name := "Ada Lovelace"
			updated, err := client.UpdateProfile(ctx, connect.NewRequest(&examplev1.UpdateProfileRequest{Id: id, Name: &name}))
			if err != nil || updated.Msg.GetProfile().GetName() != name || updated.Msg.GetProfile().GetEmail() != "ada@example.com" {
				t.Fatalf("UpdateProfile = %v, %v", updated, err)
			}

			if _, err := client.DeleteProfile(ctx, connect.NewRequest(&examplev1.DeleteProfileRequest{Id: id})); err != nil {
				t.Fatalf("DeleteProfile: %v", err)
			}
			_, err = client.GetProfile(ctx, connect.NewRequest(&examplev1.GetProfileRequest{Id: id}))
			if connect.CodeOf(err) != connect.CodeNotFound {
				t.Fatalf("GetProfile after delete = %v, want NotFound", err)
			}
		})
	}
}

func TestListPagesAndImport(t *testing.T) {
	t.Parallel()
	srv := newExample(t, kit.Config{})
	client := examplev1connect.NewProfileServiceClient(srv.HTTP2Client(), srv.URL, connect.WithGRPC())
	ctx := t.Context()

	stream := client.ImportProfiles(ctx)
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		if err := stream.Send(&examplev1.ImportProfilesRequest{Profile: &examplev1.CreateProfileRequest{Name: name, Email: name + "@example.com"}}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := stream.CloseAndReceive()
	if err != nil || res.Msg.GetCreated() != 5 {
		t.Fatalf("ImportProfiles = %v, %v; want 5 created", res, err)
	}

	var names []string
	token := ""
	for pages := 0; ; pages++ {
		page, err := client.ListProfiles(ctx, connect.NewRequest(&examplev1.ListProfilesRequest{PageSize: 2, PageToken: token}))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page.Msg.GetProfiles() {
			names = append(names, p.GetName())
		}
		if token = page.Msg.GetNextPageToken(); token == "" {
			if pages != 2 {
				t.Errorf("%d pages, want 3", pages+1)
			}
			break
		}
	}
	if !slices.Equal(names, []string{"a", "b", "c", "d", "e"}) {
		t.Errorf("listed %v, want a..e in creation order", names)
	}

	for _, token := range []string{"not base64!", "zzz"} { // "zzz" decodes, to no id
		_, err = client.ListProfiles(ctx, connect.NewRequest(&examplev1.ListProfilesRequest{PageToken: token}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("page token %q: %v, want InvalidArgument", token, err)
		}
	}
}

// ImportProfiles validates each message of its stream: the first invalid
// one ends the call with InvalidArgument, and the profiles before it stay
// created, as its proto says.
func TestImportStopsAtTheFirstInvalidProfile(t *testing.T) {
	t.Parallel()
	srv := newExample(t, kit.Config{})
	for _, p := range srv.Protocols() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			client := examplev1connect.NewProfileServiceClient(p.Client, srv.URL, p.Options...)
			email := strings.NewReplacer("/", "-", "+", "-").Replace(p.Name) + "@example.com"
			stream := client.ImportProfiles(t.Context())
			for _, req := range []*examplev1.ImportProfilesRequest{
				{Profile: &examplev1.CreateProfileRequest{Name: "first", Email: "first-" + email}},
				{}, // no profile: invalid
				{Profile: &examplev1.CreateProfileRequest{Name: "third", Email: "third-" + email}},
			} {
				if stream.Send(req) != nil {
					break // the server has answered; CloseAndReceive says how
				}
			}
			_, err := stream.CloseAndReceive()
			if connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Fatalf("ImportProfiles = %v, want invalid_argument", err)
			}
			found := map[string]bool{}
			for token := ""; ; {
				page, err := client.ListProfiles(t.Context(), connect.NewRequest(&examplev1.ListProfilesRequest{PageSize: 100, PageToken: token}))
				if err != nil {
					t.Fatal(err)
				}
				for _, profile := range page.Msg.GetProfiles() {
					found[profile.GetEmail()] = true
				}
				if token = page.Msg.GetNextPageToken(); token == "" {
					break
				}
			}
			if !found["first-"+email] || found["third-"+email] {
				t.Errorf("created first: %v, third: %v; want only the first", found["first-"+email], found["third-"+email])
			}
		})
	}
}

func TestWatchStreamsChanges(t *testing.T) {
	t.Parallel()
	srv := newExample(t, kit.Config{})
	client := examplev1connect.NewProfileServiceClient(srv.HTTP2Client(), srv.URL, connect.WithGRPC())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	watch, err := client.WatchProfiles(ctx, connect.NewRequest(&examplev1.WatchProfilesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	// The handler sends headers once it is watching.
	_ = watch.ResponseHeader()
	if err := watch.Err(); err != nil {
		t.Fatal(err)
	}
	created, err := client.CreateProfile(ctx, connect.NewRequest(&examplev1.CreateProfileRequest{Name: "Grace", Email: "grace@example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	if !watch.Receive() {
		t.Fatalf("watch ended: %v", watch.Err())
	}
	change := watch.Msg().GetChange()
	if change.GetKind() != examplev1.ProfileChanged_KIND_CREATED || change.GetProfile().GetId() != created.Msg.GetProfile().GetId() {
		t.Errorf("change = %v", change)
	}
}

func TestGRPCGoClientAndReflection(t *testing.T) {
	t.Parallel()
	srv := newExample(t, kit.Config{})
	conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	var res examplev1.CreateProfileResponse
	err = conn.Invoke(t.Context(), "/example.v1.ProfileService/CreateProfile",
		&examplev1.CreateProfileRequest{Name: "Linus", Email: "linus@example.com"}, &res)
	if err != nil || res.GetProfile().GetId() == "" {
		t.Fatalf("CreateProfile = %v, %v", &res, err)
	}
	err = conn.Invoke(t.Context(), "/example.v1.ProfileService/GetProfile", &examplev1.GetProfileRequest{Id: "nope"}, &examplev1.GetProfileResponse{})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("GetProfile with a bad id = %v, want InvalidArgument", err)
	}

	stream, err := reflectionv1.NewServerReflectionClient(conn).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	list, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, "example.v1.ProfileService") {
		t.Errorf("reflection lists %v, want example.v1.ProfileService", names)
	}
}

func TestPlainHTTPJSON(t *testing.T) {
	t.Parallel()
	srv := newExample(t, kit.Config{})
	res, err := srv.HTTP1Client().Post(srv.URL+"/example.v1.ProfileService/CreateProfile", "application/json",
		strings.NewReader(`{"name": "Barbara", "email": "barbara@example.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var out struct {
		Profile struct{ ID, Name string } `json:"profile"`
	}
	if res.StatusCode != http.StatusOK || res.ProtoMajor != 1 || json.Unmarshal(body, &out) != nil || out.Profile.Name != "Barbara" || out.Profile.ID == "" {
		t.Fatalf("POST = HTTP/%d %d %s", res.ProtoMajor, res.StatusCode, body)
	}
}

func TestChangesReachTheAuditLogInOneTrace(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	srv := newExample(t, kit.Config{}, kit.WithInterceptorOptions(interceptors.WithTracerProvider(tp)))
	client := examplev1connect.NewProfileServiceClient(srv.HTTP2Client(), srv.URL, connect.WithGRPC())
	ctx := t.Context()

	created, err := client.CreateProfile(ctx, connect.NewRequest(&examplev1.CreateProfileRequest{Name: "Hedy", Email: "hedy@example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	id := created.Msg.GetProfile().GetId()
	name := "Hedy Lamarr"
	if _, err := client.UpdateProfile(ctx, connect.NewRequest(&examplev1.UpdateProfileRequest{Id: id, Name: &name})); err != nil {
		t.Fatal(err)
	}

	kinds := auditKinds(t, client, id, 2)
	if !slices.Equal(kinds, []examplev1.ProfileChanged_Kind{examplev1.ProfileChanged_KIND_CREATED, examplev1.ProfileChanged_KIND_UPDATED}) {
		t.Fatalf("audit log = %v, want created then updated", kinds)
	}

	// One trace: the CreateProfile RPC's server span, the publish (PRODUCER)
	// and the delivery (CONSUMER) of its event. The delivery's span ends
	// after its handler returns (and so after the audit log shows the
	// change), so wait for it too.
	var spanKinds map[trace.SpanKind]bool
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		spanKinds = createTraceKinds(t, spans.GetSpans().Snapshots())
		if spanKinds[trace.SpanKindConsumer] || time.Now().After(deadline) {
			break
		}
	}
	if !spanKinds[trace.SpanKindProducer] || !spanKinds[trace.SpanKindConsumer] {
		t.Errorf("the CreateProfile trace has span kinds %v, want a producer (publish) and a consumer (delivery)", spanKinds)
	}
}

// auditKinds returns the kinds of the changes of profile id in the audit
// log once it holds want of them, or after 20s: the log is built by a
// subscriber, which catches up.
func auditKinds(t *testing.T, client examplev1connect.ProfileServiceClient, id string, want int) []examplev1.ProfileChanged_Kind {
	t.Helper()
	var kinds []examplev1.ProfileChanged_Kind
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		res, err := client.ListProfileChanges(t.Context(), connect.NewRequest(&examplev1.ListProfileChangesRequest{Id: id}))
		if err != nil {
			t.Fatal(err)
		}
		kinds = kinds[:0]
		for _, c := range res.Msg.GetChanges() {
			kinds = append(kinds, c.GetKind())
		}
		if len(kinds) >= want || time.Now().After(deadline) {
			return kinds
		}
	}
}

// createTraceKinds returns the span kinds in the trace of the CreateProfile
// RPC's server span.
func createTraceKinds(t *testing.T, all []sdktrace.ReadOnlySpan) map[trace.SpanKind]bool {
	t.Helper()
	var rpc sdktrace.ReadOnlySpan
	for _, s := range all {
		if s.Name() == "example.v1.ProfileService/CreateProfile" && s.SpanKind() == trace.SpanKindServer {
			rpc = s
		}
	}
	if rpc == nil {
		t.Fatal("no CreateProfile server span")
	}
	kinds := map[trace.SpanKind]bool{}
	for _, s := range all {
		if s.SpanContext().TraceID() == rpc.SpanContext().TraceID() {
			kinds[s.SpanKind()] = true
		}
	}
	return kinds
}
