package interceptors_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/internal/msgctx"
	"github.com/connectkit/connectkit/internal/requestid"
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestRequestIDRoundTrip(t *testing.T) {
	t.Parallel()
	for _, proto := range protocols {
		for _, tc := range []struct {
			name, sent string
			keep       bool // the server answers with the id sent
		}{
			{name: "valid", sent: "req-42_ab.c:d/e+f=g@h", keep: true},
			{name: "absent"},
			{name: "bad charset", sent: "has space"},
			{name: "too long", sent: strings.Repeat("a", 129)},
			{name: "longest", sent: strings.Repeat("a", 128), keep: true},
		} {
			for _, fail := range []bool{false, true} {
				name := proto.name + "/" + tc.name
				if fail {
					name += "/error"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					s := newTestServer(t, serverConfig{})
					// A client without the chain, so that what it sends is
					// exactly what the server gets.
					client := pingv1connect.NewPingServiceClient(httpClient(t, false), s.URL, proto.opts...)
					var resp connect.AnyResponse
					var err error
					if fail {
						req := connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeAborted)})
						setID(req.Header(), tc.sent)
						resp, err = client.Fail(t.Context(), req)
					} else {
						req := connect.NewRequest(&pingv1.PingRequest{})
						setID(req.Header(), tc.sent)
						resp, err = client.Ping(t.Context(), req)
					}
					if (err != nil) != fail {
						t.Fatalf("err = %v", err)
					}
					got := responseRequestID(t, resp, err)
					switch {
					case tc.keep && got != tc.sent:
						t.Errorf("server answered %q, want the id sent, %q", got, tc.sent)
					case !tc.keep && !uuidV4.MatchString(got):
						t.Errorf("server answered %q, want a new UUID", got)
					}
					line := s.server.logs.waitLine(t, map[string]any{"msg": "rpc"})
					if line["request_id"] != got {
						t.Errorf("logged request_id %v, answered %s", line["request_id"], got)
					}
				})
			}
		}
	}
}

func TestRequestIDStreams(t *testing.T) {
	t.Parallel()
	eachStream(t, func(t *testing.T, proto protocol, tc streamCase) {
		s := newTestServer(t, serverConfig{})
		client := pingv1connect.NewPingServiceClient(httpClient(t, false), s.URL, proto.opts...)
		res := runStream(t, client, tc.procedure, tc.numbers) // fails without an id
		if !uuidV4.MatchString(res.requestID) {
			t.Errorf("request id %q, want a UUID", res.requestID)
		}
	})
}

// TestRequestIDClient checks what a client sends: the id on the request,
// or else the one in the context, or else a new one.
func TestRequestIDClient(t *testing.T) {
	t.Parallel()
	received := make(chan string, 1)
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(&pingService{}, connect.WithInterceptors(
		connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				received <- req.Header().Get(interceptors.RequestIDHeader)
				return next(ctx, req)
			}
		}))))
	client := pingv1connect.NewPingServiceClient(httpClient(t, false), serve(t, mux),
		connect.WithInterceptors(interceptors.RequestID()))

	req := connect.NewRequest(&pingv1.PingRequest{})
	if _, err := client.Ping(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	generated := <-received
	if !uuidV4.MatchString(generated) {
		t.Errorf("sent %q, want a new UUID", generated)
	}
	req = connect.NewRequest(&pingv1.PingRequest{})
	req.Header().Set(interceptors.RequestIDHeader, "set-by-caller")
	if _, err := client.Ping(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if got := <-received; got != "set-by-caller" {
		t.Errorf("sent %q, want the id set on the request", got)
	}
}

// TestRequestIDUnique serves many calls and checks that no two generated ids
// are the same.
func TestRequestIDUnique(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(&pingService{}, connect.WithInterceptors(interceptors.RequestID())))
	seen := make(map[string]bool)
	for range 2000 {
		req := httptest.NewRequest(http.MethodPost, pingv1connect.PingServicePingProcedure, strings.NewReader(""))
		req.Header.Set("Content-Type", "application/proto")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		id := rec.Header().Get(interceptors.RequestIDHeader)
		if !uuidV4.MatchString(id) || seen[id] {
			t.Fatalf("id %q: malformed or seen before", id)
		}
		seen[id] = true
	}
}

