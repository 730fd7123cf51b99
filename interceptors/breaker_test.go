package interceptors_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/internal/msgctx"
	"github.com/prometheus/client_golang/prometheus"
)

// flakyService is a PingService whose Ping and CountUp fail with code while
// it is set (0: they succeed). Block makes Ping wait for its caller to give
// up.
type flakyService struct {
	pingv1connect.UnimplementedPingServiceHandler
	code  atomic.Int32
	block atomic.Bool
}

func (s *flakyService) fail() error {
	if c := s.code.Load(); c != 0 {
		return connect.NewError(connect.Code(c), errors.New("flaky says no"))
	}
	return nil
}

func (s *flakyService) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	if s.block.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if err := s.fail(); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber()}), nil
}

func (s *flakyService) CountUp(_ context.Context, req *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	if err := s.fail(); err != nil {
		return err
	}
	for i := int64(1); i <= req.Msg.GetNumber(); i++ {
		if err := stream.Send(&pingv1.CountUpResponse{Number: i}); err != nil {
			return err
		}
	}
	return nil
}

func (s *flakyService) Sum(_ context.Context, stream *connect.ClientStream[pingv1.SumRequest]) (*connect.Response[pingv1.SumResponse], error) {
	for stream.Receive() {
	}
	if err := s.fail(); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pingv1.SumResponse{}), stream.Err()
}

func (s *flakyService) CumSum(_ context.Context, stream *connect.BidiStream[pingv1.CumSumRequest, pingv1.CumSumResponse]) error {
	if err := s.fail(); err != nil {
		return err
	}
	for {
		if _, err := stream.Receive(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := stream.Send(&pingv1.CumSumResponse{}); err != nil {
			return err
		}
	}
}

// breakerCase is a flaky server and a client whose chain holds a
// CircuitBreaker inside Logging and Metrics, as kit places it.
type breakerCase struct {
	svc    *flakyService
	hits   atomic.Int64 // requests that reached the server
	url    string
	logs   *logBuffer
	reg    *prometheus.Registry
	client pingv1connect.PingServiceClient
}

func newBreakerCase(t *testing.T, proto protocol, opts ...interceptors.BreakerOption) *breakerCase {
	t.Helper()
	bc := &breakerCase{svc: &flakyService{}, logs: &logBuffer{}, reg: prometheus.NewRegistry()}
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(bc.svc))
	bc.url = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bc.hits.Add(1)
		mux.ServeHTTP(w, r)
	}))
	logger := slog.New(slog.NewJSONHandler(bc.logs, nil))
	chain, err := interceptors.Default(logger, bc.reg, interceptors.WithoutTracing())
	if err != nil {
		t.Fatal(err)
	}
	breaker, err := interceptors.CircuitBreaker(logger, bc.reg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	clientOpts := append([]connect.ClientOption{connect.WithInterceptors(append(chain.Client(), breaker)...)}, proto.opts...)
	bc.client = pingv1connect.NewPingServiceClient(httpClient(t, false), bc.url, clientOpts...)
	return bc
}

// eachProtocol runs fn in a parallel subtest for each protocol, with a
// breakerCase of its own.
func eachProtocol(t *testing.T, fn func(t *testing.T, bc *breakerCase), opts ...interceptors.BreakerOption) {
	t.Helper()
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			t.Parallel()
			fn(t, newBreakerCase(t, proto, opts...))
		})
	}
}

func (bc *breakerCase) ping(ctx context.Context) error {
	_, err := bc.client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: 1}))
	return err
}

