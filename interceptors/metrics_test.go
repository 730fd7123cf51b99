package interceptors_test

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const pingServiceName = "connectkit.ping.v1.PingService"

// series are the labels of a method's series.
func series(grpcType, method string, extra ...string) map[string]string {
	labels := map[string]string{"grpc_type": grpcType, "grpc_service": pingServiceName, "grpc_method": method}
	for i := 0; i+1 < len(extra); i += 2 {
		labels[extra[i]] = extra[i+1]
	}
	return labels
}

func TestMetricsUnary(t *testing.T) {
	t.Parallel()
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, serverConfig{})
			client := s.pingClient(t, proto.opts...)
			ctx := t.Context()
			if _, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
				t.Fatal(err)
			}
			if _, err := client.Ping(ctx, connect.NewRequest(&pingv1.PingRequest{Text: "panic"})); connect.CodeOf(err) != connect.CodeInternal {
				t.Fatalf("panic: err = %v, want internal", err)
			}
			if _, err := client.Fail(ctx, connect.NewRequest(&pingv1.FailRequest{Code: int32(connect.CodeNotFound)})); connect.CodeOf(err) != connect.CodeNotFound {
				t.Fatalf("fail: err = %v, want not_found", err)
			}
			for _, side := range []struct {
				name           string
				reg            *prometheus.Registry
				sent, received float64 // by Ping
			}{
				{name: "server", reg: s.server.reg, sent: 1, received: 2},
				{name: "client", reg: s.client.reg, sent: 2, received: 1},
			} {
				p := "grpc_" + side.name + "_"
				ping, fail := series("unary", "Ping"), series("unary", "Fail")
				waitMetric(t, side.reg, p+"handled_total", series("unary", "Ping", "grpc_code", "OK"), 1)
				for _, want := range []struct {
					name   string
					labels map[string]string
					value  float64
				}{
					{p + "started_total", ping, 2},
					{p + "started_total", fail, 1},
					{p + "handled_total", series("unary", "Ping", "grpc_code", "Internal"), 1},
					{p + "handled_total", series("unary", "Fail", "grpc_code", "NotFound"), 1},
					{p + "handled_total", series("unary", "Fail", "grpc_code", "OK"), -1}, // no series for outcomes that did not happen
					{p + "handling_seconds", ping, 2},
					{p + "msg_sent_total", ping, side.sent},
					{p + "msg_received_total", ping, side.received},
					{p + "requests_in_flight", ping, 0},
					{p + "started_by_protocol_total", series("unary", "Ping", "protocol", proto.name), 2},
				} {
					if got := metricValue(t, side.reg, want.name, want.labels); got != want.value {
						t.Errorf("%s%v = %v, want %v", want.name, want.labels, got, want.value)
					}
				}
			}
			if got := metricValue(t, s.server.reg, "grpc_req_panics_recovered_total", series("unary", "Ping")); got != 1 {
				t.Errorf("grpc_req_panics_recovered_total = %v, want 1", got)
			}
		})
	}
}

