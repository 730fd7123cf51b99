package interceptors_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/internal/msgctx"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// retryService is a PingService whose Ping (idempotent: no side effects)
// and Fail (not idempotent) answer each request with the next of its
// planned errors, and succeed once they are spent (Fail then fails with
// FailedPrecondition, the code a working server gives). It records each
// request's PreviousAttemptsHeader and when it came.
type retryService struct {
	pingv1connect.UnimplementedPingServiceHandler
	mu       sync.Mutex
	plan     []*connect.Error
	always   *connect.Error // answered once plan is spent, when set
	previous []string
	times    []time.Time
}

func (s *retryService) next(h http.Header) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.previous = append(s.previous, h.Get(interceptors.PreviousAttemptsHeader))
	s.times = append(s.times, time.Now())
	if len(s.plan) > 0 {
		err := s.plan[0]
		s.plan = s.plan[1:]
		return err
	}
	if s.always != nil {
		return s.always
	}
	return nil
}

func (s *retryService) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.previous...)
}

func (s *retryService) Ping(_ context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	if err := s.next(req.Header()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pingv1.PingResponse{Number: req.Msg.GetNumber()}), nil
}

func (s *retryService) Fail(_ context.Context, req *connect.Request[pingv1.FailRequest]) (*connect.Response[pingv1.FailResponse], error) {
	if err := s.next(req.Header()); err != nil {
		return nil, err
	}
	return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("fail always fails"))
}

func (s *retryService) CountUp(_ context.Context, req *connect.Request[pingv1.CountUpRequest], _ *connect.ServerStream[pingv1.CountUpResponse]) error {
	return s.next(req.Header())
}

// unavailable is a server's Unavailable, with the given metadata pairs.
func unavailable(meta ...string) *connect.Error {
	return withMeta(connect.NewError(connect.CodeUnavailable, errors.New("try another time")), meta...)
}

func withMeta(err *connect.Error, meta ...string) *connect.Error {
	for i := 0; i+1 < len(meta); i += 2 {
		err.Meta().Set(meta[i], meta[i+1])
	}
	return err
}

// retryCase is a retryService on a loopback port and a client whose chain
// is the client chain, Retry, an attempt counter and, when given, a
// circuit breaker, as kit orders them.
type retryCase struct {
	svc      *retryService
	url      string
	logs     *logBuffer
	reg      *prometheus.Registry
	attempts atomic.Int64 // attempts that left Retry
	dials    atomic.Int64
	refuse   atomic.Int64 // dials left to send to a closed port
	notSent  atomic.Int64 // round trips left to refuse with ErrNotSent
	// notSentErr, when set, is the error of those round trips instead.
	notSentErr error
	client     pingv1connect.PingServiceClient
}

// notSentTransport refuses a round trip, while rc.notSent is above zero,
// as kit's balanced client refuses a call for want of a healthy
// connection: before sending anything, with interceptors.ErrNotSent.
type notSentTransport struct {
	rc   *retryCase
	next http.RoundTripper
}

func (t notSentTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.rc.notSent.Add(-1) >= 0 {
		if t.rc.notSentErr != nil {
			return nil, t.rc.notSentErr
		}
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("no healthy connections to %s: %w", req.URL.Host, interceptors.ErrNotSent))
	}
	return t.next.RoundTrip(req)
}

type retrySetup struct {
	proto   protocol
	opts    []interceptors.RetryOption
	breaker []interceptors.BreakerOption // nil: no breaker
	server  func(*retryService) http.Handler
}