func (bc *breakerCase) peer(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(bc.url)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// TestCircuitBreakerTrips: a server failing with Unavailable trips the
// breaker after DefaultBreakerConsecutiveFailures calls; further calls fail
// at once with Unavailable, naming the procedure, without reaching the
// server, and are logged and counted once by the chain; the state change is
// logged at warn and the gauge and refusal counter tell it.
func TestCircuitBreakerTrips(t *testing.T) {
	t.Parallel()
	eachProtocol(t, func(t *testing.T, bc *breakerCase) {
		bc.svc.code.Store(int32(connect.CodeUnavailable))
		for i := range interceptors.DefaultBreakerConsecutiveFailures {
			err := bc.ping(t.Context())
			if connect.CodeOf(err) != connect.CodeUnavailable || errors.Is(err, interceptors.ErrBreakerOpen) {
				t.Fatalf("call %d: %v, want the server's Unavailable", i+1, err)
			}
		}
		if got := bc.hits.Load(); got != interceptors.DefaultBreakerConsecutiveFailures {
			t.Fatalf("server hit %d times, want %d", got, interceptors.DefaultBreakerConsecutiveFailures)
		}
		bc.svc.code.Store(0) // healthy again: the breaker does not know
		const refused = 3
		for range refused {
			err := bc.ping(t.Context())
			if connect.CodeOf(err) != connect.CodeUnavailable || !errors.Is(err, interceptors.ErrBreakerOpen) {
				t.Fatalf("call on an open breaker: %v, want Unavailable with ErrBreakerOpen", err)
			}
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Message() != "not sent: the circuit breaker of "+pingv1connect.PingServicePingProcedure+" at "+bc.peer(t)+" is open" {
				t.Errorf("message %q", ce.Message())
			}
		}
		if got := bc.hits.Load(); got != interceptors.DefaultBreakerConsecutiveFailures {
			t.Errorf("server hit %d times, want %d: refused calls reached it", got, interceptors.DefaultBreakerConsecutiveFailures)
		}
		labels := map[string]string{"peer": bc.peer(t), "procedure": pingv1connect.PingServicePingProcedure}
		if got := metricValue(t, bc.reg, "rpc_client_circuit_breaker_state", labels); got != 2 {
			t.Errorf("state gauge %v, want 2 (open)", got)
		}
		if got := metricValue(t, bc.reg, "rpc_client_circuit_breaker_refused_total", labels); got != refused {
			t.Errorf("refused counter %v, want %d", got, refused)
		}
		// The chain saw every call once: the refused ones as Unavailable.
		if got := metricValue(t, bc.reg, "grpc_client_handled_total", map[string]string{
			"grpc_method": "Ping", "grpc_code": "Unavailable",
		}); got != interceptors.DefaultBreakerConsecutiveFailures+refused {
			t.Errorf("grpc_client_handled_total{Unavailable} = %v, want %d", got, interceptors.DefaultBreakerConsecutiveFailures+refused)
		}
		if got := len(bc.logs.matching(t, map[string]any{"msg": "rpc", "kind": "client", "code": "unavailable"})); got != interceptors.DefaultBreakerConsecutiveFailures+refused {
			t.Errorf("%d client log lines with code unavailable, want %d:\n%s", got, interceptors.DefaultBreakerConsecutiveFailures+refused, bc.logs.dump())
		}
		bc.logs.waitLine(t, map[string]any{
			"msg": "circuit breaker state changed", "level": "WARN", "peer": bc.peer(t),
			"procedure": pingv1connect.PingServicePingProcedure, "from": "closed", "to": "open",
		})
		// Another procedure has its own breaker.
		stream, err := bc.client.CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 2}))
		if err != nil {
			t.Fatal(err)
		}
		for stream.Receive() {
		}
		if err := stream.Err(); err != nil {
			t.Errorf("CountUp: %v", err)
		}
		_ = stream.Close()
	}, interceptors.WithBreakerOpenTimeout(time.Hour))
}

// TestCircuitBreakerHalfOpen: after the open timeout, one probe goes
// through; a failed probe opens the breaker again, a successful one closes
// it, and each change is logged.
func TestCircuitBreakerHalfOpen(t *testing.T) {
	t.Parallel()
	eachProtocol(t, func(t *testing.T, bc *breakerCase) {
		bc.svc.code.Store(int32(connect.CodeInternal))
		for range interceptors.DefaultBreakerConsecutiveFailures {
			if err := bc.ping(t.Context()); errors.Is(err, interceptors.ErrBreakerOpen) {
				t.Fatalf("refused before the threshold: %v", err)
			}
		}
		// Calls are refused until the timeout has passed; then the
		// first one is a probe, which fails and opens the breaker.
		hits := bc.hits.Load()
		waitFor(t, func() bool {
			err := bc.ping(t.Context())
			return !errors.Is(err, interceptors.ErrBreakerOpen)
		}, func() string { return "a probe" })
		if got := bc.hits.Load(); got != hits+1 {
			t.Fatalf("server hit %d more times, want 1 probe", got-hits)
		}
		bc.logs.waitLine(t, map[string]any{"msg": "circuit breaker state changed", "from": "half-open", "to": "open"})

		bc.svc.code.Store(0)
		hits = bc.hits.Load()
		waitFor(t, func() bool { return bc.ping(t.Context()) == nil }, func() string { return "a successful probe" })
		if got := bc.hits.Load(); got != hits+1 {
			t.Fatalf("server hit %d more times, want 1 probe", got-hits)
		}
		bc.logs.waitLine(t, map[string]any{"msg": "circuit breaker state changed", "from": "half-open", "to": "closed"})
		labels := map[string]string{"peer": bc.peer(t), "procedure": pingv1connect.PingServicePingProcedure}
		if got := metricValue(t, bc.reg, "rpc_client_circuit_breaker_state", labels); got != 0 {
			t.Errorf("state gauge %v, want 0 (closed)", got)
		}
		for range 3 {
			if err := bc.ping(t.Context()); err != nil {
				t.Errorf("call on a closed breaker: %v", err)
			}
		}
	}, interceptors.WithBreakerOpenTimeout(20*time.Millisecond))
}

