package kit_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/kit"
)

// A client stream whose client keeps it open must not hold its handler past
// the stream's deadline: the handler's Receive, which waits on the request
// body and not on its context, fails with DeadlineExceeded and the call ends.
func TestStreamTimeoutEndsAClientStreamThatStaysOpen(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	srv := newPingServer(t, kit.Config{StreamTimeout: timeout}, nil)
	for _, p := range srv.Protocols() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			// The client sets no deadline: only the server's can end the call.
			stream := newPingClient(srv, p.Client, p.Options...).Sum(t.Context())
			start := time.Now()
			for time.Since(start) < 10*timeout {
				if err := stream.Send(&pingv1.SumRequest{Number: 1}); err != nil {
					break // the server ended the call; CloseAndReceive says how
				}
				time.Sleep(timeout / 10)
			}
			_, err := stream.CloseAndReceive()
			// Over HTTP/1.1 the server answers and closes the connection
			// while the client may still be writing its body: the client's
			// transport can report that write's failure before the answer,
			// or close the connection under the answer's body (gRPC-Web's
			// answer, trailers-only, has its status in its headers and an
			// empty body, which the client then fails to read to its end).
			// Either way the server ended a call the client never closed.
			cut := p.Client == srv.HTTP1Client() && err != nil &&
				(strings.Contains(err.Error(), "broken pipe") || strings.Contains(err.Error(), "connection reset") ||
					strings.Contains(err.Error(), "use of closed network connection"))
			if connect.CodeOf(err) != connect.CodeDeadlineExceeded && !cut {
				t.Fatalf("after %v: err = %v, want deadline_exceeded after %v", time.Since(start).Round(time.Millisecond), err, timeout)
			}
			// The connection, or the client's next one, still serves.
			if _, err := newPingClient(srv, p.Client, p.Options...).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
				t.Fatalf("next call: %v", err)
			}
		})
	}
}

func TestStreamTimeoutEndsABidiStreamThatStaysOpen(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	srv := newPingServer(t, kit.Config{StreamTimeout: timeout}, nil)
	for _, p := range srv.Protocols() {
		if p.Client != srv.HTTP2Client() {
			continue // bidi streams need HTTP/2
		}
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			stream := newPingClient(srv, p.Client, p.Options...).CumSum(t.Context())
			if err := stream.Send(&pingv1.CumSumRequest{Number: 1}); err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Receive(); err != nil {
				t.Fatal(err)
			}
			// Then nothing more: the handler waits in Receive.
			start := time.Now()
			_, err := stream.Receive()
			if connect.CodeOf(err) != connect.CodeDeadlineExceeded || time.Since(start) > 10*timeout {
				t.Fatalf("after %v: err = %v, want deadline_exceeded after %v", time.Since(start).Round(time.Millisecond), err, timeout)
			}
		})
	}
}

// A client stream over HTTP/1.1 cut by its deadline leaves the rest of its
// body unread: it must never be served as the connection's next request.
func TestStreamCutByItsDeadlineClosesHTTP1Connection(t *testing.T) {
	t.Parallel()
	srv := newPingServer(t, kit.Config{StreamTimeout: 300 * time.Millisecond}, nil)
	conn := srv.Dial(t)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	envelope := "\x00\x00\x00\x00\x02\x08\x01" // one SumRequest{Number: 1}
	fmt.Fprintf(conn, "POST /connectkit.ping.v1.PingService/Sum HTTP/1.1\r\nHost: x\r\nContent-Type: application/connect+proto\r\nContent-Length: %d\r\n\r\n%s",
		len(envelope)+len(smuggled), envelope)
	br := bufio.NewReader(conn)
	res, got := readRawResponse(t, conn, br)
	if !strings.Contains(string(got), "deadline_exceeded") {
		t.Errorf("%d %q, want the stream to end with deadline_exceeded", res.StatusCode, got)
	}
	_, _ = io.WriteString(conn, smuggled) // the rest of the body, late
	if res2, err := http.ReadResponse(br, nil); err == nil {
		t.Errorf("the rest of the body was served as a request: %d", res2.StatusCode)
	}
}