func newRetryCase(t *testing.T, setup retrySetup) *retryCase {
	t.Helper()
	rc := &retryCase{svc: &retryService{}, logs: &logBuffer{}, reg: prometheus.NewRegistry()}
	var h http.Handler
	if setup.server != nil {
		h = setup.server(rc.svc)
	} else {
		mux := http.NewServeMux()
		mux.Handle(pingv1connect.NewPingServiceHandler(rc.svc))
		h = mux
	}
	rc.url = serve(t, h)
	closed := closedAddr(t)
	logger := slog.New(slog.NewJSONHandler(rc.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	chain, err := interceptors.Default(logger, rc.reg, interceptors.WithoutTracing())
	if err != nil {
		t.Fatal(err)
	}
	retry, err := interceptors.Retry(logger, rc.reg, setup.opts...)
	if err != nil {
		t.Fatal(err)
	}
	all := append(chain.Client(), retry, countingInterceptor{&rc.attempts})
	if setup.breaker != nil {
		breaker, err := interceptors.CircuitBreaker(logger, rc.reg, setup.breaker...)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, breaker)
	}
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	dialer := &net.Dialer{}
	transport := &http.Transport{Protocols: p, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		rc.dials.Add(1)
		if rc.refuse.Add(-1) >= 0 {
			addr = closed
		}
		return dialer.DialContext(ctx, network, addr)
	}}
	t.Cleanup(transport.CloseIdleConnections)
	opts := append([]connect.ClientOption{connect.WithInterceptors(all...)}, setup.proto.opts...)
	rc.client = pingv1connect.NewPingServiceClient(&http.Client{Transport: notSentTransport{rc, transport}}, rc.url, opts...)
	return rc
}

// closedAddr returns a loopback address that refuses connections: one
// whose listener was closed.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// countingInterceptor counts the unary calls and streams that pass it.
type countingInterceptor struct{ n *atomic.Int64 }

func (c countingInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		c.n.Add(1)
		return next(ctx, req)
	}
}

func (c countingInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		c.n.Add(1)
		return next(ctx, spec)
	}
}

func (c countingInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// fastRetries keeps the backoff short: the tests wait for servers' own
// waits, not for the default backoff.
var fastRetries = interceptors.WithRetryBackoff(time.Millisecond, time.Millisecond, 1)

// eachRetryProtocol runs fn in a parallel subtest for each protocol.
func eachRetryProtocol(t *testing.T, fn func(t *testing.T, proto protocol)) {
	t.Helper()
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			t.Parallel()
			fn(t, proto)
		})
	}
}

func (rc *retryCase) ping(ctx context.Context) error {
	_, err := rc.client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: 1}))
	return err
}

func (rc *retryCase) fail(ctx context.Context) error {
	_, err := rc.client.Fail(ctx, connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeFailedPrecondition)}))
	return err
}

// failAll makes the server answer every call Unavailable, and pings it
// calls times, each of which must fail so.
func (rc *retryCase) failAll(t *testing.T, calls int) {
	t.Helper()
	rc.svc.always = unavailable()
	for range calls {
		if err := rc.ping(t.Context()); connect.CodeOf(err) != connect.CodeUnavailable {
			t.Fatalf("ping: %v", err)
		}
	}
}

