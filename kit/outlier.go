package kit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/internal/msgctx"
	"github.com/prometheus/client_golang/prometheus"
)

// OutlierOff turns the ejection of failing addresses off when it is the
// value of [HTTPClientConfig.OutlierFailures] (any negative value does); in
// the environment, write "0" or "off".
const OutlierOff = -1

// Defaults of the outlier ejection of [HTTPClientConfig].
const (
	DefaultClientOutlierFailures          = 5
	DefaultClientOutlierEjectionTime      = 30 * time.Second
	DefaultClientOutlierMaxEjectedPercent = 50
)

// maxEjectionMultiplier caps an address's ejection time at this many times
// [HTTPClientConfig.OutlierEjectionTime] (Envoy's 300s of 30s).
const maxEjectionMultiplier = 10

// outlierSettings are the KIT_CLIENT_OUTLIER_* variables.
var outlierSettings = []setting{
	{env: "KIT_CLIENT_OUTLIER_FAILURES", usage: `failed calls in a row that take an address of a service called out of the balancing, or "off" (0)`,
		set: func(c *Config, v string) error {
			if strings.EqualFold(v, "off") {
				v = "0"
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return errors.New("want an integer" + orOff)
			}
			if n == 0 { // any spelling of it: "0", "00", "-0"
				n = OutlierOff
			}
			c.HTTPClient.OutlierFailures = n
			return nil
		},
		get: func(c *Config) any {
			if n := orDefault(c.HTTPClient.OutlierFailures, DefaultClientOutlierFailures); n > 0 {
				return n
			}
			return "off"
		}},
	breakerDuration("KIT_CLIENT_OUTLIER_EJECTION_TIME", "how long an address is left out at its first ejection (times its ejections, up to 10)",
		DefaultClientOutlierEjectionTime, func(c *Config) *time.Duration { return &c.HTTPClient.OutlierEjectionTime }),
	breakerInt("KIT_CLIENT_OUTLIER_MAX_EJECTED_PERCENT", "most of a name's addresses (percent, at least one) left out at once for failing calls",
		DefaultClientOutlierMaxEjectedPercent, func(c *Config) *int { return &c.HTTPClient.OutlierMaxEjectedPercent }),
}

// checkOutlier reports, with bad, the outlier settings of h out of range,
// and the ejection's time or limit set while ejection is off, which would
// change nothing.
func (h HTTPClientConfig) checkOutlier(bad func(field, env string, value any, why string)) {
	if h.OutlierFailures > maxBreakerCount {
		bad("HTTPClient.OutlierFailures", "KIT_CLIENT_OUTLIER_FAILURES", h.OutlierFailures, fmt.Sprintf("must be at most %d", maxBreakerCount))
	}
	checkSwitched(h.OutlierFailures >= 0, "HTTPClient.", "needs KIT_CLIENT_OUTLIER_FAILURES above 0 (ejection is off)", bad, []switchedSetting{
		{"OutlierEjectionTime", "KIT_CLIENT_OUTLIER_EJECTION_TIME", h.OutlierEjectionTime, h.OutlierEjectionTime != 0, h.OutlierEjectionTime > 0, "must not be negative"},
		{"OutlierMaxEjectedPercent", "KIT_CLIENT_OUTLIER_MAX_EJECTED_PERCENT", h.OutlierMaxEjectedPercent, h.OutlierMaxEjectedPercent != 0,
			h.OutlierMaxEjectedPercent > 0 && h.OutlierMaxEjectedPercent <= 100, "must be between 1 and 100 (0 keeps the default)"},
	})
}

// clientMetrics are the metrics of [Server.HTTPClient]: its ejections and
// its calls over HTTP/1.1 to servers that speak only that. Nil fields
// count nothing. None has an address a name resolved to as a label: a
// headless Service's Pods come and go, and each would leave its series;
// the logs name them. http1Calls has the peer, as rpc_client_retries_total
// has it: the host and port called (the request's Host), before
// resolution.
type clientMetrics struct {
	ejections  prometheus.Counter
	ejected    prometheus.Gauge
	http1Calls *prometheus.CounterVec // peer
}

