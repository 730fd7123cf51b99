package kit_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// Rejected and served Connect calls, unary and streams, run at once on
// one h2c connection and on several HTTP/1.1 keep-alive connections: each
// rejected call is counted with its own code, each served one gets its own
// answer, whichever recording writer served the call before (a pooled one
// over h2c, the connection's over HTTP/1.1). Run with -race.
func TestAnswerWritersUnderConcurrentCalls(t *testing.T) {
	t.Parallel()
	runRejected(t, "calls", func(t *testing.T, srv *kittest.Server, client *http.Client, logs *syncBuffer, _ bool) {
		ping := newPingClient(srv, client, connect.WithProtoJSON())
		const workers, rounds = 8, 25
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range rounds {
					id := w*rounds + i
					// Rejected: a malformed timeout, whose message names it.
					req, _ := http.NewRequest(http.MethodPost, srv.URL+pingPath, strings.NewReader(`{}`))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Connect-Timeout-Ms", fmt.Sprintf("bad%d", id))
					res, err := client.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					body, _ := io.ReadAll(res.Body)
					res.Body.Close()
					if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), fmt.Sprintf(`\"bad%d\"`, id)) {
						t.Errorf("call %d: %d %s", id, res.StatusCode, body)
					}
					// Served: unary and a stream.
					got, err := ping.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: int64(id), Text: strings.Repeat("x", id)}))
					if err != nil || got.Msg.Number != int64(id) || len(got.Msg.Text) != id {
						t.Errorf("Ping %d: %v %v", id, got, err)
					}
					stream, err := ping.CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 3}))
					if err != nil {
						t.Error(err)
						return
					}
					n := 0
					for stream.Receive() {
						n++
					}
					if err := stream.Close(); err != nil || stream.Err() != nil || n != 3 {
						t.Errorf("CountUp %d: %d messages, %v %v", id, n, err, stream.Err())
					}
				}
			})
		}
		wg.Wait()
		labels := map[string]string{
			"grpc_service": "connectkit.ping.v1.PingService", "grpc_method": "Ping",
			"protocol": "connect", "grpc_code": "InvalidArgument",
		}
		if n := counterValue(t, srv.Registry(), "kit_rejected_calls_total", labels); n != workers*rounds {
			t.Errorf("kit_rejected_calls_total%v = %v, want %d", labels, n, workers*rounds)
		}
		for _, line := range logLines(t, logs, rejectedMsg) {
			if line["code"] != "invalid_argument" || !strings.Contains(fmt.Sprint(line["error"]), `"bad`) {
				t.Errorf("rejected line: %v", line)
			}
		}
	})
}

// Pipelined HTTP/1.1 requests, sent at once on one connection, rejected
// and served in turn, are each answered and observed as their own: the
// connection's recording writer is reset between them.
func TestAnswerWriterPipelinedHTTP1(t *testing.T) {
	t.Parallel()
	logs := new(syncBuffer)
	srv := newPingServer(t, kit.Config{}, nil, kit.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	conn := srv.Dial(t)
	reqs := []struct{ header, body string }{
		{"Connect-Timeout-Ms: bad1\r\n", `{}`},
		{"", `{"number":7}`},
		{"", `{bad`},
		{"Content-Encoding: weird\r\n", `{}`},
		{"", `{"number":8}`},
	}
	var all strings.Builder
	for _, r := range reqs {
		fmt.Fprintf(&all, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s",
			pingPath, r.header, len(r.body), r.body)
	}
	if _, err := io.WriteString(conn, all.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	wantStatus := []int{400, 200, 400, 501, 200}
	for i, want := range wantStatus {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("response %d: %d %s, want %d", i, res.StatusCode, body, want)
		}
	}
	for code, want := range map[string]float64{"InvalidArgument": 2, "Unimplemented": 1} {
		labels := map[string]string{"grpc_method": "Ping", "protocol": "connect", "grpc_code": code}
		if n := counterValue(t, srv.Registry(), "kit_rejected_calls_total", labels); n != want {
			t.Errorf("kit_rejected_calls_total%v = %v, want %v", labels, n, want)
		}
	}
}

// A write through a call's ResponseWriter after its handler returned (a
// handler that breaks net/http's rule, from a goroutine it left running)
// does not land in a later call's response, over HTTP/1.1 keep-alive or
// h2c: net/http's own writers panic (HTTP/2) or drop it (HTTP/1.1), and
// kit's recording writer, reused by the next call, must not forward it.
func TestLateWriteDoesNotReachAnotherCall(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{false, true} {
		name := "http1"
		if h2 {
			name = "h2c"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var (
				mu   sync.Mutex
				prev http.ResponseWriter
			)
			srv := kittest.NewServer(t, kit.Config{}, func(srv *kit.Server) {
				path, inner := pingv1connect.NewPingServiceHandler(&pingServer{}, srv.HandlerOptions()...)
				srv.Mount(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					mu.Lock()
					late := prev
					prev = w
					mu.Unlock()
					if late != nil {
						func() {
							defer func() { _ = recover() }() // net/http's HTTP/2 writer panics
							_, _ = late.Write([]byte("LATE"))
						}()
					}
					inner.ServeHTTP(w, r)
				}))
			})
			client := srv.HTTP1Client()
			if h2 {
				client = srv.HTTP2Client()
			}
			ping := newPingClient(srv, client, connect.WithProtoJSON())
			for i := range 20 {
				res, err := ping.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: int64(i)}))
				if err != nil || res.Msg.GetNumber() != int64(i) {
					t.Fatalf("Ping %d: %v %v", i, res, err)
				}
			}
		})
	}
}