// TestRetryIdempotentCall: an idempotent call that fails with Unavailable
// twice succeeds at its third attempt; the retried attempts carry
// PreviousAttemptsHeader 1 and 2; the call is logged and counted once, as
// a success, the two retries in rpc_client_retries_total and at debug. A
// request sent again after a retried call starts without the header.
func TestRetryIdempotentCall(t *testing.T) {
	t.Parallel()
	eachRetryProtocol(t, func(t *testing.T, proto protocol) {
		rc := newRetryCase(t, retrySetup{proto: proto, opts: []interceptors.RetryOption{fastRetries}})
		rc.svc.plan = []*connect.Error{unavailable(), unavailable()}
		if err := rc.ping(t.Context()); err != nil {
			t.Fatalf("ping: %v", err)
		}
		if got, want := strings.Join(rc.svc.requests(), ","), ",1,2"; got != want {
			t.Errorf("%s of the attempts: %q, want %q", interceptors.PreviousAttemptsHeader, got, want)
		}
		peer := strings.TrimPrefix(rc.url, "http://")
		if got := metricValue(t, rc.reg, "rpc_client_retries_total", map[string]string{
			"peer": peer, "procedure": pingv1connect.PingServicePingProcedure, "code": "unavailable"}); got != 2 {
			t.Errorf("rpc_client_retries_total %v, want 2", got)
		}
		if got := metricValue(t, rc.reg, "grpc_client_handled_total", map[string]string{
			"grpc_method": "Ping", "grpc_code": "OK"}); got != 1 {
			t.Errorf("grpc_client_handled_total{OK} %v, want 1 (the call, once)", got)
		}
		if got := len(rc.logs.matching(t, map[string]any{"msg": "retrying call", "code": "unavailable"})); got != 2 {
			t.Errorf("%d retry lines, want 2:\n%s", got, rc.logs.dump())
		}

		// A request sent again is a first attempt again.
		req := connect.NewRequest(&pingv1.PingRequest{})
		rc.svc.plan = []*connect.Error{unavailable()}
		for range 2 {
			if _, err := rc.client.Ping(t.Context(), req); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := strings.Join(rc.svc.requests()[3:], ","), ",1,"; got != want {
			t.Errorf("%s of a request's attempts, sent twice: %q, want %q", interceptors.PreviousAttemptsHeader, got, want)
		}
	})
}

// TestRetryEmptyCodes: an empty list of retry codes, nil or not (a
// config's "codes: []", a filtered slice), keeps the default, as
// WithRetryCodes says: an idempotent call is still retried on Unavailable.
func TestRetryEmptyCodes(t *testing.T) {
	t.Parallel()
	rc := newRetryCase(t, retrySetup{proto: protocols[0], opts: []interceptors.RetryOption{fastRetries, interceptors.WithRetryCodes([]connect.Code{}...)}})
	rc.svc.plan = []*connect.Error{unavailable()}
	if err := rc.ping(t.Context()); err != nil {
		t.Fatalf("ping: %v, want a retry of the Unavailable attempt", err)
	}
}

// TestRetryMaxAttempts: an idempotent call that keeps failing stops after
// its attempts, with the server's last error.
func TestRetryMaxAttempts(t *testing.T) {
	t.Parallel()
	eachRetryProtocol(t, func(t *testing.T, proto protocol) {
		rc := newRetryCase(t, retrySetup{proto: proto, opts: []interceptors.RetryOption{fastRetries, interceptors.WithRetryMaxAttempts(4)}})
		rc.svc.always = unavailable()
		if err := rc.ping(t.Context()); connect.CodeOf(err) != connect.CodeUnavailable {
			t.Fatalf("ping: %v, want Unavailable", err)
		}
		if got := len(rc.svc.requests()); got != 4 {
			t.Errorf("%d attempts reached the server, want 4", got)
		}
	})
}

// TestRetryOnlySafeCalls: a call is not retried when its method is not
// idempotent, when its code is not listed, or when it is a stream.
func TestRetryOnlySafeCalls(t *testing.T) {
	t.Parallel()
	eachRetryProtocol(t, func(t *testing.T, proto protocol) {
		rc := newRetryCase(t, retrySetup{proto: proto, opts: []interceptors.RetryOption{fastRetries}})
		rc.svc.always = unavailable()
		if err := rc.fail(t.Context()); connect.CodeOf(err) != connect.CodeUnavailable {
			t.Errorf("fail: %v, want Unavailable", err)
		}
		if got := len(rc.svc.requests()); got != 1 {
			t.Errorf("the call that is not idempotent reached the server %d times, want 1", got)
		}

		rc.svc.always = connect.NewError(connect.CodeInternal, errors.New("broken"))
		if err := rc.ping(t.Context()); connect.CodeOf(err) != connect.CodeInternal {
			t.Errorf("ping: %v, want Internal", err)
		}
		if got := len(rc.svc.requests()); got != 2 {
			t.Errorf("Internal was retried: %d requests, want 2", got)
		}

		rc.svc.always = unavailable()
		stream, err := rc.client.CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 1}))
		if err != nil {
			t.Fatal(err)
		}
		for stream.Receive() {
		}
		if connect.CodeOf(stream.Err()) != connect.CodeUnavailable {
			t.Errorf("stream: %v, want Unavailable", stream.Err())
		}
		_ = stream.Close()
		if got := len(rc.svc.requests()); got != 3 {
			t.Errorf("the stream was retried: %d requests, want 3", got)
		}
	})
}