// TestCircuitBreakerCanceledProbe: a probe that its caller cancels tells
// nothing of the server: the breaker stays half-open, and the next call is
// the probe that decides.
func TestCircuitBreakerCanceledProbe(t *testing.T) {
	t.Parallel()
	bc := newBreakerCase(t, protocols[0], interceptors.WithBreakerOpenTimeout(20*time.Millisecond))
	bc.svc.code.Store(int32(connect.CodeUnavailable))
	for range interceptors.DefaultBreakerConsecutiveFailures {
		_ = bc.ping(t.Context())
	}
	bc.svc.code.Store(0)
	bc.svc.block.Store(true)
	// Calls are refused until the timeout has passed; the first that is not
	// is the probe, which reaches the server and is canceled there.
	waitFor(t, func() bool {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		hits := bc.hits.Load()
		go func() {
			for bc.hits.Load() == hits && ctx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			cancel()
		}()
		err := bc.ping(ctx)
		return !errors.Is(err, interceptors.ErrBreakerOpen)
	}, func() string { return "a probe" })
	bc.svc.block.Store(false)
	bc.svc.code.Store(int32(connect.CodeUnavailable))
	if err := bc.ping(t.Context()); errors.Is(err, interceptors.ErrBreakerOpen) {
		t.Fatalf("the call after a canceled probe was refused: %v", err)
	}
	// The breaker logs before the call returns.
	if lines := bc.logs.matching(t, map[string]any{"msg": "circuit breaker state changed", "to": "closed"}); len(lines) > 0 {
		t.Fatalf("the canceled probe closed the breaker: %v", lines)
	}
	bc.logs.waitLine(t, map[string]any{"msg": "circuit breaker state changed", "from": "half-open", "to": "open"})
}

// TestCircuitBreakerClientErrors: the caller's errors (InvalidArgument,
// NotFound, PermissionDenied, ResourceExhausted, Unimplemented) and its
// cancellations never trip the breaker; they also do not hide the server's
// failures, which trip it as soon as there are enough of them in a row.
func TestCircuitBreakerClientErrors(t *testing.T) {
	t.Parallel()
	eachProtocol(t, func(t *testing.T, bc *breakerCase) {
		const calls = 2 * interceptors.DefaultBreakerMinCalls
		for _, code := range []connect.Code{
			connect.CodeInvalidArgument, connect.CodeNotFound, connect.CodePermissionDenied,
			connect.CodeResourceExhausted, connect.CodeUnimplemented, connect.CodeFailedPrecondition,
		} {
			bc.svc.code.Store(int32(code))
			for range calls {
				if err := bc.ping(t.Context()); connect.CodeOf(err) != code {
					t.Fatalf("%v, want %v from the server", err, code)
				}
			}
		}
		bc.svc.code.Store(0)
		bc.svc.block.Store(true)
		for range calls {
			ctx, cancel := context.WithCancel(t.Context())
			hits := bc.hits.Load()
			go func() {
				for bc.hits.Load() == hits {
					time.Sleep(time.Millisecond)
				}
				cancel()
			}()
			if err := bc.ping(ctx); connect.CodeOf(err) != connect.CodeCanceled {
				t.Fatalf("%v, want Canceled", err)
			}
			cancel()
		}
		bc.svc.block.Store(false)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		for range calls {
			if err := bc.ping(ctx); connect.CodeOf(err) != connect.CodeCanceled {
				t.Fatalf("%v, want Canceled", err)
			}
		}
		labels := map[string]string{"peer": bc.peer(t), "procedure": pingv1connect.PingServicePingProcedure}
		if got := metricValue(t, bc.reg, "rpc_client_circuit_breaker_state", labels); got != 0 {
			t.Fatalf("state gauge %v after the caller's errors, want 0 (closed)", got)
		}
		bc.svc.code.Store(int32(connect.CodeDeadlineExceeded))
		for range interceptors.DefaultBreakerConsecutiveFailures {
			if err := bc.ping(t.Context()); errors.Is(err, interceptors.ErrBreakerOpen) {
				t.Fatalf("refused before the threshold: %v", err)
			}
		}
		if err := bc.ping(t.Context()); !errors.Is(err, interceptors.ErrBreakerOpen) {
			t.Fatalf("%v, want a refusal after %d DeadlineExceeded in a row", err, interceptors.DefaultBreakerConsecutiveFailures)
		}
	}, interceptors.WithBreakerOpenTimeout(time.Hour))
}

