package kit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// heldPing's Ping signals entered and waits for release (or its
// context) before it answers.
type heldPing struct {
	pingv1connect.UnimplementedPingServiceHandler
	entered chan struct{}
	release chan struct{}
}

func (p *heldPing) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	p.entered <- struct{}{}
	select {
	case <-p.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return connect.NewResponse(&pingv1.PingResponse{Number: int64(len(req.Msg.GetText()))}), nil
}

const (
	inBytesMessage = 100 << 10 // each call's text
	inBytesLimit   = 250 << 10 // room for two such calls, not three
)

func newBytesServer(t *testing.T) (*kittest.Server, *heldPing) {
	t.Helper()
	svc := &heldPing{entered: make(chan struct{}, 16), release: make(chan struct{})}
	srv := kittest.NewServer(t, kit.Config{MaxInFlightBytes: inBytesLimit}, func(s *kit.Server) {
		s.Mount(pingv1connect.NewPingServiceHandler(svc, s.HandlerOptions()...))
	})
	return srv, svc
}

// pingCall makes one Ping of a text of size bytes in protocol, which is
// one of clientProtocols' or "rest", and returns the length the handler
// saw, or the call's error and, for REST, HTTP status.
type pingCall func(ctx context.Context, size int) (int64, error)

func pingCalls(srv *kittest.Server) map[string]pingCall {
	calls := map[string]pingCall{}
	for name, opts := range clientProtocols {
		httpClient := srv.HTTP2Client()
		if name == "connect" {
			httpClient = srv.HTTP1Client()
		}
		client := newPingClient(srv, httpClient, opts...)
		calls[name] = func(ctx context.Context, size int) (int64, error) {
			res, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Text: strings.Repeat("x", size)}))
			if err != nil {
				return 0, err
			}
			return res.Msg.GetNumber(), nil
		}
	}
	calls["rest"] = func(ctx context.Context, size int) (int64, error) {
		body, _ := json.Marshal(map[string]string{"text": strings.Repeat("x", size)})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/ping", bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := srv.HTTP1Client().Do(req)
		if err != nil {
			return 0, err
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("HTTP %d, Retry-After %q: %s", res.StatusCode, res.Header.Get("Retry-After"), out)
		}
		var msg struct {
			Number string `json:"number"`
		}
		if err := json.Unmarshal(out, &msg); err != nil {
			return 0, fmt.Errorf("%w: %s", err, out)
		}
		var n int64
		_, err = fmt.Sscan(msg.Number, &n)
		return n, err
	}
	return calls
}

// TestMaxInFlightBytes: four concurrent 100KiB calls under a 250KiB bound
// are read two at a time, in every protocol; the others wait, and are
// served once the first have ended, or refused with ResourceExhausted when
// they wait too long; a call larger than the bound is refused at once.
func TestMaxInFlightBytes(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"connect", "grpc", "grpcweb", "rest"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv, svc := newBytesServer(t)
			call := pingCalls(srv)[name]
			ctx := context.Background()

			const n = 4
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, err := call(ctx, inBytesMessage)
					if err == nil && got != inBytesMessage {
						err = fmt.Errorf("handler saw %d bytes of text, want %d", got, inBytesMessage)
					}
					errs <- err
				}()
			}
			for range 2 {
				select {
				case <-svc.entered:
				case <-time.After(time.Minute):
					t.Fatal("two calls did not reach their handlers")
				}
			}
			waitFor(t, "two calls waiting for their bytes", func() bool {
				_, _, waiting := kit.InFlightBytes(srv.Server)
				return waiting == n-2
			})
			select {
			case <-svc.entered:
				t.Fatal("a third call reached its handler with the bound full")
			default:
			}

			// A call that waits longer than it may is refused, and one
			// larger than the bound at once.
			kit.SetInFlightBytesWait(srv.Server, 50*time.Millisecond)
			_, err := call(ctx, inBytesMessage)
			checkRefusal(t, name, err, "did not fit", true)
			_, err = call(ctx, inBytesLimit)
			checkRefusal(t, name, err, fmt.Sprintf("exceeds the %d-byte limit", inBytesLimit), false)

			if name == "grpc" {
				// The health service is exempt: a probe is served
				// with the bound full.
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/grpc.health.v1.Health/Check", bytes.NewReader([]byte{0, 0, 0, 0, 0}))
				req.Header.Set("Content-Type", "application/grpc")
				res, err := srv.HTTP2Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if code := res.Trailer.Get("Grpc-Status") + res.Header.Get("Grpc-Status"); code != "0" {
					t.Errorf("health check with the bound full: grpc-status %q (%s%s), want 0",
						code, res.Header.Get("Grpc-Message"), res.Trailer.Get("Grpc-Message"))
				}
			}

			// Both refusals are rejected calls, which the chain never saw.
			labels := map[string]string{"grpc_method": "Ping", "grpc_code": "ResourceExhausted"}
			waitFor(t, "two rejected calls counted", func() bool {
				return counterValue(t, srv.Registry(), "kit_rejected_calls_total", labels) == 2
			})

			close(svc.release)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			inUse, peak, _ := kit.InFlightBytes(srv.Server)
			if inUse != 0 || peak > inBytesLimit || peak < 2*inBytesMessage {
				t.Errorf("bytes held %d (want 0), at most %d (want two calls' worth, at most %d)", inUse, peak, inBytesLimit)
			}
		})
	}
}

