package kit_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
	"github.com/connectkit/connectkit/kit/kittest"
)

// failingPing is a ping service whose Ping and CountUp fail with
// Unavailable when fail says so (CountUp after two messages), as an
// overloaded server's would.
type failingPing struct {
	pingServer
	fail func() bool
}

func (p *failingPing) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	if p.fail() {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("overloaded"))
	}
	return p.pingServer.Ping(ctx, req)
}

func (p *failingPing) CountUp(ctx context.Context, req *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	if p.fail() {
		for i := int64(1); i <= 2; i++ {
			if err := stream.Send(&pingv1.CountUpResponse{Number: i}); err != nil {
				return err
			}
		}
		return connect.NewError(connect.CodeUnavailable, errors.New("overloaded"))
	}
	return p.pingServer.CountUp(ctx, req, stream)
}

func always() bool { return true }

// oneFailing runs two ping backends and one whose calls fail when fail
// says so, all counted in the tally it returns, and a client of a caller
// of config cfg that calls them by one name.
func oneFailing(t *testing.T, fail func() bool, cfg kit.Config, opts ...connect.ClientOption) (*tally, string, pingv1connect.PingServiceClient, *kittest.Server) {
	t.Helper()
	tl := new(tally)
	bad := pingBackend(t, tl, &failingPing{fail: fail})
	client, caller := balancedPingCaller(t, cfg, append(pingBackends(t, 2, tl), bad), opts...)
	return tl, bad.Addr().String(), client, caller
}

// outlierCaller is the config of the callers of these tests: the breaker
// on, and ejections of ejectFor.
func outlierCaller(ejectFor time.Duration, maxPercent int) kit.Config {
	return kit.Config{
		ClientBreaker: kit.ClientBreakerConfig{Enabled: true},
		HTTPClient:    kit.HTTPClientConfig{OutlierEjectionTime: ejectFor, OutlierMaxEjectedPercent: maxPercent},
	}
}

// pings makes n unary calls one after the other, and returns the errors of
// those that failed.
func pings(t *testing.T, client pingv1connect.PingServiceClient, n int) []error {
	t.Helper()
	var failed []error
	for i := range n {
		if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: int64(i)})); err != nil {
			failed = append(failed, err)
		}
	}
	return failed
}

// countUps makes n CountUp streams of 3 one after the other, and returns
// the errors of those that failed; a stream that ends without error must
// have brought all three.
func countUps(t *testing.T, client pingv1connect.PingServiceClient, n int) []error {
	t.Helper()
	var failed []error
	for range n {
		up, err := client.CountUp(t.Context(), connect.NewRequest(&pingv1.CountUpRequest{Number: 3}))
		if err != nil {
			failed = append(failed, err)
			continue
		}
		var got int
		for up.Receive() {
			got++
		}
		// Closed, so that the client chain logs the stream now, not when
		// t's context ends, at the test's end, when a log line may reach
		// t's output after t completed (a data race).
		_ = up.Close()
		if err := up.Err(); err != nil {
			failed = append(failed, err)
		} else if got != 3 {
			t.Errorf("CountUp brought %d messages and no error, want 3", got)
		}
	}
	return failed
}

