package interceptors_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/time/rate"

	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/internal/msgctx"
)

// limitedServer serves PingService behind the given interceptors alone and
// returns its URL.
func limitedServer(t *testing.T, ics ...connect.Interceptor) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(&pingService{}, connect.WithInterceptors(ics...)))
	return serve(t, mux)
}

// slowly is a limit that refills one call an hour: nothing within a test.
var slowly = rate.Every(time.Hour)

func codeOf(err error) connect.Code {
	if err == nil {
		return 0
	}
	return connect.CodeOf(err)
}

// countUp runs a CountUp stream of one number to its end and returns its
// error.
func countUp(t *testing.T, client pingv1connect.PingServiceClient) error {
	t.Helper()
	stream, err := client.CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 1}))
	if err != nil {
		return err
	}
	for stream.Receive() {
	}
	return stream.Err()
}

func TestRateLimitRefusesOverTheLimit(t *testing.T) {
	t.Parallel()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			url := limitedServer(t, interceptors.RateLimit(slowly, 2))
			client := pingv1connect.NewPingServiceClient(httpClient(t, false), url, p.opts...)
			for i := range 2 {
				if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
					t.Fatalf("call %d of the burst: %v", i+1, err)
				}
			}
			_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
			if codeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "rate limit exceeded: 1 call every 1h0m0s, burst 2") {
				t.Errorf("call over the limit: %v, want resource_exhausted naming the limit", err)
			}
			// An hour until the next call, less what the calls took.
			var ce *connect.Error
			if !errors.As(err, &ce) {
				t.Fatalf("%v is not a *connect.Error", err)
			}
			if after, _ := strconv.Atoi(ce.Meta().Get("Retry-After")); after < 3500 || after > 3600 {
				t.Errorf("Retry-After %q, want about 3600", ce.Meta().Get("Retry-After"))
			}
			// A stream's start takes a call from the same bucket.
			if err := countUp(t, client); codeOf(err) != connect.CodeResourceExhausted {
				t.Errorf("stream over the limit: %v, want resource_exhausted", err)
			}
		})
	}
}

func TestRateLimitIsHTTP429ForJSON(t *testing.T) {
	t.Parallel()
	url := limitedServer(t, interceptors.RateLimit(10, 1)) + pingv1connect.PingServicePingProcedure
	client := httpClient(t, true)
	var statuses []int
	var body, retryAfter string
	// The second call comes within the 100ms a call takes to refill,
	// unless the machine stalls that long between them: then try again.
	for range 50 {
		statuses = statuses[:0]
		for range 2 {
			res, err := client.Post(url, "application/json", strings.NewReader(`{"number": 1}`))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			statuses, body, retryAfter = append(statuses, res.StatusCode), string(b), res.Header.Get("Retry-After")
		}
		if statuses[1] != http.StatusOK {
			break
		}
	}
	if statuses[1] != http.StatusTooManyRequests || !strings.Contains(body, `"code":"resource_exhausted"`) ||
		!strings.Contains(body, "rate limit exceeded: 10 calls/s, burst 1") {
		t.Errorf("second call: %d %s, want 429 resource_exhausted naming the limit", statuses[1], body)
	}
	if retryAfter != "1" { // 100ms or less, in whole seconds
		t.Errorf("Retry-After %q, want 1", retryAfter)
	}
}

func TestRateLimitRefills(t *testing.T) {
	t.Parallel()
	url := limitedServer(t, interceptors.RateLimit(5, 1)) // a call every 200ms
	client := pingv1connect.NewPingServiceClient(httpClient(t, false), url)
	ping := func() error {
		_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
		return err
	}
	refused := false
	for range 50 {
		if err := ping(); codeOf(err) == connect.CodeResourceExhausted {
			refused = true
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if !refused {
		t.Fatal("50 calls in a row at 5 calls/s, burst 1, and none refused")
	}
	waitFor(t, func() bool { return ping() == nil }, func() string { return "no call admitted after a refusal" })
}

func TestRateLimitPerProcedure(t *testing.T) {
	t.Parallel()
	url := limitedServer(t, interceptors.RateLimit(slowly, 1, interceptors.WithLimitPerProcedure()))
	client := pingv1connect.NewPingServiceClient(httpClient(t, false), url)
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
		t.Fatal(err)
	}
	_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{}))
	if codeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "per procedure") {
		t.Errorf("second Ping: %v, want resource_exhausted per procedure", err)
	}
	// Fail has a bucket of its own: it fails as asked.
	_, err = client.Fail(t.Context(), connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeAborted)}))
	if codeOf(err) != connect.CodeAborted {
		t.Errorf("Fail after Ping's bucket ran dry: %v, want aborted", err)
	}
}

