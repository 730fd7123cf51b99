package interceptors

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/connectkit/connectkit/internal/restcall"
)

// otherLabel replaces procedure, topic and subscription names beyond the
// cardinality cap.
const otherLabel = "other"

// protocols are the values of the protocol label, by index: connect's, and
// rest for the calls kit's REST routes make (see [callProtocol]).
var protocols = [5]string{connect.ProtocolConnect, connect.ProtocolGRPC, connect.ProtocolGRPCWeb, restcall.Protocol, otherLabel}

func protocolIndex(protocol string) int {
	switch protocol {
	case connect.ProtocolConnect:
		return 0
	case connect.ProtocolGRPC:
		return 1
	case connect.ProtocolGRPCWeb:
		return 2
	case restcall.Protocol:
		return 3
	default:
		return 4
	}
}

// callProtocol is the protocol that a call over peer is logged and
// counted under: peer's, or rest for the Connect call that kit's REST
// routes make of a method for a REST client, which they mark in its query
// (see [restcall.Mark]). Only a Connect call with a query, a Connect GET's
// or a REST call's, looks further than a length.
func callProtocol(peer *connect.Peer) string {
	if len(peer.Query) != 0 && peer.Protocol == connect.ProtocolConnect && restcall.Marked(peer.Query) {
		return restcall.Protocol
	}
	return peer.Protocol
}

// sideMetrics are the grpc_server_* or grpc_client_* families and the cache
// of their children by procedure.
type sideMetrics struct {
	started, handled, received, sent, byProtocol, panics *prometheus.CounterVec
	handling                                             *prometheus.HistogramVec
	inFlight                                             *prometheus.GaugeVec

	max   int
	mu    sync.Mutex                              // serializes additions to procs
	procs atomic.Pointer[map[string]*procMetrics] // copy-on-write: lock-free reads
	other [4]atomic.Pointer[procMetrics]          // by stream type, past the cap
}

// procMetrics are the children of one procedure (or of "other"): looked up
// once per call, with no allocation. Children for codes, protocols and
// panics are made on first use so that only outcomes that happened have
// series, but for the codes of [alertedCodes].
type procMetrics struct {
	side                    *sideMetrics
	labels                  [3]string // grpc_type, grpc_service, grpc_method
	started, received, sent prometheus.Counter
	handling                prometheus.Observer
	inFlight                prometheus.Gauge
	handled                 [maxCode + 1]atomic.Pointer[prometheus.Counter]
	byProtocol              [len(protocols)]atomic.Pointer[prometheus.Counter]
	panics                  atomic.Pointer[prometheus.Counter]
}

func newSideMetrics(reg prometheus.Registerer, side string, cfg *metricsConfig) (*sideMetrics, error) {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	counter := func(name, help string, extra ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_" + side + "_" + name, Help: help,
		}, append(labels[:3:3], extra...))
	}
	s := &sideMetrics{max: cfg.maxProcedures}
	var err error
	var handledHelp, handlingHelp, sentHelp, receivedHelp string
	if side == "server" {
		handledHelp = "Total number of RPCs completed on the server, regardless of success or failure."
		handlingHelp = "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server."
		receivedHelp = "Total number of RPC stream messages received on the server."
		sentHelp = "Total number of gRPC stream messages sent by the server."
		s.panics = registered(reg, &err, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_req_panics_recovered_total",
			Help: "Total number of gRPC requests recovered from internal panic.",
		}, labels))
	} else {
		handledHelp = "Total number of RPCs completed by the client, regardless of success or failure."
		handlingHelp = "Histogram of response latency (seconds) of the gRPC until it is finished by the application."
		receivedHelp = "Total number of RPC stream messages received by the client."
		sentHelp = "Total number of gRPC stream messages sent by the client."
	}
	s.started = registered(reg, &err, counter("started_total", "Total number of RPCs started on the "+side+"."))
	s.handled = registered(reg, &err, counter("handled_total", handledHelp, "grpc_code"))
	s.received = registered(reg, &err, counter("msg_received_total", receivedHelp))
	s.sent = registered(reg, &err, counter("msg_sent_total", sentHelp))
	s.byProtocol = registered(reg, &err, counter("started_by_protocol_total",
		"Total number of RPCs started on the "+side+", by protocol (connect, grpc, grpcweb, rest).", "protocol"))
	s.handling = registered(reg, &err, prometheus.NewHistogramVec(
		cfg.histogramOpts("grpc_"+side+"_handling_seconds", handlingHelp), labels))
	s.inFlight = registered(reg, &err, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "grpc_" + side + "_requests_in_flight", Help: "Number of RPCs in progress on the " + side + ".",
	}, labels))
	if err != nil {
		return nil, err
	}
	s.procs.Store(&map[string]*procMetrics{})
	return s, nil
}