// TestHTTPClientEjectsFailingAddress calls a name of three kit servers, one
// of which answers Unavailable to every call, in each protocol, unary and
// server streams (the gRPC-Web and Connect streams' errors come in the
// body's last frame, gRPC's in the trailers): after its fifth failure in a
// row (KIT_CLIENT_OUTLIER_FAILURES' default) it gets no call until its
// ejection ends, the other two take them all, no other call fails (the
// breaker, on, does not open), and the metrics count the ejection; once
// its ejection ends it gets calls again, and is ejected again after five.
func TestHTTPClientEjectsFailingAddress(t *testing.T) {
	t.Parallel()
	for _, call := range []struct {
		name  string
		calls func(t *testing.T, client pingv1connect.PingServiceClient, n int) []error
	}{
		{"unary", pings},
		{"server stream", countUps},
	} {
		for _, p := range balancedProtocols {
			t.Run(call.name+"/"+p.name, func(t *testing.T) {
				t.Parallel()
				tl, bad, client, caller := oneFailing(t, always, outlierCaller(time.Hour, 0), p.opts...)

				const n = 60
				failed := call.calls(t, client, n)
				served, _ := tl.take()
				if served[bad] != kit.DefaultClientOutlierFailures || len(failed) != kit.DefaultClientOutlierFailures {
					t.Errorf("the failing backend served %d calls and %d of %d failed, want %d and %d (then ejected); served: %v",
						served[bad], len(failed), n, kit.DefaultClientOutlierFailures, kit.DefaultClientOutlierFailures, served)
				}
				for _, err := range failed {
					if connect.CodeOf(err) != connect.CodeUnavailable || err.Error() != "unavailable: overloaded" {
						t.Errorf("a call failed with %v, want the backend's own Unavailable (not the breaker's)", err)
					}
				}
				reg := caller.Registry()
				if got := metricValue(t, reg, "kit_client_outlier_ejections_total"); got != 1 {
					t.Errorf("kit_client_outlier_ejections_total = %v, want 1", got)
				}
				if got := metricValue(t, reg, "kit_client_outlier_ejected"); got != 1 {
					t.Errorf("kit_client_outlier_ejected = %v, want 1", got)
				}
				kit.EndEjections(caller.Server)
				if got := metricValue(t, reg, "kit_client_outlier_ejected"); got != 0 {
					t.Errorf("kit_client_outlier_ejected = %v after the ejection ended, want 0", got)
				}
				failed = call.calls(t, client, n)
				if served, _ := tl.take(); served[bad] != kit.DefaultClientOutlierFailures || len(failed) != kit.DefaultClientOutlierFailures {
					t.Errorf("after its ejection the failing backend served %d calls and %d of %d failed, want %d and %d (then ejected again); served: %v",
						served[bad], len(failed), n, kit.DefaultClientOutlierFailures, kit.DefaultClientOutlierFailures, served)
				}
				if got := metricValue(t, reg, "kit_client_outlier_ejections_total"); got != 2 {
					t.Errorf("kit_client_outlier_ejections_total = %v, want 2", got)
				}
			})
		}
	}
}

// TestHTTPClientWithoutClientOptions calls a name of two kit servers and
// one that answers Unavailable to every call through HTTPClient with a
// client built without the caller's ClientOptions: the round tripper alone
// judges what HTTP shows, so a Connect unary call's 503 and a gRPC-Web
// one's trailers-only UNAVAILABLE (in the headers) eject the address after
// five, while a gRPC call's, which connect-go servers send in HTTP
// trailers after a 200, is left to the chain's judge, not there: that
// address keeps its third of the calls.
func TestHTTPClientWithoutClientOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		opts   []connect.ClientOption
		served int
	}{
		{"connect", nil, kit.DefaultClientOutlierFailures},
		{"grpc", []connect.ClientOption{connect.WithGRPC()}, kit.DefaultClientOutlierFailures},
		{"grpcweb", []connect.ClientOption{connect.WithGRPCWeb()}, kit.DefaultClientOutlierFailures},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tl := new(tally)
			bad := pingBackend(t, tl, &failingPing{fail: always})
			caller := kittest.NewServer(t, outlierCaller(time.Hour, 0), nil, kit.WithResolver(kit.NewStaticNames(addrsOf(append(pingBackends(t, 2, tl), bad))...)))
			client := pingv1connect.NewPingServiceClient(caller.HTTPClient(), "http://ping.test", tc.opts...)
			pings(t, client, 60)
			if served, _ := tl.take(); served[bad.Addr().String()] != tc.served {
				t.Errorf("the failing backend served %d calls, want %d; served: %v", served[bad.Addr().String()], tc.served, served)
			}
		})
	}
}

// TestHTTPClientEjectsOnRetriedAttempts retries the calls that fail with
// Unavailable: each attempt is judged on the address it reached, so the
// failing backend is ejected after five failed attempts, though every
// call succeeds on its retry (a judge outside the retries would see only
// the calls' successes, and never eject it).
func TestHTTPClientEjectsOnRetriedAttempts(t *testing.T) {
	t.Parallel()
	cfg := outlierCaller(time.Hour, 0)
	cfg.ClientRetry = kit.ClientRetryConfig{Enabled: true, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	for _, p := range balancedProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			tl, bad, client, _ := oneFailing(t, always, cfg, p.opts...)
			if failed := pings(t, client, 60); len(failed) != 0 {
				t.Errorf("%d calls failed, want none (each retried): %v", len(failed), failed[0])
			}
			if served, _ := tl.take(); served[bad] != kit.DefaultClientOutlierFailures {
				t.Errorf("the failing backend took %d attempts, want %d (then ejected); served: %v", served[bad], kit.DefaultClientOutlierFailures, served)
			}
		})
	}
}