func TestLimitsExemptions(t *testing.T) {
	t.Parallel()
	exempt := interceptors.WithExemptProcedures(pingv1connect.PingServiceFailProcedure)
	for name, limit := range map[string]connect.Interceptor{
		"RateLimit":   interceptors.RateLimit(slowly, 1, exempt),
		"MaxInFlight": interceptors.MaxInFlight(1, exempt),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// A handler chain that is all busy: the limit's one place
			// taken, its bucket empty.
			hold, release := make(chan struct{}), make(chan struct{})
			var busy connect.UnaryFunc = func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
				close(hold)
				<-release
				return nil, errors.New("done")
			}
			go func() { _, _ = limit.WrapUnary(busy)(t.Context(), connect.NewRequest(&pingv1.PingRequest{})) }()
			<-hold
			defer close(release)
			handled := 0
			count := connect.UnaryFunc(func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
				handled++
				return nil, nil
			})
			call := func(ctx context.Context, procedure string) error {
				_, err := limit.WrapUnary(count)(ctx, &specRequest{connect.NewRequest(&pingv1.PingRequest{}), procedure})
				return err
			}
			if err := call(t.Context(), pingv1connect.PingServicePingProcedure); err == nil {
				t.Fatal("Ping admitted: the test's limit is not full")
			}
			for _, procedure := range []string{
				pingv1connect.PingServiceFailProcedure, // WithExemptProcedures
				"/grpc.health.v1.Health/Check",
				"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
			} {
				if err := call(t.Context(), procedure); err != nil {
					t.Errorf("%s: %v, want it exempt", procedure, err)
				}
			}
			// A pubsub delivery, which the chain sees as a unary call of
			// "/<topic>/<subscription>" with its Info in the context.
			info := &msgctx.Info{Operation: msgctx.Process, Topic: topic, Subscription: subscription, Attempt: 1}
			if err := call(msgctx.NewContext(t.Context(), info), delivery); err != nil {
				t.Errorf("delivery: %v, want it exempt", err)
			}
			if handled != 4 {
				t.Errorf("%d exempt calls handled, want 4", handled)
			}
		})
	}
}

// specRequest is a server request of the given procedure.
type specRequest struct {
	*connect.Request[pingv1.PingRequest]
	procedure string
}

func (r *specRequest) Spec() connect.Spec {
	return connect.Spec{Procedure: r.procedure, StreamType: connect.StreamTypeUnary}
}

// blocker holds the unary calls whose text is "block", inside the limit,
// until release is closed; each sends on entered first.
type blocker struct {
	entered, release chan struct{}
}

func (b blocker) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if m, ok := req.Any().(*pingv1.PingRequest); ok && m.GetText() == "block" {
			b.entered <- struct{}{}
			<-b.release
		}
		return next(ctx, req)
	}
}

func (b blocker) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (b blocker) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func TestMaxInFlight(t *testing.T) {
	t.Parallel()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			b := blocker{entered: make(chan struct{}), release: make(chan struct{})}
			url := limitedServer(t, interceptors.MaxInFlight(2), b)
			client := pingv1connect.NewPingServiceClient(httpClient(t, false), url, p.opts...)
			ping := func(text string) error {
				_, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Text: text}))
				return err
			}
			done := make(chan error, 2)
			for range 2 {
				go func() { done <- ping("block") }()
				<-b.entered
			}
			err := ping("")
			if codeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "too many calls in flight: limit 2") {
				t.Errorf("third call: %v, want unavailable naming the limit", err)
			}
			if err := countUp(t, client); codeOf(err) != connect.CodeUnavailable {
				t.Errorf("stream started while full: %v, want unavailable", err)
			}
			b.release <- struct{}{} // one of the two returns
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if err := ping(""); err != nil {
				t.Errorf("call once a place is free: %v", err)
			}
			close(b.release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestMaxInFlightStreamsHoldNoPlace: open streams, however many, leave the
// unary calls their places.
func TestMaxInFlightStreamsHoldNoPlace(t *testing.T) {
	t.Parallel()
	url := limitedServer(t, interceptors.MaxInFlight(1))
	client := pingv1connect.NewPingServiceClient(httpClient(t, false), url)
	for range 3 {
		stream := client.CumSum(t.Context())
		if err := stream.Send(&pingv1.CumSumRequest{Number: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Receive(); err != nil { // its handler is running
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = stream.CloseRequest(); _ = stream.CloseResponse() })
	}
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
		t.Errorf("unary call beside three open streams: %v", err)
	}
}

func TestLimitsPanicOnBadArguments(t *testing.T) {
	t.Parallel()
	for name, build := range map[string]func(){
		"zero limit":     func() { interceptors.RateLimit(0, 1) },
		"negative limit": func() { interceptors.RateLimit(-3, 1) },
		"negative burst": func() { interceptors.RateLimit(1, -1) },
		"no calls":       func() { interceptors.MaxInFlight(0) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			build()
		})
	}
}

