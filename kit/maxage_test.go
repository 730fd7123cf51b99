package kit_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// peerPing answers Ping with the caller's address, which tells the calls
// of one connection from those of another.
type peerPing struct{ pingServer }

func (p *peerPing) Ping(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	return connect.NewResponse(&pingv1.PingResponse{Text: req.Peer().Addr}), nil
}

func newPeerServer(t *testing.T, cfg kit.Config) *kittest.Server {
	return kittest.NewServer(t, cfg, func(srv *kit.Server) {
		srv.Mount(pingv1connect.NewPingServiceHandler(&peerPing{}, srv.HandlerOptions()...))
	})
}

// peerCaller is one way to call Ping that reports the caller's address as
// the server saw it, with a client of its own. Its HTTP/1.1 clients open a
// connection per call in flight, so they are called one call at a time
// (parallel is 1).
type peerCaller struct {
	name     string
	parallel int
	ping     func(ctx context.Context) (string, error)
}

func peerCallers(t *testing.T, srv *kittest.Server) []peerCaller {
	var callers []peerCaller
	for _, p := range srv.Protocols() {
		transport, parallel := &http.Transport{Protocols: new(http.Protocols)}, 4
		if strings.HasSuffix(p.Name, "http1") {
			transport.Protocols.SetHTTP1(true)
			parallel = 1
		} else {
			transport.Protocols.SetUnencryptedHTTP2(true)
		}
		t.Cleanup(transport.CloseIdleConnections)
		client := newPingClient(srv, &http.Client{Transport: transport}, p.Options...)
		callers = append(callers, peerCaller{p.Name, parallel, func(ctx context.Context) (string, error) {
			res, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{}))
			if err != nil {
				return "", err
			}
			return res.Msg.GetText(), nil
		}})
	}
	conn := grpcConn(t, srv.Addr().String())
	callers = append(callers, peerCaller{"grpc-go", 4, func(ctx context.Context) (string, error) {
		var res pingv1.PingResponse
		err := conn.Invoke(ctx, pingv1connect.PingServicePingProcedure, &pingv1.PingRequest{}, &res)
		return res.GetText(), err
	}})
	return callers
}

// TestMaxConnectionAgeMovesCallsToNewConnections calls, from four
// goroutines at once over HTTP/2 (one over HTTP/1.1) in every protocol
// (and from grpc-go), until the calls
// have come over three connections: with MaxConnectionAge, clients that
// keep their connections move to new ones, and no call fails on the way
// (HTTP/2 clients get a graceful GOAWAY, HTTP/1.1 ones "Connection: close").
func TestMaxConnectionAgeMovesCallsToNewConnections(t *testing.T) {
	t.Parallel()
	srv := newPeerServer(t, kit.Config{MaxConnectionAge: 100 * time.Millisecond})
	for _, c := range peerCallers(t, srv) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu    sync.Mutex
				peers = map[string]bool{}
				wg    sync.WaitGroup
			)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			for range c.parallel {
				wg.Go(func() {
					for ctx.Err() == nil {
						peer, err := c.ping(ctx)
						if err != nil {
							if ctx.Err() == nil {
								t.Errorf("Ping: %v", err)
								cancel()
							}
							return
						}
						mu.Lock()
						if peers[peer] = true; len(peers) >= 3 {
							cancel()
						}
						mu.Unlock()
						time.Sleep(5 * time.Millisecond)
					}
				})
			}
			wg.Wait()
			if len(peers) < 3 {
				t.Errorf("calls came over %d connections in 20s: %v; want 3", len(peers), peers)
			}
		})
	}
}

// TestNoMaxConnectionAgeKeepsConnections: without MaxConnectionAge, calls a
// second apart keep their connection.
func TestNoMaxConnectionAgeKeepsConnections(t *testing.T) {
	t.Parallel()
	srv := newPeerServer(t, kit.Config{})
	for _, c := range peerCallers(t, srv) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			peers := map[string]bool{}
			for i := range 4 {
				if i > 0 {
					time.Sleep(100 * time.Millisecond)
				}
				peer, err := c.ping(t.Context())
				if err != nil {
					t.Fatalf("Ping: %v", err)
				}
				peers[peer] = true
			}
			if len(peers) != 1 {
				t.Errorf("calls came over %d connections: %v; want 1", len(peers), peers)
			}
		})
	}
}

// TestMaxConnectionAgeLetsStreamsFinish: a bidi stream open on a
// connection that retires (a unary call past its age gets the GOAWAY) keeps
// working to its end, and the client's next call goes to a new connection.
func TestMaxConnectionAgeLetsStreamsFinish(t *testing.T) {
	t.Parallel()
	srv := newPeerServer(t, kit.Config{MaxConnectionAge: 200 * time.Millisecond})
	transport := &http.Transport{Protocols: new(http.Protocols)}
	transport.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(transport.CloseIdleConnections)
	client := newPingClient(srv, &http.Client{Transport: transport}, connect.WithGRPC())
	ping := func() string {
		t.Helper()
		res, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
		if err != nil {
			t.Fatalf("Ping: %v", err)
		}
		return res.Msg.GetText()
	}
	first := ping()
	bidi := client.CumSum(t.Context())
	exchange := func(n, want int64) {
		t.Helper()
		if err := bidi.Send(&pingv1.CumSumRequest{Number: n}); err != nil {
			t.Fatalf("CumSum.Send: %v", err)
		}
		if msg, err := bidi.Receive(); err != nil || msg.GetSum() != want {
			t.Fatalf("CumSum.Receive = %v, %v; want %d", msg, err, want)
		}
	}
	exchange(1, 1)
	time.Sleep(250 * time.Millisecond) // past the connection's age, 220ms at most
	if got := ping(); got != first {
		t.Fatalf("the call that retires the connection came over %s; want %s, its connection", got, first)
	}
	var next string
	for range 50 {
		if next = ping(); next != first {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if next == first {
		t.Errorf("50 calls after the connection retired still came over it")
	}
	exchange(2, 3) // the old connection still carries the stream
	if err := bidi.CloseRequest(); err != nil {
		t.Fatalf("CumSum.CloseRequest: %v", err)
	}
	if _, err := bidi.Receive(); err == nil {
		t.Error("CumSum.Receive after CloseRequest: got a message, want the end")
	}
	if err := bidi.CloseResponse(); err != nil {
		t.Errorf("CumSum.CloseResponse: %v", err)
	}
}