// newClientMetrics registers the client's metrics in reg, or finds those
// another server registered there.
func newClientMetrics(reg prometheus.Registerer) (clientMetrics, error) {
	ejections, err := registerOrFind(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kit_client_outlier_ejections_total",
		Help: "Addresses of services called that HTTPClient took out of the balancing for failing calls in a row (KIT_CLIENT_OUTLIER_FAILURES).",
	}))
	if err != nil {
		return clientMetrics{}, err
	}
	ejected, err := registerOrFind(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kit_client_outlier_ejected",
		Help: "Addresses of services called that HTTPClient leaves out of the balancing now for failing calls.",
	}))
	if err != nil {
		return clientMetrics{}, err
	}
	http1Calls, err := registerOrFind(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kit_client_http1_calls_total",
		Help: "Calls of HTTPClient sent over HTTP/1.1, by peer (host and port called), to http:// servers that speak HTTP/1.x only, not h2c (the log names each such address).",
	}, []string{"peer"}))
	if err != nil {
		return clientMetrics{}, err
	}
	return clientMetrics{ejections: ejections, ejected: ejected, http1Calls: http1Calls}, nil
}

// registerOrFind registers c in reg, or returns the collector of the same
// name already there (another server's, on a registry they share).
func registerOrFind[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			if existing, ok := already.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("kit: metrics registry: %w", err)
	}
	return c, nil
}

// outlierTransport is the round tripper of one address. A call made
// through [Server.ClientOptions]' clients carries an outlierSlot in its
// context: the round tripper puts itself there, and outlierInterceptor
// judges the call by its outcome in connect. Any other call is judged here
// by what HTTP shows (see statusFailed) and by its connection lost under
// it.
type outlierTransport struct {
	next http.RoundTripper
	h    *dialHealth
	addr *outlierAddr // nil: ejection is off
}

