package kit

import (
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// connMetrics counts the main listener's connections: those open now and
// those accepted since the start, which is what an operator looks at when
// file descriptors run short, or clients connect per call instead of
// keeping their connections (process_open_fds alone mixes them with the
// files, the admin listener's and the broker's connections).
type connMetrics struct {
	open     prometheus.Gauge
	accepted prometheus.Counter
}

func newConnMetrics(reg prometheus.Registerer) (connMetrics, error) {
	open, err := registerOrFind(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kit_server_open_connections",
		Help: "Connections open on the main listener (HTTP/1.x and HTTP/2, TLS or not), from their accept to their close; a hijacked connection (a WebSocket) leaves at its hijack.",
	}))
	if err != nil {
		return connMetrics{}, err
	}
	accepted, err := registerOrFind(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kit_server_connections_total",
		Help: "Connections the main listener accepted.",
	}))
	if err != nil {
		return connMetrics{}, err
	}
	return connMetrics{open: open, accepted: accepted}, nil
}

// connState is the main listener's http.Server.ConnState: it counts a
// connection out when it closes or is hijacked, then hands the state on
// to fresh (see freshConns). [Server.connContext] counts it in.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	if st == http.StateClosed || st == http.StateHijacked {
		s.conns.open.Dec()
	}
	s.fresh.connState(c, st)
}
