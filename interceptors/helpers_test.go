package interceptors_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// panicNumber makes the streaming methods of pingService panic; the text
// "panic" does it for Ping.
const panicNumber = 4242

// canceledNumber makes CountUp return context.Canceled as is, as a stream's
// handler that returns ctx.Err() once its client went away does.
const canceledNumber = 4343

// pingService implements every stream type of PingService.
type pingService struct {
	pingv1connect.UnimplementedPingServiceHandler
	// downstream, when set, is called by Ping with text "forward", to show
	// what a server passes on to the services it calls.
	downstream pingv1connect.PingServiceClient
}

func (s *pingService) Ping(ctx context.Context, req *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
	switch req.Msg.GetText() {
	case "panic":
		panic("boom")
	case "abort":
		panic(http.ErrAbortHandler)
	case "log":
		interceptors.LoggerFrom(ctx).Info("handler line")
	case "forward":
		if _, err := s.downstream.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: req.Msg.GetNumber()})); err != nil {
			return nil, err
		}
	}
	return connect.NewResponse(&pingv1.PingResponse{
		Number: req.Msg.GetNumber(), Text: req.Msg.GetText(), Secret: req.Msg.GetSecret(),
	}), nil
}

func (s *pingService) Fail(_ context.Context, req *connect.Request[pingv1.FailRequest]) (*connect.Response[pingv1.FailResponse], error) {
	return nil, connect.NewError(connect.Code(req.Msg.GetCode()), errors.New("requested failure"))
}

func (s *pingService) Sum(_ context.Context, stream *connect.ClientStream[pingv1.SumRequest]) (*connect.Response[pingv1.SumResponse], error) {
	var sum int64
	for stream.Receive() {
		if stream.Msg().GetNumber() == panicNumber {
			panic("boom")
		}
		sum += stream.Msg().GetNumber()
	}
	if err := stream.Err(); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pingv1.SumResponse{Sum: sum}), nil
}

func (s *pingService) CountUp(_ context.Context, req *connect.Request[pingv1.CountUpRequest], stream *connect.ServerStream[pingv1.CountUpResponse]) error {
	// The response headers first, as watch streams do: no message, so
	// neither logged nor counted as one.
	if err := stream.Send(nil); err != nil {
		return err
	}
	if req.Msg.GetNumber() == canceledNumber {
		return context.Canceled
	}
	for i := int64(1); i <= req.Msg.GetNumber(); i++ {
		if err := stream.Send(&pingv1.CountUpResponse{Number: i}); err != nil {
			return err
		}
		if req.Msg.GetNumber() == panicNumber {
			panic("boom") // after one message: a panic mid-stream
		}
	}
	return nil
}

func (s *pingService) CumSum(_ context.Context, stream *connect.BidiStream[pingv1.CumSumRequest, pingv1.CumSumResponse]) error {
	var sum int64
	for {
		msg, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if msg.GetNumber() == panicNumber {
			panic("boom")
		}
		sum += msg.GetNumber()
		if err := stream.Send(&pingv1.CumSumResponse{Sum: sum}); err != nil {
			return err
		}
	}
}

// observed is one side's observability: a JSON log, a registry and the
// finished spans, fed by a Default chain.
type observed struct {
	logs  *logBuffer
	reg   *prometheus.Registry
	spans *tracetest.InMemoryExporter
	tp    *sdktrace.TracerProvider
	chain *interceptors.Chain
}

func newObserved(tb testing.TB, level slog.Level, opts ...interceptors.Option) *observed {
	tb.Helper()
	o := &observed{
		logs:  &logBuffer{},
		reg:   prometheus.NewRegistry(),
		spans: tracetest.NewInMemoryExporter(),
	}
	o.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(o.spans))
	tb.Cleanup(func() { _ = o.tp.Shutdown(context.Background()) })
	logger := slog.New(slog.NewJSONHandler(o.logs, &slog.HandlerOptions{Level: level}))
	chain, err := interceptors.Default(logger, o.reg,
		append([]interceptors.Option{interceptors.WithTracerProvider(o.tp)}, opts...)...)
	if err != nil {
		tb.Fatalf("Default: %v", err)
	}
	o.chain = chain
	return o
}