func TestMetricsStreams(t *testing.T) {
	t.Parallel()
	eachStream(t, func(t *testing.T, proto protocol, tc streamCase) {
		s := newTestServer(t, serverConfig{})
		res := runStream(t, s.pingClient(t, proto.opts...), tc.procedure, tc.numbers)
		_, method := splitProcedure(tc.procedure)
		code := "OK"
		if tc.panics {
			code = "Internal"
		}
		labels := series(tc.stream, method)
		waitMetric(t, s.server.reg, "grpc_server_handled_total", series(tc.stream, method, "grpc_code", code), 1)
		waitMetric(t, s.client.reg, "grpc_client_handled_total", series(tc.stream, method, "grpc_code", code), 1)
		for _, want := range []struct {
			reg   *prometheus.Registry
			name  string
			value float64
		}{
			{s.server.reg, "grpc_server_started_total", 1},
			{s.server.reg, "grpc_server_msg_received_total", tc.received},
			{s.server.reg, "grpc_server_msg_sent_total", tc.sent},
			{s.server.reg, "grpc_server_handling_seconds", 1},
			{s.server.reg, "grpc_server_requests_in_flight", 0},
			{s.client.reg, "grpc_client_started_total", 1},
			{s.client.reg, "grpc_client_msg_sent_total", float64(res.sent)},
			{s.client.reg, "grpc_client_msg_received_total", float64(res.received)},
			{s.client.reg, "grpc_client_handling_seconds", 1},
			{s.client.reg, "grpc_client_requests_in_flight", 0},
		} {
			if got := metricValue(t, want.reg, want.name, labels); got != want.value {
				t.Errorf("%s%v = %v, want %v", want.name, labels, got, want.value)
			}
		}
		wantPanics := -1.0
		if tc.panics {
			wantPanics = 1
		}
		if got := metricValue(t, s.server.reg, "grpc_req_panics_recovered_total", labels); got != wantPanics {
			t.Errorf("grpc_req_panics_recovered_total = %v, want %v", got, wantPanics)
		}
	})
}

// TestMetricsCompatible checks that the series dashboards for
// go-grpc-prometheus query have exactly its label names and types, and that
// promlint finds nothing wrong with any family.
func TestMetricsCompatible(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, serverConfig{})
	if _, err := s.pingClient(t).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Text: "panic"})); err == nil {
		t.Fatal("want an error")
	}
	base := []string{"grpc_method", "grpc_service", "grpc_type"}
	withCode := []string{"grpc_code", "grpc_method", "grpc_service", "grpc_type"}
	want := map[string][]string{
		"started_total": base, "handled_total": withCode, "handling_seconds": base,
		"msg_received_total": base, "msg_sent_total": base,
	}
	for _, reg := range []*prometheus.Registry{s.server.reg, s.client.reg} {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			for suffix, labels := range want {
				for _, side := range []string{"server", "client"} {
					if f.GetName() != "grpc_"+side+"_"+suffix {
						continue
					}
					var got []string
					for _, lp := range f.GetMetric()[0].GetLabel() {
						got = append(got, lp.GetName())
					}
					slices.Sort(got)
					if !slices.Equal(got, labels) {
						t.Errorf("%s labels = %v, want %v", f.GetName(), got, labels)
					}
					if wantHist := suffix == "handling_seconds"; (f.GetType().String() == "HISTOGRAM") != wantHist {
						t.Errorf("%s is a %s", f.GetName(), f.GetType())
					}
				}
			}
		}
		problems, err := testutil.GatherAndLint(reg)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
}

