package kit_test

import (
	"compress/gzip"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// bombCompressor is a connect.Compressor that sends bomb, whatever the
// message: a client or handler given it sends a gzip bomb as a well-formed
// call in any protocol.
type bombCompressor struct {
	bomb []byte
	w    io.Writer
}

func (c *bombCompressor) Write(p []byte) (int, error) { return len(p), nil }
func (c *bombCompressor) Reset(w io.Writer)           { c.w = w }
func (c *bombCompressor) Close() error {
	_, err := c.w.Write(c.bomb)
	return err
}

// sendsBomb makes a client or handler compress every message with gzip as
// bomb.
func sendsBomb(bomb []byte) (func() connect.Decompressor, func() connect.Compressor) {
	return func() connect.Decompressor { return &gzip.Reader{} },
		func() connect.Compressor { return &bombCompressor{bomb: bomb} }
}

// stoppedInflating is the end of the message of a ResourceExhausted raised
// by kit's gzip before it inflated past the limit; connect's own would have
// inflated all of the bomb and reported its size.
const stoppedInflating = "gzip: stopped decompressing past the 65536-byte limit"

// checkStopped fails unless err is ResourceExhausted from kit's gzip limit.
func checkStopped(t *testing.T, what string, err error) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted || !strings.HasSuffix(ce.Message(), stoppedInflating) {
		t.Errorf("%s: got %v, want ResourceExhausted ending %q", what, err, stoppedInflating)
	}
}

func TestGzipBombStopsAtTheLimitInEveryProtocol(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	srv := newPingServer(t, kit.Config{MaxRequestBytes: limit, MaxResponseBytes: limit}, nil)
	// 48 MiB from about 50 KiB: under the limit on the wire, so that only
	// inflating it can find it too large.
	bomb := gzipBomb(t, 48)
	if len(bomb) > limit {
		t.Fatalf("bomb of %d bytes is over the %d-byte limit before decompression", len(bomb), limit)
	}
	decompressor, compressor := sendsBomb(bomb)

	for _, p := range srv.Protocols() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			client := newPingClient(srv, p.Client, append(p.Options,
				connect.WithAcceptCompression("gzip", decompressor, compressor),
				connect.WithSendGzip())...)

			_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1}))
			checkStopped(t, "unary", err)

			stream := client.Sum(t.Context())
			_ = stream.Send(&pingv1.SumRequest{Number: 1}) // an early error shows in CloseAndReceive
			_, err = stream.CloseAndReceive()
			checkStopped(t, "client stream", err)

			// A gzipped message under the limit still goes through, and its
			// gzipped echo comes back.
			text := strings.Repeat("x", limit-64)
			ok := newPingClient(srv, p.Client, append(p.Options, connect.WithSendGzip())...)
			res, err := ok.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Text: text}))
			if err != nil || res.Msg.GetText() != text {
				t.Errorf("gzipped Ping under the limit: %v", err)
			}
		})
	}
}

func TestClientOptionsStopAGzipBombResponseAtTheLimit(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	decompressor, compressor := sendsBomb(gzipBomb(t, 48))
	// A server whose every gzipped response is the bomb.
	srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&pingServer{},
			append(srv.HandlerOptions(), connect.WithCompression("gzip", decompressor, compressor))...))
	})
	caller, err := kit.New(kit.Config{MaxResponseBytes: limit, AdminAddr: kit.AdminOff},
		kit.WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil))))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range srv.Protocols() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			client := newPingClient(srv, p.Client, append(caller.ClientOptions(), p.Options...)...)
			// Over compressMinBytes, so that the response is compressed.
			_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Text: strings.Repeat("x", 2048)}))
			checkStopped(t, "unary response", err)
		})
	}
}