// TestRetryNeverSent: a call whose connection was refused is retried
// whether or not its method is idempotent, and reaches the server once.
func TestRetryNeverSent(t *testing.T) {
	t.Parallel()
	eachRetryProtocol(t, func(t *testing.T, proto protocol) {
		rc := newRetryCase(t, retrySetup{proto: proto, opts: []interceptors.RetryOption{fastRetries}})
		rc.refuse.Store(1)
		err := rc.fail(t.Context())
		if connect.CodeOf(err) != connect.CodeFailedPrecondition {
			t.Fatalf("fail: %v, want the server's FailedPrecondition", err)
		}
		if got := len(rc.svc.requests()); got != 1 {
			t.Errorf("%d requests reached the server, want 1", got)
		}
		if got := rc.dials.Load(); got != 2 {
			t.Errorf("%d dials, want 2 (one refused)", got)
		}

		refusing := newRetryCase(t, retrySetup{proto: proto, opts: []interceptors.RetryOption{fastRetries}})
		refusing.refuse.Store(interceptors.MaxRetryAttempts + 1)
		if err := refusing.fail(t.Context()); connect.CodeOf(err) != connect.CodeUnavailable {
			t.Fatalf("fail to a refusing address: %v, want Unavailable", err)
		}
		if got := refusing.attempts.Load(); got != interceptors.DefaultRetryMaxAttempts {
			t.Errorf("%d attempts to a refusing address, want %d", got, interceptors.DefaultRetryMaxAttempts)
		}
	})
}

// TestRetryNotSentByTheTransport: a call that the transport failed before
// sending any of it is retried as a refused dial is, though its method is
// not idempotent, and reaches the server once: one refused for want of a
// healthy connection (interceptors.ErrNotSent, as kit's balanced client
// refuses it), and one whose host name did not resolve (a balancing
// transport, kit's or httplb's, resolves names apart from its dials and
// returns the resolver's *net.DNSError bare, not inside the dial's
// *net.OpError that net/http's own transport wraps it in).
func TestRetryNotSentByTheTransport(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error // nil: ErrNotSent's
	}{
		{name: "no healthy connections"},
		{name: "name not resolved", err: &net.DNSError{Err: "no such host", Name: "billing", IsNotFound: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			eachRetryProtocol(t, func(t *testing.T, proto protocol) {
				rc := newRetryCase(t, retrySetup{proto: proto, opts: []interceptors.RetryOption{fastRetries}})
				rc.notSentErr = tc.err
				rc.notSent.Store(1)
				if err := rc.fail(t.Context()); connect.CodeOf(err) != connect.CodeFailedPrecondition {
					t.Fatalf("fail: %v, want the server's FailedPrecondition", err)
				}
				if got := rc.attempts.Load(); got != 2 {
					t.Errorf("%d attempts, want 2 (the first failed)", got)
				}
				if got := len(rc.svc.requests()); got != 1 {
					t.Errorf("%d requests reached the server, want 1", got)
				}
			})
		})
	}
}

// TestRetryBreakerOpen: a call that the circuit breaker refuses is not
// retried, though attempts are left; the breaker sees each attempt.
func TestRetryBreakerOpen(t *testing.T) {
	t.Parallel()
	eachRetryProtocol(t, func(t *testing.T, proto protocol) {
		rc := newRetryCase(t, retrySetup{proto: proto, opts: []interceptors.RetryOption{fastRetries, interceptors.WithRetryMaxAttempts(5)},
			breaker: []interceptors.BreakerOption{interceptors.WithBreakerConsecutiveFailures(2), interceptors.WithBreakerOpenTimeout(time.Hour)}})
		rc.svc.always = unavailable()
		err := rc.ping(t.Context())
		if !errors.Is(err, interceptors.ErrBreakerOpen) {
			t.Fatalf("ping: %v, want the breaker's refusal", err)
		}
		if got := len(rc.svc.requests()); got != 2 {
			t.Errorf("%d requests reached the server, want 2 (the breaker trips on the second)", got)
		}
		if got := rc.attempts.Load(); got != 3 {
			t.Errorf("%d attempts, want 3 (the third refused, and not retried)", got)
		}
	})
}