func checkRefusal(t *testing.T, protocol string, err error, text string, retry bool) {
	t.Helper()
	if err == nil {
		t.Fatalf("call served, want it refused (%s)", text)
	}
	if protocol == "rest" {
		if !strings.Contains(err.Error(), "HTTP 429") || !strings.Contains(err.Error(), text) ||
			retry && !strings.Contains(err.Error(), `Retry-After "1"`) {
			t.Errorf("got %v, want HTTP 429 with %q", err, text)
		}
		return
	}
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), text) {
		t.Errorf("got %v, want ResourceExhausted with %q", err, text)
	}
	var ce *connect.Error
	if retry && (!asConnectError(err, &ce) || ce.Meta().Get("Retry-After") != "1") {
		t.Errorf("refusal %v without Retry-After: 1", err)
	}
}

// TestMaxInFlightBytesSlowBody: a call whose body stalls holds its bytes
// only until its body's time is up, then gives them back.
func TestMaxInFlightBytesSlowBody(t *testing.T) {
	t.Parallel()
	srv, _ := newBytesServer(t)
	conn := srv.Dial(t)
	defer conn.Close()
	_, err := fmt.Fprintf(conn, "POST /connectkit.ping.v1.PingService/Ping HTTP/1.1\r\nHost: x\r\n"+
		"Content-Type: application/json\r\nConnect-Timeout-Ms: 300\r\nContent-Length: %d\r\n\r\n{", inBytesMessage)
	if err != nil {
		t.Fatal(err)
	}
	// The peak, not the bytes held now: those are given back when the
	// 300ms body timer fires, which a poll on a loaded machine may miss.
	waitFor(t, "the call's bytes reserved", func() bool {
		_, peak, _ := kit.InFlightBytes(srv.Server)
		return peak == inBytesMessage
	})
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode == http.StatusOK {
		t.Fatalf("stalled body served: %s", body)
	}
	waitFor(t, "the call's bytes given back", func() bool {
		inUse, _, _ := kit.InFlightBytes(srv.Server)
		return inUse == 0
	})
}

func TestMaxInFlightBytesValidate(t *testing.T) {
	t.Parallel()
	for _, v := range []int64{-1, 1<<40 + 1} {
		err := kit.Config{MaxInFlightBytes: v}.Validate()
		if err == nil || !strings.Contains(err.Error(), "KIT_MAX_INFLIGHT_BYTES") {
			t.Errorf("MaxInFlightBytes %d: %v, want an error naming KIT_MAX_INFLIGHT_BYTES", v, err)
		}
	}
	if err := (kit.Config{MaxInFlightBytes: 64 << 20}).Validate(); err != nil {
		t.Errorf("MaxInFlightBytes 64MiB: %v", err)
	}
}

// unsized hides a body's length, as grpc-go's client sends it: the
// server learns a message's size from its envelope's prefix.
type unsized struct{ io.Reader }

// TestMaxInFlightBytesEnveloped: a gRPC call of unstated length reserves
// the size its envelope announces before its message is read.
func TestMaxInFlightBytesEnveloped(t *testing.T) {
	t.Parallel()
	srv, svc := newBytesServer(t)
	close(svc.release)
	call := func(size int) *http.Response {
		t.Helper()
		return envelopedCall(t, srv, grpcPing, &pingv1.PingRequest{Text: strings.Repeat("x", size)})
	}
	status := func(res *http.Response) (string, string) {
		if s := res.Header.Get("Grpc-Status"); s != "" {
			return s, res.Header.Get("Grpc-Message")
		}
		return res.Trailer.Get("Grpc-Status"), res.Trailer.Get("Grpc-Message")
	}
	res := call(inBytesMessage)
	<-svc.entered
	if code, msg := status(res); code != "0" {
		t.Fatalf("grpc-status %s (%s), want 0", code, msg)
	}
	_, peak, _ := kit.InFlightBytes(srv.Server)
	if peak < inBytesMessage || peak > inBytesMessage+16 {
		t.Errorf("reserved %d bytes, want the envelope's (a little over %d)", peak, inBytesMessage)
	}
	code, msg := status(call(inBytesLimit))
	if code != "8" || !strings.Contains(msg, fmt.Sprintf("exceeds the %d-byte limit", inBytesLimit)) {
		t.Errorf("grpc-status %s (%s), want 8 naming the limit", code, msg)
	}
}