func (t *outlierTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	var slot *outlierSlot
	if t.addr != nil {
		slot, _ = req.Context().Value(outlierSlotKey{}).(*outlierSlot)
	}
	judged := t.addr != nil && slot == nil // here, rather than by outlierInterceptor
	if slot != nil {
		if err == nil || connLost(err) {
			slot.to.Store(t)
		} else { // not sent (a dial that failed, which dialHealth judges), or the caller's own error
			slot.to.Store(nil)
		}
	}
	if err != nil {
		if judged && req.Context().Err() == nil && connLost(err) {
			t.h.result(t.addr, true)
		}
		return resp, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols { // that body is also the writer of an upgraded connection
		return resp, nil
	}
	// An answer whose headers show no failure is judged once, by its body
	// (resetBody): a failure if its connection is lost under it, else at
	// its end, by a gRPC answer's trailers when its status is there (not
	// trailers-only).
	byBody := false
	if judged {
		if failed := statusFailed(resp); failed || resp.Body == http.NoBody {
			if !failed || req.Context().Err() == nil { // a failure once the caller gave up: not judged
				t.h.result(t.addr, failed)
			}
		} else {
			byBody = true
		}
	}
	if resp.Body == http.NoBody {
		return resp, nil
	}
	body := &resetBody{ReadCloser: resp.Body, ctx: req.Context()}
	if byBody {
		body.judge.Store(t)
		if resp.StatusCode == http.StatusOK && isGRPC(resp) && first(resp.Header, "Grpc-Status") == "" {
			body.trailer = &resp.Trailer
		}
	}
	resp.Body = body
	return resp, nil
}

// isGRPC reports whether resp is a gRPC answer (not gRPC-Web, whose
// trailers are in its body, connect's to read).
func isGRPC(resp *http.Response) bool {
	ct := first(resp.Header, "Content-Type")
	return strings.HasPrefix(ct, "application/grpc") && !strings.HasPrefix(ct, "application/grpc-web")
}

// grpcFailed reports whether a grpc-status is a failure of the address:
// UNAVAILABLE or DEADLINE_EXCEEDED.
func grpcFailed(status string) bool {
	return status == "14" || status == "4"
}

// statusFailed judges a call by what HTTP shows of it, its status and
// headers: a failure is what Envoy's outlier detection counts as a gateway
// error, HTTP 502, 503 or 504 (Connect's unary unavailable and
// deadline_exceeded), and the gRPC statuses they map to, UNAVAILABLE and
// DEADLINE_EXCEEDED, in the headers of a trailers-only answer. Every other
// answer is a success: the address answered. A gRPC answer's trailers
// are judged at its body's end; an error that a gRPC-Web answer gives in
// its trailer frame or a Connect stream in its end-stream message is
// connect's to read, and outlierInterceptor's to judge.
func statusFailed(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return grpcFailed(first(resp.Header, "Grpc-Status"))
}

// first returns the first value of the header key, in its canonical form:
// net/http's clients canonicalize the names they receive, so Get's
// canonicalization of key is saved.
func first(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// outlierSlotKey is the context key of an outlierSlot.
type outlierSlotKey struct{}

// outlierSlot is the context of one attempt of a call made through
// outlierInterceptor, and the place where the round tripper of the address
// the attempt reached puts itself (see outlierTransport). It is the
// attempt's context itself, so that it costs one allocation.
type outlierSlot struct {
	context.Context
	to atomic.Pointer[outlierTransport] // nil: no address to judge, or judged
}

// Value returns s for outlierSlotKey, and the parent's values otherwise.
func (s *outlierSlot) Value(key any) any {
	if key == (outlierSlotKey{}) {
		return s
	}
	return s.Context.Value(key)
}

// report judges the address in s by the outcome of the call, once: a
// failure is Unavailable or DeadlineExceeded (what the gateway errors of
// statusFailed and a connection lost become in connect); any other error,
// the call's success, and a stream's end (io.EOF) are a success. An error
// once the caller gave up (its context done) counts for nothing: it is
// most likely the caller's own Canceled or DeadlineExceeded, no answer.
func (s *outlierSlot) report(err error) {
	t := s.to.Swap(nil)
	if t == nil {
		return
	}
	failed := false
	if err != nil && !errors.Is(err, io.EOF) {
		if s.Err() != nil {
			return
		}
		switch connect.CodeOf(err) {
		case connect.CodeUnavailable, connect.CodeDeadlineExceeded:
			failed = true
		}
	}
	t.h.result(t.addr, failed)
}

// outlierInterceptor judges each call made through it, for the outlier
// ejection of [Server.HTTPClient], by its outcome in connect: the code of
// a unary call's error, and of a stream's Receive's first error. kit puts
// it innermost in [Server.ClientOptions]' chain, so that each attempt of
// a retried call is judged on the address it reached.
type outlierInterceptor struct{}

func (outlierInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if r, ok := req.(msgctx.Request); ok && r.MessageInfo() != nil {
			// A publish, which no HTTP client carries: no slot (an
			// allocation a message; BENCHMARKS.md section 7).
			return next(ctx, req)
		}
		slot := &outlierSlot{Context: ctx}
		resp, err := next(slot, req)
		slot.report(err)
		return resp, err
	}
}

func (outlierInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		s := new(outlierStream) // with its slot: one allocation
		s.slot.Context = ctx
		s.StreamingClientConn = next(&s.slot, spec)
		return s
	}
}

func (outlierInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// outlierStream is a client stream judged at its Receive's first error:
// io.EOF at its end, or the error it ended with.
type outlierStream struct {
	connect.StreamingClientConn
	slot outlierSlot
}

func (s *outlierStream) Receive(msg any) error {
	err := s.StreamingClientConn.Receive(msg)
	if err != nil {
		s.slot.report(err)
	}
	return err
}