// TestRetryCallerContext: a call whose own context is canceled or past its
// deadline is not retried, even with Canceled and DeadlineExceeded listed,
// and one canceled while it waits for its retry ends then; a server's own
// DeadlineExceeded is retried, when listed.
func TestRetryCallerContext(t *testing.T) {
	t.Parallel()
	eachRetryProtocol(t, func(t *testing.T, proto protocol) {
		block := make(chan struct{})
		rc := newRetryCase(t, retrySetup{proto: proto,
			opts: []interceptors.RetryOption{fastRetries, interceptors.WithRetryCodes(connect.CodeCanceled, connect.CodeDeadlineExceeded)},
			server: func(svc *retryService) http.Handler {
				mux := http.NewServeMux()
				mux.Handle(pingv1connect.NewPingServiceHandler(svc))
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Header.Get("Block") != "" {
						select {
						case <-r.Context().Done():
							return // not to take the next cases' plans
						case <-block:
						}
					}
					mux.ServeHTTP(w, r)
				})
			}})
		t.Cleanup(func() { close(block) })
		for _, tc := range []struct {
			name string
			ctx  func() (context.Context, context.CancelFunc)
			want connect.Code
		}{
			{"canceled", func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(t.Context())
				time.AfterFunc(50*time.Millisecond, cancel)
				return ctx, cancel
			}, connect.CodeCanceled},
			{"deadline", func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(t.Context(), 50*time.Millisecond)
			}, connect.CodeDeadlineExceeded},
		} {
			rc.attempts.Store(0)
			ctx, cancel := tc.ctx()
			req := connect.NewRequest(&pingv1.PingRequest{})
			req.Header().Set("Block", "1")
			_, err := rc.client.Ping(ctx, req)
			cancel()
			if connect.CodeOf(err) != tc.want {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			}
			if got := rc.attempts.Load(); got != 1 {
				t.Errorf("%s: %d attempts, want 1", tc.name, got)
			}
		}
		if lines := rc.logs.matching(t, map[string]any{"msg": "retrying call"}); len(lines) > 0 {
			t.Errorf("calls whose context was done were retried: %v", lines)
		}

		// Canceled while it waits for its retry: it ends at once, Canceled.
		rc.attempts.Store(0)
		rc.svc.plan = []*connect.Error{withMeta(connect.NewError(connect.CodeDeadlineExceeded, errors.New("slow")), "Retry-After", "2")}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		time.AfterFunc(100*time.Millisecond, cancel)
		if err := rc.ping(ctx); connect.CodeOf(err) != connect.CodeCanceled {
			t.Errorf("canceled in its wait: %v, want Canceled", err)
		}
		if got := rc.attempts.Load(); got != 1 {
			t.Errorf("canceled in its wait: %d attempts, want 1", got)
		}
		// Not a retry: not counted, logged or traced as one.
		if got := metricValue(t, rc.reg, "rpc_client_retries_total", map[string]string{"code": "deadline_exceeded"}); got > 0 {
			t.Errorf("canceled in its wait: rpc_client_retries_total %v, want none", got)
		}
		if lines := rc.logs.matching(t, map[string]any{"msg": "retrying call"}); len(lines) > 0 {
			t.Errorf("canceled in its wait: logged as retried: %v", lines)
		}

		rc.attempts.Store(0)
		rc.svc.plan = []*connect.Error{connect.NewError(connect.CodeDeadlineExceeded, errors.New("my own call timed out"))}
		if err := rc.ping(t.Context()); err != nil {
			t.Errorf("the server's DeadlineExceeded was not retried: %v", err)
		}
		if got := rc.attempts.Load(); got != 2 {
			t.Errorf("%d attempts, want 2", got)
		}
	})
}