// testServer is PingService behind the server chain on a loopback port,
// speaking HTTP/1.1 and HTTP/2 without TLS (h2c), with the matching client
// chain for its clients.
type testServer struct {
	URL            string
	server, client *observed
	svc            *pingService
}

type serverConfig struct {
	level           slog.Level
	handlerOptions  []connect.HandlerOption
	serverChainOpts []interceptors.Option
	interceptors    func(*observed) []connect.Interceptor // replaces the server chain
}

func newTestServer(tb testing.TB, cfg serverConfig) *testServer {
	tb.Helper()
	s := &testServer{
		server: newObserved(tb, cfg.level, cfg.serverChainOpts...),
		client: newObserved(tb, cfg.level),
		svc:    &pingService{},
	}
	chain := s.server.chain.Server()
	if cfg.interceptors != nil {
		chain = cfg.interceptors(s.server)
	}
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(s.svc,
		append([]connect.HandlerOption{connect.WithInterceptors(chain...)}, cfg.handlerOptions...)...))
	s.URL = serve(tb, interceptors.HTTPVersion(mux))
	return s
}

// serve runs h on 127.0.0.1 at a random port, with HTTP/1.1 and h2c, and
// interceptors.ConnContext as kit sets it.
func serve(tb testing.TB, h http.Handler) string {
	tb.Helper()
	return serveWith(tb, h, interceptors.ConnContext)
}

// serveWith is serve with the given ConnContext (nil for none).
func serveWith(tb testing.TB, h http.Handler, connContext func(context.Context, net.Conn) context.Context) string {
	tb.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnContext = connContext
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	tb.Cleanup(srv.Close)
	return srv.URL
}

// httpClient speaks h2c, or HTTP/1.1 when http1 is set.
func httpClient(tb testing.TB, http1 bool) *http.Client {
	tb.Helper()
	p := new(http.Protocols)
	if http1 {
		p.SetHTTP1(true)
	} else {
		p.SetUnencryptedHTTP2(true)
	}
	t := &http.Transport{Protocols: p}
	tb.Cleanup(t.CloseIdleConnections)
	return &http.Client{Transport: t}
}

// protocol is a client protocol: its name in Peer.Protocol, and the client
// options that select it.
type protocol struct {
	name string
	opts []connect.ClientOption
}

// protocols are the client protocols every test runs with.
var protocols = []protocol{
	{name: "connect"},
	{name: "grpc", opts: []connect.ClientOption{connect.WithGRPC()}},
	{name: "grpcweb", opts: []connect.ClientOption{connect.WithGRPCWeb()}},
}

// pingClient returns a client with the client chain, over h2c.
func (s *testServer) pingClient(tb testing.TB, opts ...connect.ClientOption) pingv1connect.PingServiceClient {
	tb.Helper()
	opts = append([]connect.ClientOption{connect.WithInterceptors(s.client.chain.Client()...)}, opts...)
	return pingv1connect.NewPingServiceClient(httpClient(tb, false), s.URL, opts...)
}

// logBuffer collects JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines parses every line logged so far.
func (b *logBuffer) lines(tb testing.TB) []map[string]any {
	tb.Helper()
	b.mu.Lock()
	data := b.buf.String()
	b.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(data) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			tb.Fatalf("log line is not JSON: %v: %s", err, line)
		}
		out = append(out, m)
	}
	return out
}

// matching returns the lines whose fields include want's.
func (b *logBuffer) matching(tb testing.TB, want map[string]any) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for _, line := range b.lines(tb) {
		if includes(line, want) {
			out = append(out, line)
		}
	}
	return out
}

// waitLine waits until exactly one line includes want's fields, and
// returns it.
func (b *logBuffer) waitLine(tb testing.TB, want map[string]any) map[string]any {
	tb.Helper()
	var got []map[string]any
	waitFor(tb, func() bool {
		got = b.matching(tb, want)
		return len(got) > 0
	}, func() string { return fmt.Sprintf("a log line with %v in:\n%s", want, b.dump()) })
	if len(got) != 1 {
		tb.Fatalf("%d log lines with %v, want 1:\n%s", len(got), want, b.dump())
	}
	return got[0]
}