// TestHTTPClientEjectionLimits fails every call on more of a name's
// addresses than may be ejected: no more than the max percent are (at
// least one), never the last healthy one, and the others keep their
// calls.
func TestHTTPClientEjectionLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		good, bad  int
		maxPercent int
		ejected    int
	}{
		{name: "2 of 3 bad, at most 50%", good: 1, bad: 2, ejected: 1},
		{name: "3 of 4 bad, at most 50%", good: 1, bad: 3, ejected: 2},
		{name: "2 of 3 bad, at most 67%", good: 1, bad: 2, maxPercent: 67, ejected: 2},
		{name: "2 of 2 bad, at most 100%: never the last", bad: 2, maxPercent: 100, ejected: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var tl tally
			backends := pingBackends(t, tc.good, &tl)
			for range tc.bad {
				backends = append(backends, pingBackend(t, &tl, &failingPing{fail: always}))
			}
			// Without the breaker, which these failures open.
			cfg := kit.Config{HTTPClient: kit.HTTPClientConfig{OutlierEjectionTime: time.Minute, OutlierMaxEjectedPercent: tc.maxPercent}}
			client, caller := balancedPingCaller(t, cfg, backends, connect.WithGRPC())
			pings(t, client, 30*len(backends))
			served, _ := tl.take()
			var ejected, kept int
			for _, b := range backends[tc.good:] {
				switch n := served[b.Addr().String()]; {
				case n == kit.DefaultClientOutlierFailures:
					ejected++
				case n > 2*kit.DefaultClientOutlierFailures:
					kept++
				}
			}
			if ejected != tc.ejected || kept != tc.bad-tc.ejected {
				t.Errorf("%d failing backends ejected and %d kept, want %d and %d; served: %v", ejected, kept, tc.ejected, tc.bad-tc.ejected, served)
			}
			if got := metricValue(t, caller.Registry(), "kit_client_outlier_ejected"); got != float64(tc.ejected) {
				t.Errorf("kit_client_outlier_ejected = %v, want %d", got, tc.ejected)
			}
		})
	}
}

// TestHTTPClientSuccessClearsFailures calls a name of three kit servers,
// one of which fails four calls of every five, over each protocol: its
// successes clear its count of failures, so it is never ejected and serves
// its third of the calls.
func TestHTTPClientSuccessClearsFailures(t *testing.T) {
	t.Parallel()
	for _, p := range balancedProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			tl, flaky, client, _ := oneFailing(t, func() bool { return calls.Add(1)%5 != 0 }, outlierCaller(time.Minute, 0), p.opts...)
			const n = 60
			failed := pings(t, client, n)
			served, _ := tl.take()
			if served[flaky] != n/3 || len(failed) != n/3*4/5 {
				t.Errorf("the flaky backend served %d calls and %d failed, want %d and %d (never ejected); served: %v",
					served[flaky], len(failed), n/3, n/3*4/5, served)
			}
		})
	}
}

// TestHTTPClientOutlierOff turns ejection off: a backend that fails every
// call keeps its share of them.
func TestHTTPClientOutlierOff(t *testing.T) {
	t.Parallel()
	tl, bad, client, _ := oneFailing(t, always, kit.Config{HTTPClient: kit.HTTPClientConfig{OutlierFailures: kit.OutlierOff}})
	const n = 30
	pings(t, client, n)
	if served, _ := tl.take(); served[bad] != n/3 {
		t.Errorf("the failing backend served %d calls, want %d (round robin); served: %v", served[bad], n/3, served)
	}
}

// TestHTTPClientEjectedStreamsWork runs every stream type through a name
// of two kit servers and an ejected one, over each protocol: the bodies
// that the ejection follows to their end still stream.
func TestHTTPClientEjectedStreamsWork(t *testing.T) {
	t.Parallel()
	for _, p := range balancedProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			_, _, client, _ := oneFailing(t, always, outlierCaller(time.Minute, 0), p.opts...)
			pings(t, client, 3*kit.DefaultClientOutlierFailures)
			for range 4 {
				callStreams(t, client, true)
			}
		})
	}
}

// metricValue returns the value of the unlabelled counter or gauge name in
// reg.
func metricValue(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name || len(f.GetMetric()) != 1 {
			continue
		}
		m := f.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestHTTPClientEjectionEnds ejects a failing backend for 100ms: it gets
// calls again once that time has passed.
func TestHTTPClientEjectionEnds(t *testing.T) {
	t.Parallel()
	tl, bad, client, caller := oneFailing(t, always, outlierCaller(100*time.Millisecond, 0))
	if !eventually(func() bool {
		pings(t, client, 3)
		return metricValue(t, caller.Registry(), "kit_client_outlier_ejections_total") == 2
	}) {
		t.Fatalf("the failing backend was not ejected twice")
	}
	served, _ := tl.take()
	if served[bad] < 2*kit.DefaultClientOutlierFailures {
		t.Errorf("the failing backend served %d calls, want at least %d (ejected twice)", served[bad], 2*kit.DefaultClientOutlierFailures)
	}
}