func TestRequestIDFromOutsideACall(t *testing.T) {
	t.Parallel()
	if id := interceptors.RequestIDFrom(t.Context()); id != "" {
		t.Errorf("RequestIDFrom = %q, want empty", id)
	}
}

func setID(h http.Header, id string) {
	if id != "" {
		h.Set(interceptors.RequestIDHeader, id)
	}
}

// TestRequestIDClientStreams checks that a client stream sends the id set on
// its request headers (for a server stream, on the request), as a unary call
// does, and that the client's line logs the id it sent.
func TestRequestIDClientStreams(t *testing.T) {
	t.Parallel()
	for _, proto := range protocols {
		for _, procedure := range []string{
			pingv1connect.PingServiceSumProcedure,
			pingv1connect.PingServiceCountUpProcedure,
			pingv1connect.PingServiceCumSumProcedure,
		} {
			for _, set := range []string{"set-by-caller", ""} {
				name := proto.name + procedure[strings.LastIndex(procedure, "/"):]
				if set == "" {
					name += "/unset"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					s := newTestServer(t, serverConfig{})
					got := streamWithRequestID(t, s.pingClient(t, proto.opts...), procedure, set)
					if set != "" && got != set {
						t.Errorf("server answered %q, want the id set by the caller, %q", got, set)
					}
					if set == "" && !uuidV4.MatchString(got) {
						t.Errorf("server answered %q, want a new UUID", got)
					}
					want := map[string]any{"msg": "rpc", "procedure": procedure}
					for side, logs := range map[string]*logBuffer{"server": s.server.logs, "client": s.client.logs} {
						if line := logs.waitLine(t, want); line["request_id"] != got {
							t.Errorf("%s logged request_id %v, server answered %q", side, line["request_id"], got)
						}
					}
				})
			}
		}
	}
}

// streamWithRequestID runs a stream of procedure with id, if not empty, set
// on its request headers, and returns the id in the response headers.
func streamWithRequestID(t *testing.T, client pingv1connect.PingServiceClient, procedure, id string) string {
	t.Helper()
	var header http.Header
	var err error
	switch procedure {
	case pingv1connect.PingServiceSumProcedure:
		stream := client.Sum(t.Context())
		setID(stream.RequestHeader(), id)
		if err = stream.Send(&pingv1.SumRequest{Number: 1}); err == nil {
			var resp *connect.Response[pingv1.SumResponse]
			if resp, err = stream.CloseAndReceive(); err == nil {
				header = resp.Header()
			}
		}
	case pingv1connect.PingServiceCountUpProcedure:
		req := connect.NewRequest(&pingv1.CountUpRequest{Number: 1})
		setID(req.Header(), id)
		var stream *connect.ServerStreamForClient[pingv1.CountUpResponse]
		if stream, err = client.CountUp(t.Context(), req); err == nil {
			for stream.Receive() {
			}
			err, header = stream.Err(), stream.ResponseHeader()
			_ = stream.Close()
		}
	case pingv1connect.PingServiceCumSumProcedure:
		stream := client.CumSum(t.Context())
		setID(stream.RequestHeader(), id)
		if err = stream.Send(&pingv1.CumSumRequest{Number: 1}); err == nil {
			_, err = stream.Receive()
		}
		_ = stream.CloseRequest()
		header = stream.ResponseHeader()
		_ = stream.CloseResponse()
	}
	if err != nil {
		t.Fatalf("%s: %v", procedure, err)
	}
	return header.Get(interceptors.RequestIDHeader)
}