func (b *logBuffer) dump() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func includes(line, want map[string]any) bool {
	for k, v := range want {
		if line[k] != v {
			return false
		}
	}
	return true
}

// waitFor polls cond until it holds, with a deadline generous enough for a
// loaded machine: things a test waits for happen right after the call that
// causes them, but on another goroutine.
func waitFor(tb testing.TB, cond func() bool, what func() string) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metricValue returns the value of the series of family name whose labels
// include labels: a counter's or gauge's value, a histogram's sample count.
// It returns -1 when there is no such series.
func metricValue(tb testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	tb.Helper()
	for _, m := range gatherSeries(tb, reg, name, labels) {
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// gatherSeries returns the series of family name whose labels include
// labels.
func gatherSeries(tb testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) []*dto.Metric {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatalf("Gather: %v", err)
	}
	var out []*dto.Metric
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, labels) {
				out = append(out, m)
			}
		}
	}
	return out
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	found := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			found++
		}
	}
	return found == len(want)
}

// waitMetric waits until the series has value want.
func waitMetric(tb testing.TB, reg prometheus.Gatherer, name string, labels map[string]string, want float64) {
	tb.Helper()
	var got float64
	waitFor(tb, func() bool {
		got = metricValue(tb, reg, name, labels)
		return got == want
	}, func() string { return fmt.Sprintf("%s%v = %v (last %v)", name, labels, want, got) })
}

// streamResult is what a client saw of a stream.
type streamResult struct {
	err            error
	requestID      string
	sent, received int
}

// runStream calls a streaming method of PingService with numbers.
func runStream(t *testing.T, client pingv1connect.PingServiceClient, procedure string, numbers []int64) streamResult {
	t.Helper()
	ctx := t.Context()
	var res streamResult
	var header http.Header
	switch procedure {
	case pingv1connect.PingServiceSumProcedure:
		stream := client.Sum(ctx)
		for _, n := range numbers {
			if err := stream.Send(&pingv1.SumRequest{Number: n}); err != nil {
				break
			}
			res.sent++
		}
		resp, err := stream.CloseAndReceive()
		res.err = err
		if err == nil {
			res.received++
			header = resp.Header()
		}
	case pingv1connect.PingServiceCountUpProcedure:
		stream, err := client.CountUp(ctx, connect.NewRequest(&pingv1.CountUpRequest{Number: numbers[0]}))
		if err != nil {
			t.Fatalf("CountUp: %v", err)
		}
		res.sent++
		for stream.Receive() {
			res.received++
		}
		res.err = stream.Err()
		header = stream.ResponseHeader()
		if err := stream.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	case pingv1connect.PingServiceCumSumProcedure:
		stream := client.CumSum(ctx)
		for _, n := range numbers {
			if err := stream.Send(&pingv1.CumSumRequest{Number: n}); err != nil {
				break
			}
			res.sent++
			if _, err := stream.Receive(); err != nil {
				res.err = err
				break
			}
			res.received++
		}
		_ = stream.CloseRequest()
		if res.err == nil {
			if _, err := stream.Receive(); !errors.Is(err, io.EOF) {
				res.err = err
			}
		}
		header = stream.ResponseHeader()
		_ = stream.CloseResponse()
	default:
		t.Fatalf("no stream procedure %s", procedure)
	}
	res.requestID = header.Get(interceptors.RequestIDHeader)
	var ce *connect.Error
	if res.requestID == "" && errors.As(res.err, &ce) {
		res.requestID = ce.Meta().Get(interceptors.RequestIDHeader)
	}
	if res.requestID == "" {
		t.Fatalf("no %s in the response (err %v)", interceptors.RequestIDHeader, res.err)
	}
	return res
}

// eachStream runs fn in a parallel subtest for each protocol and stream case.
func eachStream(t *testing.T, fn func(t *testing.T, proto protocol, tc streamCase)) {
	t.Helper()
	for _, proto := range protocols {
		for _, tc := range streamCases {
			t.Run(proto.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				fn(t, proto, tc)
			})
		}
	}
}