// envelopedCall sends msg to srv's procedure path as a gRPC call over
// HTTP/2 of unstated length, whose size only the envelope's prefix says,
// and returns the response, its body read.
func envelopedCall(t *testing.T, srv *kittest.Server, path string, msg proto.Message) *http.Response {
	t.Helper()
	raw, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	body := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(raw)))
	req, err := http.NewRequest(http.MethodPost, srv.URL+path, unsized{bytes.NewReader(append(body, raw...))})
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	res, err := srv.HTTP2Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

// TestMaxInFlightBytesOverMessageLimit: a call whose Content-Length says
// more than one message may be (KIT_MAX_REQUEST_BYTES) reserves no more
// than that message may hold: it is refused for its size, naming
// KIT_MAX_REQUEST_BYTES, at once, neither told to retry for a bound it
// could never fit (over KIT_MAX_INFLIGHT_BYTES) nor made to wait, behind
// the calls the bound holds, for bytes it will never read.
func TestMaxInFlightBytesOverMessageLimit(t *testing.T) {
	t.Parallel()
	const maxMessage = 64 << 10
	for _, name := range []string{"grpc", "grpcweb", "rest"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			svc := &heldPing{entered: make(chan struct{}, 16), release: make(chan struct{})}
			srv := kittest.NewServer(t, kit.Config{MaxInFlightBytes: inBytesLimit, MaxRequestBytes: maxMessage}, func(s *kit.Server) {
				s.Mount(pingv1connect.NewPingServiceHandler(svc, s.HandlerOptions()...))
			})
			kit.SetInFlightBytesWait(srv.Server, 200*time.Millisecond)
			call := pingCalls(srv)[name]
			ctx := context.Background()

			// Larger than the whole bound.
			_, err := call(ctx, inBytesLimit+(10<<10))
			checkTooLarge(t, name, err)

			// Two calls just under the message limit hold ~120KiB of the
			// 250KiB; a 200KiB call then did not fit and waited.
			var wg sync.WaitGroup
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := call(ctx, maxMessage-(4<<10)); err != nil {
						t.Errorf("held call: %v", err)
					}
				}()
			}
			<-svc.entered
			<-svc.entered
			_, err = call(ctx, 200<<10)
			checkTooLarge(t, name, err)
			close(svc.release)
			wg.Wait()
		})
	}
}

// checkTooLarge checks that err refuses a message over
// KIT_MAX_REQUEST_BYTES for its size, not for KIT_MAX_INFLIGHT_BYTES.
func checkTooLarge(t *testing.T, protocol string, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("call over KIT_MAX_REQUEST_BYTES served")
	}
	if strings.Contains(err.Error(), "KIT_MAX_INFLIGHT_BYTES") || strings.Contains(err.Error(), "Retry-After \"1\"") {
		t.Errorf("got %v, want the message's size refused, not the bound on bytes in flight", err)
	}
	if protocol != "rest" && connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("got %v, want ResourceExhausted", err)
	}
	var ce *connect.Error
	if protocol != "rest" && asConnectError(err, &ce) && ce.Meta().Get("Retry-After") != "" {
		t.Errorf("refusal %v tells the client to retry", err)
	}
}

// TestMaxInFlightBytesIgnoredBody: a REST call whose body kit does not
// read (a GET's, which no route of its method takes; a POST's to a route
// that takes none, served again without it) reserves nothing for it:
// with a body larger than the bound it is served as without the bound.
func TestMaxInFlightBytesIgnoredBody(t *testing.T) {
	t.Parallel()
	srv, svc := newBytesServer(t)
	close(svc.release)
	body := `{"text":"` + strings.Repeat("x", inBytesLimit+(10<<10)) + `"}`
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/v1/ping/7", http.StatusOK},
		{http.MethodPost, "/v1/fail/3", http.StatusNotImplemented}, // heldPing has no Fail
	} {
		req, err := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := srv.HTTP1Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.status || strings.Contains(string(out), "KIT_MAX_INFLIGHT_BYTES") {
			t.Errorf("%s %s with a body it ignores: HTTP %d %s, want %d", c.method, c.path, res.StatusCode, out, c.status)
		}
	}
}