// TestRateLimitMessage: the refusal states the limit as it was set, a slow
// one as an interval.
func TestRateLimitMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		limit rate.Limit
		want  string
	}{
		{100, "rate limit exceeded: 100 calls/s, burst 1"},
		{2.5, "rate limit exceeded: 2.5 calls/s, burst 1"},
		{0.5, "rate limit exceeded: 1 call every 2s, burst 1"},
		{rate.Every(90 * time.Second), "rate limit exceeded: 1 call every 1m30s, burst 1"},
		{1e-300, "rate limit exceeded: 1e-300 calls/s, burst 1"}, // no interval to print
	} {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			handle := interceptors.RateLimit(tc.limit, 1).WrapUnary(func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
				return nil, nil
			})
			req := &specRequest{connect.NewRequest(&pingv1.PingRequest{}), pingv1connect.PingServicePingProcedure}
			var err error
			for range 1000 { // refills at 100 calls/s, within 10ms: to be sure of one refusal
				if _, err = handle(t.Context(), req); err != nil {
					break
				}
			}
			if err == nil || err.Error() != "resource_exhausted: "+tc.want {
				t.Errorf("refusal %v, want %q", err, tc.want)
			}
		})
	}
}

// TestMaxInFlightNeverAdmitsMore: calls racing for the places never run
// more than n at once, and each is admitted or refused.
func TestMaxInFlightNeverAdmitsMore(t *testing.T) {
	t.Parallel()
	const n, callers, calls = 3, 16, 200
	var running, most atomic.Int64
	handle := interceptors.MaxInFlight(n).WrapUnary(func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
		now := running.Add(1)
		for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
		}
		runtime.Gosched() // let the others race while this one holds its place
		running.Add(-1)
		return nil, nil
	})
	req := &specRequest{connect.NewRequest(&pingv1.PingRequest{}), pingv1connect.PingServicePingProcedure}
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range calls {
				switch _, err := handle(t.Context(), req); codeOf(err) {
				case 0:
					admitted.Add(1)
				case connect.CodeUnavailable:
					refused.Add(1)
				default:
					t.Errorf("call: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if most.Load() > n || admitted.Load()+refused.Load() != callers*calls || admitted.Load() < n {
		t.Errorf("at most %d running at once, %d admitted, %d refused; want at most %d, %d in all",
			most.Load(), admitted.Load(), refused.Load(), n, callers*calls)
	}
}

// TestExemptMethodIsThatMethodAlone checks that WithExemptProcedures given
// one method exempts that method, not the others whose names begin with
// its name, while a service's prefix still exempts all of its methods.
func TestExemptMethodIsThatMethodAlone(t *testing.T) {
	t.Parallel()
	limit := interceptors.RateLimit(slowly, 1, interceptors.WithExemptProcedures(
		"/acme.v1.Uploads/Put", "/acme.v1.Admin/"))
	admitted := connect.UnaryFunc(func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) {
		return nil, nil
	})
	call := func(procedure string) error {
		_, err := limit.WrapUnary(admitted)(t.Context(), &specRequest{connect.NewRequest(&pingv1.PingRequest{}), procedure})
		return err
	}
	if err := call("/acme.v1.Uploads/Get"); err != nil { // the bucket's one call
		t.Fatal(err)
	}
	for procedure, exempt := range map[string]bool{
		"/acme.v1.Uploads/Put":      true,
		"/acme.v1.Admin/Drain":      true,
		"/acme.v1.Admin/Restart":    true,
		"/acme.v1.Uploads/PutMany":  false,
		"/acme.v1.Uploads/Get":      false,
		"/acme.v1.AdminTools/Drain": false,
	} {
		if err := call(procedure); (err == nil) != exempt {
			t.Errorf("%s: %v, want exempt %v", procedure, err, exempt)
		}
	}
}