// lookup returns the children of spec's procedure.
func (s *sideMetrics) lookup(spec connect.Spec) *procMetrics {
	procs := *s.procs.Load()
	if pm, ok := procs[spec.Procedure]; ok {
		return pm
	}
	if len(procs) >= s.max {
		if pm := s.other[spec.StreamType&connect.StreamTypeBidi].Load(); pm != nil {
			return pm
		}
	}
	return s.add(spec)
}

func (s *sideMetrics) add(spec connect.Spec) *procMetrics {
	s.mu.Lock()
	defer s.mu.Unlock()
	procs := *s.procs.Load()
	if pm, ok := procs[spec.Procedure]; ok {
		return pm
	}
	st := spec.StreamType & connect.StreamTypeBidi
	if len(procs) >= s.max {
		if pm := s.other[st].Load(); pm != nil {
			return pm
		}
		pm := s.newProcMetrics(st, otherLabel, otherLabel)
		s.other[st].Store(pm)
		return pm
	}
	service, method := splitProcedure(spec.Procedure)
	pm := s.newProcMetrics(st, service, method)
	next := make(map[string]*procMetrics, len(procs)+1)
	for k, v := range procs {
		next[k] = v
	}
	next[spec.Procedure] = pm
	s.procs.Store(&next)
	return pm
}

// alertedCodes are the codes whose handled_total series a procedure has
// from its first call, at 0: those an error-rate alert watches (README,
// "Metrics"). A series that first appears at 1 is no increase to rate() or
// increase(), so the first Internal of a process, often its only one,
// would go unseen. ResourceExhausted is a rate limit's refusal (README,
// "Overload"). go-grpc-prometheus's InitializeMetrics makes all 17 codes'
// series for every method; these 6 keep a procedure at 7.
var alertedCodes = [...]connect.Code{
	connect.CodeUnknown, connect.CodeInternal, connect.CodeUnavailable, connect.CodeDataLoss, connect.CodeDeadlineExceeded,
	connect.CodeResourceExhausted,
}

func (s *sideMetrics) newProcMetrics(st connect.StreamType, service, method string) *procMetrics {
	pm := &procMetrics{side: s, labels: [3]string{streamTypeNames[st], service, method}}
	lv := pm.labels[:]
	pm.started = s.started.WithLabelValues(lv...)
	pm.received = s.received.WithLabelValues(lv...)
	pm.sent = s.sent.WithLabelValues(lv...)
	pm.handling = s.handling.WithLabelValues(lv...)
	pm.inFlight = s.inFlight.WithLabelValues(lv...)
	for _, code := range alertedCodes {
		pm.handledCounter(code)
	}
	return pm
}

func (pm *procMetrics) handledCounter(code connect.Code) prometheus.Counter {
	if c := pm.handled[code].Load(); c != nil {
		return *c
	}
	return lazyChild(&pm.handled[code], pm.side.handled, pm.labels[0], pm.labels[1], pm.labels[2], grpcCodeNames[code])
}

func (pm *procMetrics) protocolCounter(protocol string) prometheus.Counter {
	i := protocolIndex(protocol)
	if c := pm.byProtocol[i].Load(); c != nil {
		return *c
	}
	return lazyChild(&pm.byProtocol[i], pm.side.byProtocol, pm.labels[0], pm.labels[1], pm.labels[2], protocols[i])
}

func (pm *procMetrics) panicCounter() prometheus.Counter {
	if c := pm.panics.Load(); c != nil {
		return *c
	}
	return lazyChild(&pm.panics, pm.side.panics, pm.labels[:]...)
}

// lazyChild makes a child on first use; two racing callers get the same
// child from the vector, so either may win the store.
func lazyChild(slot *atomic.Pointer[prometheus.Counter], vec *prometheus.CounterVec, lvs ...string) prometheus.Counter {
	c := vec.WithLabelValues(lvs...)
	slot.Store(&c)
	return c
}

// registered registers v in reg, unless *errp already holds an error, and
// records a failure in *errp. When an identical collector is registered
// already (another Metrics interceptor on the same registry), it returns that
// one, so that both interceptors feed the same series.
func registered[V prometheus.Collector](reg prometheus.Registerer, errp *error, v V) V {
	if *errp != nil {
		return v
	}
	err := reg.Register(v)
	if err == nil {
		return v
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(V); ok {
			return existing
		}
	}
	*errp = fmt.Errorf("failed to register metrics: %w", err)
	return v
}
