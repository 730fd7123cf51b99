package kit_test

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// An HTTP/2 client that reads its socket, answers pings, but grants a
// stream no flow-control window would hold the handler inside Send: the
// stream is reset once a Send has waited the stall timeout.
func TestStalledSendResetsTheStream(t *testing.T) {
	t.Parallel()
	srv := kittest.NewServer(t, kit.Config{}, func(s *kit.Server) {
		kit.SetSendStall(s, 200*time.Millisecond)
		s.Mount(pingv1connect.NewPingServiceHandler(&pingServer{}, s.HandlerOptions()...))
	})
	conn := srv.Dial(t)
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	// A window of 0: the server can send headers, and no DATA.
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":authority", "kit"},
		{":path", pingv1connect.PingServiceCountUpProcedure}, {"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	msg, _ := proto.Marshal(&pingv1.CountUpRequest{Number: 3})
	envelope := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	if err := fr.WriteData(1, true, append(envelope, msg...)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %v: %v, want RST_STREAM on stream 1", time.Since(start), err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			_ = fr.WritePing(true, f.Data)
		case *http2.DataFrame:
			t.Fatalf("DATA on a stream with no window: %v", f)
		case *http2.RSTStreamFrame:
			if f.StreamID != 1 {
				t.Fatalf("RST_STREAM on stream %d", f.StreamID)
			}
			return // the handler was released
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v: the whole connection ended, not the stream", f.ErrCode)
		}
	}
}
