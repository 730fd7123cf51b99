package kit_test

import (
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"

	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// grpcurl keeps its reflection stream open while its call runs, and
// grpcui, Postman or Evans for a whole session: such a stream waits in
// Receive for the client's next question, so it ended only when the
// shutdown timeout cut it, and Run reported calls that did not finish.
// Reflection streams end at shutdown, as health Watch streams do, and
// answer the questions already sent first.
func TestShutdownEndsReflectionStreams(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{name: "grpc", opts: []connect.ClientOption{connect.WithGRPC()}},
		{name: "connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := kittest.NewServer(t, kit.Config{ShutdownTimeout: 2 * time.Second}, func(*kit.Server) {})
			stream := grpcreflect.NewClient(srv.HTTP2Client(), srv.URL, tc.opts...).NewStream(t.Context())
			names, err := stream.ListServices()
			if err != nil || len(names) == 0 {
				t.Fatalf("ListServices = %v, %v", names, err)
			}
			if err := srv.Stop(); err != nil {
				t.Errorf("Run = %v, want nil: an idle reflection stream held the shutdown", err)
			}
		})
	}
}
