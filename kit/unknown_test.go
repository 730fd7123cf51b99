package kit_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// A call to a procedure that nothing serves fails with Unimplemented, naming
// the procedure, in every protocol: what a gRPC server answers, and what
// tells a client with a stale package name where it went wrong.
func TestUnknownProcedureIsUnimplemented(t *testing.T) {
	t.Parallel()
	srv := kittest.NewServer(t, kit.Config{}, func(*kit.Server) {}) // no PingService
	const procedure = "/connectkit.ping.v1.PingService/Ping"
	for _, p := range srv.Protocols() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			_, err := newPingClient(srv, p.Client, p.Options...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
			if connect.CodeOf(err) != connect.CodeUnimplemented || !strings.Contains(err.Error(), procedure) {
				t.Errorf("err = %v, want unimplemented naming %s", err, procedure)
			}
		})
	}
	t.Run("grpc-go", func(t *testing.T) {
		t.Parallel()
		conn, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		err = conn.Invoke(t.Context(), procedure, &pingv1.PingRequest{}, &pingv1.PingResponse{})
		if st := status.Convert(err); st.Code() != codes.Unimplemented || !strings.Contains(st.Message(), procedure) {
			t.Errorf("err = %v, want Unimplemented naming %s", err, procedure)
		}
	})
	t.Run("browser", func(t *testing.T) {
		t.Parallel()
		res, err := srv.HTTP1Client().Get(srv.URL + "/nowhere")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "not found") {
			t.Errorf("GET /nowhere = %d %q, want net/http's 404", res.StatusCode, body)
		}
	})
}

// A method that a mounted service does not have is Unimplemented too (the
// generated handler alone answers a text 404).
func TestUnknownMethodIsUnimplemented(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{}, nil)
	const procedure = "/connectkit.ping.v1.PingService/Nope"
	for _, p := range srv.Protocols() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			client := connect.NewClient[pingv1.PingRequest, pingv1.PingResponse](p.Client, srv.URL+procedure, p.Options...)
			_, err := client.CallUnary(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
			if connect.CodeOf(err) != connect.CodeUnimplemented || !strings.Contains(err.Error(), procedure) {
				t.Errorf("err = %v, want unimplemented naming %s", err, procedure)
			}
		})
	}
	t.Run("curl", func(t *testing.T) { // JSON, without Connect-Protocol-Version
		t.Parallel()
		res, err := srv.HTTP1Client().Post(srv.URL+procedure, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"code":"unimplemented"`) {
			t.Errorf("POST %s = %d %s, want 404 with a Connect unimplemented error", procedure, res.StatusCode, body)
		}
	})
}

// A handler mounted at "/" gets what no other path matches, RPCs included.
func TestMountRootTakesUnknownPaths(t *testing.T) {
	t.Parallel()
	srv := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		s.Mount("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "web app: "+r.URL.Path)
		}))
		s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, s.HandlerOptions()...))
	})
	res, err := srv.HTTP1Client().Get(srv.URL + "/profiles/42")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "web app: /profiles/42" {
		t.Errorf("GET /profiles/42 = %q, want the root handler's answer", body)
	}
	if _, err := newPingClient(srv, srv.HTTP2Client(), connect.WithGRPC()).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
		t.Errorf("mounted service: %v", err)
	}
}