// TestRetryServerWait: Retry-After and grpc-retry-pushback-ms set the wait
// before the next attempt; a negative pushback, or a wait past the call's
// deadline or MaxRetryWait, ends the retries at once with the server's
// error (no sleep to the deadline, which would fail DeadlineExceeded).
func TestRetryServerWait(t *testing.T) {
	t.Parallel()
	eachRetryProtocol(t, func(t *testing.T, proto protocol) {
		for _, tc := range []struct {
			name     string
			err      func() *connect.Error // made when the case runs: a date goes stale
			timeout  time.Duration
			attempts int
			wait     time.Duration
		}{
			{name: "retry-after", err: func() *connect.Error { return unavailable("Retry-After", "1") }, attempts: 2, wait: time.Second},
			{name: "retry-after date", err: func() *connect.Error {
				return unavailable("Retry-After", time.Now().Add(2*time.Second).UTC().Format(http.TimeFormat))
			}, attempts: 2, wait: time.Second},
			{name: "pushback", err: func() *connect.Error { return unavailable("Grpc-Retry-Pushback-Ms", "300") }, attempts: 2, wait: 300 * time.Millisecond},
			{name: "negative pushback", err: func() *connect.Error { return unavailable("Grpc-Retry-Pushback-Ms", "-1") }, attempts: 1},
			{name: "malformed pushback", err: func() *connect.Error { return unavailable("Grpc-Retry-Pushback-Ms", "soon") }, attempts: 1},
			{name: "past the deadline", err: func() *connect.Error { return unavailable("Retry-After", "5") }, timeout: 2 * time.Second, attempts: 1},
			{name: "past MaxRetryWait", err: func() *connect.Error { return unavailable("Retry-After", "3600") }, attempts: 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				rc := newRetryCase(t, retrySetup{proto: proto, opts: []interceptors.RetryOption{fastRetries}})
				rc.svc.plan = []*connect.Error{tc.err()}
				ctx := t.Context()
				if tc.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.timeout)
					defer cancel()
				}
				err := rc.ping(ctx)
				if got := len(rc.svc.requests()); got != tc.attempts {
					t.Fatalf("%d attempts, want %d (err %v)", got, tc.attempts, err)
				}
				if tc.attempts == 1 {
					if connect.CodeOf(err) != connect.CodeUnavailable {
						t.Errorf("ping: %v, want the server's Unavailable", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("ping: %v", err)
				}
				rc.svc.mu.Lock()
				gap := rc.svc.times[1].Sub(rc.svc.times[0])
				rc.svc.mu.Unlock()
				if gap < tc.wait {
					t.Errorf("the retry came %s after the first attempt, before the server's %s", gap, tc.wait)
				}
			})
		}
	})
}