// TestMetricsCardinality checks that procedures past the cap share the
// "other" series.
func TestMetricsCardinality(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	metrics, err := interceptors.Metrics(reg, interceptors.WithMaxProcedures(2))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	procedures := []string{"/test.v1.Svc/A", "/test.v1.Svc/B", "/test.v1.Svc/C", "/test.v1.Svc/D"}
	for _, p := range procedures {
		mux.Handle(p, connect.NewUnaryHandler(p,
			func(context.Context, *connect.Request[pingv1.PingRequest]) (*connect.Response[pingv1.PingResponse], error) {
				return connect.NewResponse(&pingv1.PingResponse{}), nil
			}, connect.WithInterceptors(metrics)))
	}
	url := serve(t, mux)
	for _, p := range append(procedures, procedures...) {
		client := connect.NewClient[pingv1.PingRequest, pingv1.PingResponse](httpClient(t, false), url+p)
		if _, err := client.CallUnary(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	for method, want := range map[string]float64{"A": 2, "B": 2, "C": -1, "D": -1} {
		labels := map[string]string{"grpc_service": "test.v1.Svc", "grpc_method": method}
		if got := metricValue(t, reg, "grpc_server_started_total", labels); got != want {
			t.Errorf("started_total%v = %v, want %v", labels, got, want)
		}
	}
	other := map[string]string{"grpc_type": "unary", "grpc_service": "other", "grpc_method": "other"}
	if got := metricValue(t, reg, "grpc_server_started_total", other); got != 4 {
		t.Errorf("started_total%v = %v, want 4", other, got)
	}
}

func TestMetricsOptions(t *testing.T) {
	t.Parallel()
	t.Run("buckets", func(t *testing.T) {
		t.Parallel()
		s := newTestServer(t, serverConfig{serverChainOpts: []interceptors.Option{interceptors.WithHistogramBuckets(0.5, 1)}})
		if _, err := s.pingClient(t).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{})); err != nil {
			t.Fatal(err)
		}
		families, err := s.server.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "grpc_server_handling_seconds" {
				var bounds []float64
				for _, b := range f.GetMetric()[0].GetHistogram().GetBucket() {
					bounds = append(bounds, b.GetUpperBound())
				}
				if !slices.Equal(bounds, []float64{0.5, 1}) {
					t.Errorf("buckets = %v, want [0.5 1]", bounds)
				}
				return
			}
		}
		t.Error("no grpc_server_handling_seconds")
	})
	for _, tc := range []struct {
		name string
		reg  prometheus.Registerer
		opts []interceptors.MetricsOption
	}{
		{name: "nil registry"},
		{name: "no procedures", reg: prometheus.NewRegistry(), opts: []interceptors.MetricsOption{interceptors.WithMaxProcedures(0)}},
		{name: "unsorted buckets", reg: prometheus.NewRegistry(), opts: []interceptors.MetricsOption{interceptors.WithHistogramBuckets(1, 0.5)}},
		{name: "no buckets", reg: prometheus.NewRegistry(), opts: []interceptors.MetricsOption{interceptors.WithHistogramBuckets()}},
		{name: "conflicting metric", reg: conflictingRegistry(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := interceptors.Metrics(tc.reg, tc.opts...); err == nil {
				t.Error("want an error")
			} else {
				t.Log(err)
			}
		})
	}
	t.Run("shared registry", func(t *testing.T) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		for range 2 {
			if _, err := interceptors.Metrics(reg); err != nil {
				t.Fatalf("second Metrics on one registry: %v", err)
			}
		}
	})
}

// conflictingRegistry has a grpc_server_started_total that is not ours.
func conflictingRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "grpc_server_started_total", Help: "other"}))
	return reg
}

func splitProcedure(procedure string) (service, method string) {
	i := len(procedure) - 1
	for procedure[i] != '/' {
		i--
	}
	return procedure[1:i], procedure[i+1:]
}

// A procedure's first call also makes its handled_total series of the
// codes an error alert watches, at 0: a series that first appears at 1 is
// no increase to rate() or increase(), so the first Internal of a process
// (often the only one) would go unseen. Other codes appear when they
// happen, so a procedure has 7 series of handled_total, not 17.
func TestMetricsAlertedCodesStartAtZero(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, serverConfig{})
	if _, err := s.pingClient(t).Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: 1})); err != nil {
		t.Fatal(err)
	}
	for _, reg := range []*prometheus.Registry{s.server.reg, s.client.reg} {
		side := "server"
		if reg == s.client.reg {
			side = "client"
		}
		name := "grpc_" + side + "_handled_total"
		waitMetric(t, reg, name, series("unary", "Ping", "grpc_code", "OK"), 1)
		for _, code := range []string{"Unknown", "Internal", "Unavailable", "DataLoss", "DeadlineExceeded", "ResourceExhausted"} {
			if got := metricValue(t, reg, name, series("unary", "Ping", "grpc_code", code)); got != 0 {
				t.Errorf("%s{grpc_code=%q} = %v after a success; want a series at 0", name, code, got)
			}
		}
		if got := metricValue(t, reg, name, series("unary", "Ping", "grpc_code", "NotFound")); got != -1 {
			t.Errorf("%s{grpc_code=NotFound} = %v; want no series until one happens", name, got)
		}
	}
}