// TestCircuitBreakerEmptyTripCodes: an empty list of trip codes, nil or
// not (a config's "codes: []", a filtered slice), keeps the default codes,
// as WithBreakerTripCodes says: the breaker still trips on Unavailable.
func TestCircuitBreakerEmptyTripCodes(t *testing.T) {
	t.Parallel()
	bc := newBreakerCase(t, protocols[0], interceptors.WithBreakerTripCodes([]connect.Code{}...), interceptors.WithBreakerOpenTimeout(time.Hour))
	bc.svc.code.Store(int32(connect.CodeUnavailable))
	for range interceptors.DefaultBreakerConsecutiveFailures {
		_ = bc.ping(t.Context())
	}
	if err := bc.ping(t.Context()); !errors.Is(err, interceptors.ErrBreakerOpen) {
		t.Fatalf("%v, want a refusal after %d Unavailable in a row", err, interceptors.DefaultBreakerConsecutiveFailures)
	}
}

// TestCircuitBreakerFailureRatio: failures that never come 5 in a row still
// trip the breaker once they are half of DefaultBreakerMinCalls calls.
func TestCircuitBreakerFailureRatio(t *testing.T) {
	t.Parallel()
	bc := newBreakerCase(t, protocols[0], interceptors.WithBreakerOpenTimeout(time.Hour), interceptors.WithBreakerWindow(time.Hour))
	for i := range interceptors.DefaultBreakerMinCalls - 1 {
		code := int32(0)
		if i%2 == 0 {
			code = int32(connect.CodeUnavailable)
		}
		bc.svc.code.Store(code)
		if err := bc.ping(t.Context()); errors.Is(err, interceptors.ErrBreakerOpen) {
			t.Fatalf("call %d refused: %v", i+1, err)
		}
	}
	// 10 failures in 19 calls: the 20th, a success, does not trip it (the
	// ratio is checked on failures); the next failure makes 11 of 21.
	bc.svc.code.Store(0)
	if err := bc.ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	bc.svc.code.Store(int32(connect.CodeUnavailable))
	if err := bc.ping(t.Context()); errors.Is(err, interceptors.ErrBreakerOpen) {
		t.Fatalf("refused before the 21st call ended: %v", err)
	}
	if err := bc.ping(t.Context()); !errors.Is(err, interceptors.ErrBreakerOpen) {
		t.Fatalf("%v, want a refusal with 11 failures in 21 calls", err)
	}
}