// TestRetryRateLimit: with ResourceExhausted listed, a call refused by
// RateLimit is retried after its Retry-After, and succeeds.
func TestRetryRateLimit(t *testing.T) {
	t.Parallel()
	eachRetryProtocol(t, func(t *testing.T, proto protocol) {
		rc := newRetryCase(t, retrySetup{proto: proto,
			opts: []interceptors.RetryOption{fastRetries, interceptors.WithRetryCodes(connect.CodeResourceExhausted)},
			server: func(svc *retryService) http.Handler {
				mux := http.NewServeMux()
				mux.Handle(pingv1connect.NewPingServiceHandler(svc,
					connect.WithInterceptors(interceptors.RateLimit(rate.Limit(2), 1))))
				return mux
			}})
		if err := rc.ping(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := rc.ping(t.Context()); err != nil {
			t.Fatalf("the second call, refused then retried: %v", err)
		}
		if got := rc.attempts.Load(); got != 3 {
			t.Errorf("%d attempts, want 3", got)
		}
	})
}

// TestRetryBudget: a peer that fails every call costs at most half the
// budget's tokens in retries: with 10 tokens and 3 attempts, 20 calls make
// 23 attempts (3, 2, then 1 each), and the budget's exhaustion is logged
// once at warn and counted for each call it left unretried.
func TestRetryBudget(t *testing.T) {
	t.Parallel()
	eachRetryProtocol(t, func(t *testing.T, proto protocol) {
		rc := newRetryCase(t, retrySetup{proto: proto, opts: []interceptors.RetryOption{fastRetries}})
		rc.failAll(t, 20)
		if got := rc.attempts.Load(); got != 23 {
			t.Errorf("%d attempts for 20 calls, want 23", got)
		}
		if got := len(rc.logs.matching(t, map[string]any{"level": "WARN", "msg": "retry budget exhausted: calls fail without retries until the peer succeeds again"})); got != 1 {
			t.Errorf("%d warnings, want 1:\n%s", got, rc.logs.dump())
		}
		peer := strings.TrimPrefix(rc.url, "http://")
		if got := metricValue(t, rc.reg, "rpc_client_retries_throttled_total", map[string]string{
			"peer": peer, "procedure": pingv1connect.PingServicePingProcedure}); got != 19 {
			t.Errorf("rpc_client_retries_throttled_total %v, want 19", got)
		}

		// Successes fill the budget again: 1/0.1 of them give one token
		// back, and with six back a failure leaves more than half.
		rc.svc.always = nil
		for range 61 {
			if err := rc.ping(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		rc.svc.plan = []*connect.Error{unavailable()}
		if err := rc.ping(t.Context()); err != nil {
			t.Errorf("ping after the budget filled: %v", err)
		}
	})
}

// TestRetryBudgetLastAttempt: a failure that no retry would follow (the
// call's last attempt; with WithRetryMaxAttempts(1), every attempt) still takes
// its token, as gRPC's throttling counts every failure, but is not counted
// in rpc_client_retries_throttled_total nor warned of as a retry the budget
// refused.
func TestRetryBudgetLastAttempt(t *testing.T) {
	t.Parallel()
	eachRetryProtocol(t, func(t *testing.T, proto protocol) {
		rc := newRetryCase(t, retrySetup{proto: proto, opts: []interceptors.RetryOption{fastRetries, interceptors.WithRetryMaxAttempts(1)}})
		rc.failAll(t, 10)
		if got := rc.attempts.Load(); got != 10 {
			t.Errorf("%d attempts for 10 calls, want 10", got)
		}
		if got := len(rc.logs.matching(t, map[string]any{"level": "WARN"})); got != 0 {
			t.Errorf("%d warnings, want none (nothing was to be retried):\n%s", got, rc.logs.dump())
		}
		if got := metricValue(t, rc.reg, "rpc_client_retries_throttled_total", nil); got > 0 {
			t.Errorf("rpc_client_retries_throttled_total %v, want none (nothing was to be retried)", got)
		}

		// The failures took their tokens: with more attempts allowed, the
		// budget, at 0 of 10, refuses the retry.
		rc2 := newRetryCase(t, retrySetup{proto: proto, opts: []interceptors.RetryOption{fastRetries, interceptors.WithRetryMaxAttempts(2), interceptors.WithRetryBudget(4, 0.1)}})
		rc2.failAll(t, 3)
		// Call 1: 4 → 3 (retried), 3 → 2 (its last attempt, not counted);
		// call 2: 2 → 1, at or below half: refused, counted; call 3 too.
		if got := metricValue(t, rc2.reg, "rpc_client_retries_throttled_total", nil); got != 2 {
			t.Errorf("rpc_client_retries_throttled_total %v, want 2", got)
		}
		if got := rc2.attempts.Load(); got != 4 {
			t.Errorf("%d attempts, want 4", got)
		}
	})
}

// TestRetryOptionsValidate: options out of range fail Retry.
func TestRetryOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opt  interceptors.RetryOption
		want string
	}{
		{"attempts", interceptors.WithRetryMaxAttempts(6), "max attempts 6"},
		{"negative backoff", interceptors.WithRetryBackoff(-1, 0, 0), "initial backoff -1ns"},
		{"max below initial", interceptors.WithRetryBackoff(time.Second, time.Millisecond, 0), "max backoff 1ms"},
		{"multiplier", interceptors.WithRetryBackoff(0, 0, 0.5), "backoff multiplier 0.5"},
		{"tokens", interceptors.WithRetryBudget(-1, 0), "budget tokens -1"},
		{"ratio", interceptors.WithRetryBudget(0, 2), "budget ratio 2"},
		{"ratio under a thousandth", interceptors.WithRetryBudget(0, 0.0004), "budget ratio 0.0004"},
		{"code", interceptors.WithRetryCodes(0), "retry code 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := interceptors.Retry(nil, nil, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Retry: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestRetryTraces: Tracing outside Retry traces the call once, with an
// event per retry, and each attempt's server span is a child of the call's
// span.
func TestRetryTraces(t *testing.T) {
	t.Parallel()
	eachRetryProtocol(t, func(t *testing.T, proto protocol) {
		server, client := newObserved(t, slog.LevelInfo), newObserved(t, slog.LevelInfo)
		svc := &retryService{plan: []*connect.Error{unavailable(), unavailable()}}
		mux := http.NewServeMux()
		mux.Handle(pingv1connect.NewPingServiceHandler(svc, connect.WithInterceptors(server.chain.Server()...)))
		url := serve(t, mux)
		retry, err := interceptors.Retry(nil, nil, fastRetries)
		if err != nil {
			t.Fatal(err)
		}
		opts := append([]connect.ClientOption{connect.WithInterceptors(append(client.chain.Client(), retry)...)}, proto.opts...)
		ping := pingv1connect.NewPingServiceClient(httpClient(t, false), url, opts...)
		if _, err := ping.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
			t.Fatal(err)
		}
		call := onlySpan(t, client.spans)
		var retries int
		for _, e := range call.Events {
			if e.Name == "retry" {
				retries++
			}
		}
		if retries != 2 {
			t.Errorf("%d retry events on the call's span, want 2: %v", retries, call.Events)
		}
		waitFor(t, func() bool { return len(server.spans.GetSpans()) == 3 }, func() string { return "3 server spans" })
		for _, s := range server.spans.GetSpans() {
			if s.Parent.SpanID() != call.SpanContext.SpanID() {
				t.Errorf("server span %s has parent %s, want the call's %s", s.Name, s.Parent.SpanID(), call.SpanContext.SpanID())
			}
		}
	})
}

// TestRetrySkipsPublishes: a pubsub publish, a unary client call whose
// context holds its msgctx.Info, is never retried, even on an idempotent
// procedure; the same procedure called outside a publish is.
func TestRetrySkipsPublishes(t *testing.T) {
	t.Parallel()
	const publish = "/" + topic + "/publish"
	var hits atomic.Int64
	url := serve(t, connect.NewUnaryHandler(publish,
		func(context.Context, *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
			hits.Add(1)
			return nil, unavailable()
		}))
	retry, err := interceptors.Retry(nil, nil, fastRetries)
	if err != nil {
		t.Fatal(err)
	}
	client := connect.NewClient[pingv1.PingRequest, pingv1.PingResponse](httpClient(t, false), url+publish,
		connect.WithInterceptors(retry), connect.WithIdempotency(connect.IdempotencyIdempotent))
	ctx := msgctx.NewContext(t.Context(), &msgctx.Info{Operation: msgctx.Publish, System: "mem", Topic: topic})
	if _, err := client.CallUnary(ctx, connect.NewRequest(&pingv1.PingRequest{})); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("publish: %v, want the broker's Unavailable", err)
	}
	if got := hits.Load(); got != 1 {
		t.Errorf("publish: broker hit %d times, want 1", got)
	}
	if _, err := client.CallUnary(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("RPC: %v, want Unavailable", err)
	}
	if got := hits.Load(); got != 1+interceptors.DefaultRetryMaxAttempts {
		t.Errorf("RPC: server hit %d times in all, want %d", got, 1+interceptors.DefaultRetryMaxAttempts)
	}
}