// A delivery's request id is its X-Request-Id, else its message's id (a
// message from a producer that sets none: its attempts log one id), or one
// made from it when it is no request id (natsjs's ids of a long topic's
// messages), else a new one.
func TestDeliveryRequestID(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("orders.", 20) + ":42:1765000000000000000" // over 128 bytes
	for _, tc := range []struct {
		name, header, messageID, want string
	}{
		{name: "the message's X-Request-Id", header: "from-the-publisher", messageID: "ORDERS:42", want: "from-the-publisher"},
		{name: "none: the message id", messageID: "ORDERS:42", want: "ORDERS:42"},
		{name: "an invalid one: the message id", header: "not valid", messageID: "ORDERS:42", want: "ORDERS:42"},
		{name: "a message id that is no request id: one made from it", header: "not valid", messageID: long, want: requestid.Of(long)},
		{name: "no message id: a new one", header: "not valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			info := &msgctx.Info{Operation: msgctx.Process, Topic: "orders.created", Subscription: "billing", MessageID: tc.messageID, Attempt: 1}
			var got []string
			handle := interceptors.RequestID().WrapUnary(func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
				got = append(got, interceptors.RequestIDFrom(ctx))
				return nil, errors.New("retry")
			})
			for range 2 { // two attempts
				req := connect.NewRequest(&pingv1.PingRequest{}) // no procedure: the delivery's own request
				if tc.header != "" {
					req.Header().Set(interceptors.RequestIDHeader, tc.header)
				}
				_, _ = handle(msgctx.NewContext(t.Context(), info), req)
			}
			if got[0] != got[1] && tc.want != "" {
				t.Errorf("the attempts had request ids %q", got)
			}
			if tc.want != "" && got[0] != tc.want {
				t.Errorf("request id %q; want %q", got[0], tc.want)
			}
			if tc.want == "" && (!uuidV4.MatchString(got[0]) || got[0] == got[1]) {
				t.Errorf("request ids %q; want a new UUID each", got)
			}
		})
	}
}

// TestPublishRequestID checks the request id of a pubsub publish and the
// X-Request-Id it sends with the message: the id set on the request, else
// the one of the call being served, else its message's id (or one made
// from it), which it does not send (a delivery without one takes the
// same), else a new one.
func TestPublishRequestID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, onRequest, served, messageID string
		want                               string // "" for a new UUID
		sent                               bool   // the message carries the id in X-Request-Id
	}{
		{name: "outside a call: the message id, not sent", messageID: "msg-3", want: "msg-3"},
		{name: "an invalid one on the request: the message id, not sent", onRequest: "has space", messageID: "msg-3", want: "msg-3"},
		{name: "set on the request", onRequest: "from-the-caller", messageID: "msg-3", want: "from-the-caller", sent: true},
		{name: "under a call: the call's", served: "served-call", messageID: "msg-3", want: "served-call", sent: true},
		{name: "an invalid message id: one made from it, not sent", messageID: "not valid", want: requestid.Of("not valid")},
		{name: "no message id: a new one", sent: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const publish = "/" + topic + "/publish"
			var inChain string
			capture := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
				return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
					inChain = interceptors.RequestIDFrom(ctx)
					return next(ctx, req)
				}
			})
			sent := make(chan http.Header, 1)
			client := connect.NewClient[pingv1.PingRequest, pingv1.PingResponse](headerRecorder(sent), "http://broker"+publish,
				connect.WithInterceptors(interceptors.RequestID(), capture))
			info := &msgctx.Info{Operation: msgctx.Publish, System: "mem", Topic: topic, MessageID: tc.messageID, MessageType: topic}
			call := func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
				req := connect.NewRequest(&pingv1.PingRequest{})
				setID(req.Header(), tc.onRequest)
				return client.CallUnary(msgctx.NewContext(ctx, info), req)
			}
			if tc.served != "" { // publish from a handler, as a served call does
				served := connect.NewRequest(&pingv1.PingRequest{})
				served.Header().Set(interceptors.RequestIDHeader, tc.served)
				_, _ = interceptors.RequestID().WrapUnary(call)(t.Context(), served)
			} else {
				_, _ = call(t.Context(), nil)
			}
			header := <-sent
			want := tc.want
			if want == "" {
				if !uuidV4.MatchString(inChain) {
					t.Fatalf("request id %q, want a new UUID", inChain)
				}
				want = inChain
			}
			if inChain != want {
				t.Errorf("request id %q, want %q", inChain, want)
			}
			got, ok := header[interceptors.RequestIDHeader]
			switch {
			case tc.sent && (len(got) != 1 || got[0] != want):
				t.Errorf("sent X-Request-Id %q, want %q", got, want)
			case !tc.sent && ok:
				t.Errorf("sent X-Request-Id %q, want none", got)
			}
		})
	}
}

// headerRecorder is an HTTP client that sends the headers of each request
// it is given to sent, and fails it.
type headerRecorder chan<- http.Header

func (r headerRecorder) Do(req *http.Request) (*http.Response, error) {
	r <- req.Header.Clone()
	return nil, errors.New("recorded")
}