// TestCircuitBreakerStreams: a stream counts by its first Receive, and one
// opened on an open breaker fails at its first Send or Receive without
// reaching the server, for each kind of stream.
func TestCircuitBreakerStreams(t *testing.T) {
	t.Parallel()
	eachProtocol(t, func(t *testing.T, bc *breakerCase) {
		ctx := t.Context()
		for _, sc := range []struct {
			method string
			call   func() error
		}{
			{method: "CountUp", call: func() error {
				stream, err := bc.client.CountUp(ctx, connect.NewRequest(&pingv1.CountUpRequest{Number: 2}))
				if err != nil {
					return err
				}
				defer stream.Close()
				for stream.Receive() {
				}
				return stream.Err()
			}},
			{method: "Sum", call: func() error {
				// As connect asks: on a failed Send, CloseAndReceive
				// tells the error.
				stream := bc.client.Sum(ctx)
				_ = stream.Send(&pingv1.SumRequest{Number: 1})
				_, err := stream.CloseAndReceive()
				return err
			}},
			{method: "CumSum", call: func() error {
				stream := bc.client.CumSum(ctx)
				defer stream.CloseResponse()
				_ = stream.Send(&pingv1.CumSumRequest{Number: 1})
				_, err := stream.Receive()
				_ = stream.CloseRequest()
				return err
			}},
		} {
			bc.svc.code.Store(int32(connect.CodeUnavailable))
			for i := range interceptors.DefaultBreakerConsecutiveFailures {
				if err := sc.call(); connect.CodeOf(err) != connect.CodeUnavailable || errors.Is(err, interceptors.ErrBreakerOpen) {
					t.Fatalf("%s %d: %v, want the server's Unavailable", sc.method, i+1, err)
				}
			}
			hits := bc.hits.Load()
			bc.svc.code.Store(0)
			if err := sc.call(); connect.CodeOf(err) != connect.CodeUnavailable || !errors.Is(err, interceptors.ErrBreakerOpen) {
				t.Fatalf("%s on an open breaker: %v, want Unavailable with ErrBreakerOpen", sc.method, err)
			}
			if got := bc.hits.Load(); got != hits {
				t.Errorf("a refused %s reached the server", sc.method)
			}
			if got := metricValue(t, bc.reg, "grpc_client_handled_total", map[string]string{
				"grpc_method": sc.method, "grpc_code": "Unavailable",
			}); got != interceptors.DefaultBreakerConsecutiveFailures+1 {
				t.Errorf("grpc_client_handled_total{%s, Unavailable} = %v, want %d", sc.method, got, interceptors.DefaultBreakerConsecutiveFailures+1)
			}
		}
		// Ping has a breaker of its own, still closed.
		if err := bc.ping(t.Context()); err != nil {
			t.Errorf("Ping: %v", err)
		}
	}, interceptors.WithBreakerOpenTimeout(time.Hour))
}

// TestCircuitBreakerKeysByPeer: one interceptor given to the clients of two
// servers keeps a breaker for each: one server down does not stop the calls
// to the other.
func TestCircuitBreakerKeysByPeer(t *testing.T) {
	t.Parallel()
	bc := newBreakerCase(t, protocols[0], interceptors.WithBreakerOpenTimeout(time.Hour))
	other := &flakyService{}
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(other))
	otherURL := serve(t, mux)
	breaker, err := interceptors.CircuitBreaker(nil, nil, interceptors.WithBreakerOpenTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	down := pingv1connect.NewPingServiceClient(httpClient(t, false), bc.url, connect.WithInterceptors(breaker))
	up := pingv1connect.NewPingServiceClient(httpClient(t, false), otherURL, connect.WithInterceptors(breaker))
	bc.svc.code.Store(int32(connect.CodeUnavailable))
	for range interceptors.DefaultBreakerConsecutiveFailures + 1 {
		_, err = down.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
	}
	if !errors.Is(err, interceptors.ErrBreakerOpen) {
		t.Fatalf("down: %v, want a refusal", err)
	}
	if _, err := up.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
		t.Errorf("up: %v", err)
	}
}

// TestCircuitBreakerSkipsPublishes: a pubsub publish, a unary client call
// whose context holds its msgctx.Info, is never refused nor counted.
func TestCircuitBreakerSkipsPublishes(t *testing.T) {
	t.Parallel()
	const publish = "/" + topic + "/publish"
	var hits atomic.Int64
	url := serve(t, connect.NewUnaryHandler(publish,
		func(context.Context, *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
			hits.Add(1)
			return nil, connect.NewError(connect.CodeUnavailable, errors.New("broker down"))
		}))
	reg := prometheus.NewRegistry()
	breaker, err := interceptors.CircuitBreaker(nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	client := connect.NewClient[pingv1.PingRequest, pingv1.PingResponse](httpClient(t, false), url+publish, connect.WithInterceptors(breaker))
	ctx := msgctx.NewContext(t.Context(), &msgctx.Info{Operation: msgctx.Publish, System: "mem", Topic: topic})
	const calls = 2 * interceptors.DefaultBreakerMinCalls
	for range calls {
		if _, err := client.CallUnary(ctx, connect.NewRequest(&pingv1.PingRequest{})); connect.CodeOf(err) != connect.CodeUnavailable || errors.Is(err, interceptors.ErrBreakerOpen) {
			t.Fatalf("publish: %v, want the broker's Unavailable", err)
		}
	}
	if got := hits.Load(); got != calls {
		t.Errorf("broker hit %d times, want %d", got, calls)
	}
	// The same procedure called outside a publish is an RPC.
	for range interceptors.DefaultBreakerConsecutiveFailures {
		_, _ = client.CallUnary(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
	}
	if _, err := client.CallUnary(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); !errors.Is(err, interceptors.ErrBreakerOpen) {
		t.Errorf("RPC: %v, want a refusal", err)
	}
}

func TestCircuitBreakerBadOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opt  interceptors.BreakerOption
	}{
		{name: "ratio", opt: interceptors.WithBreakerFailureRatio(1.5, 10)},
		{name: "negative failures", opt: interceptors.WithBreakerConsecutiveFailures(-1)},
		{name: "failures beyond gobreaker's counts", opt: interceptors.WithBreakerConsecutiveFailures(1<<30 + 1)},
		{name: "min calls beyond gobreaker's counts", opt: interceptors.WithBreakerFailureRatio(0.5, 1<<30+1)},
		{name: "negative timeout", opt: interceptors.WithBreakerOpenTimeout(-time.Second)},
		{name: "code", opt: interceptors.WithBreakerTripCodes(connect.Code(99))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := interceptors.CircuitBreaker(nil, nil, tc.opt); err == nil {
				t.Error("no error")
			}
		})
	}
}

// TestCircuitBreakerPanickingProbe: a probe whose call panics (in an
// interceptor inside the breaker) fails: it opens the breaker again instead
// of holding the half-open breaker's only place, which would refuse every
// call from then on.
func TestCircuitBreakerPanickingProbe(t *testing.T) {
	t.Parallel()
	svc := &flakyService{}
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(svc))
	url := serve(t, mux)
	var panics atomic.Bool
	inner := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if panics.Load() {
				panic("boom")
			}
			return next(ctx, req)
		}
	})
	logs := &logBuffer{}
	breaker, err := interceptors.CircuitBreaker(slog.New(slog.NewJSONHandler(logs, nil)), nil, interceptors.WithBreakerOpenTimeout(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	client := pingv1connect.NewPingServiceClient(httpClient(t, false), url, connect.WithInterceptors(breaker, inner))
	ping := func() (err error) {
		defer func() {
			if recover() != nil {
				err = errors.New("panicked")
			}
		}()
		_, err = client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
		return err
	}
	svc.code.Store(int32(connect.CodeUnavailable))
	for range interceptors.DefaultBreakerConsecutiveFailures {
		_ = ping()
	}
	svc.code.Store(0)
	panics.Store(true)
	waitFor(t, func() bool { return !errors.Is(ping(), interceptors.ErrBreakerOpen) }, func() string { return "a probe" })
	logs.waitLine(t, map[string]any{"msg": "circuit breaker state changed", "from": "half-open", "to": "open"})
	panics.Store(false)
	waitFor(t, func() bool { return ping() == nil }, func() string { return "a successful probe" })
}

// TestCircuitBreakerExpiredContext: calls made with a context whose
// deadline has already passed (a handler that spent its caller's deadline
// before calling on) never leave the client and say nothing of the server:
// they do not trip the breaker of a server that answers every call.
func TestCircuitBreakerExpiredContext(t *testing.T) {
	t.Parallel()
	eachProtocol(t, func(t *testing.T, bc *breakerCase) {
		expired, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
		defer cancel()
		for range 2 * interceptors.DefaultBreakerConsecutiveFailures {
			if err := bc.ping(expired); connect.CodeOf(err) != connect.CodeDeadlineExceeded {
				t.Fatalf("%v, want DeadlineExceeded", err)
			}
		}
		if got := bc.hits.Load(); got != 0 {
			t.Errorf("server hit %d times by calls whose deadline had passed", got)
		}
		if err := bc.ping(t.Context()); err != nil {
			t.Fatalf("a call in time to a healthy server: %v", err)
		}
	}, interceptors.WithBreakerOpenTimeout(time.Hour))
}
