package kit

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
)

// OutlierOff, as [HTTPClientConfig.OutlierFailures], turns the ejection of
// failing addresses off (any negative value does); in the environment,
// write "0" or "off".
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
			if strings.EqualFold(v, "off") || v == "0" {
				c.HTTPClient.OutlierFailures = OutlierOff
				return nil
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return errors.New(`want an integer, or "off"`)
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

// outlierMetrics are the metrics of the ejections: nil fields count
// nothing.
type outlierMetrics struct {
	ejections prometheus.Counter
	ejected   prometheus.Gauge
}

// newOutlierMetrics registers the ejection metrics in reg, or finds those
// another server registered there.
func newOutlierMetrics(reg prometheus.Registerer) (outlierMetrics, error) {
	ejections, err := registerOrFind(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kit_client_outlier_ejections_total",
		Help: "Addresses of services called that HTTPClient took out of the balancing for failing calls in a row (KIT_CLIENT_OUTLIER_FAILURES).",
	}))
	if err != nil {
		return outlierMetrics{}, err
	}
	ejected, err := registerOrFind(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kit_client_outlier_ejected",
		Help: "Addresses of services called that HTTPClient leaves out of the balancing now for failing calls.",
	}))
	if err != nil {
		return outlierMetrics{}, err
	}
	return outlierMetrics{ejections: ejections, ejected: ejected}, nil
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

// outlierAddr is the record of the calls to one address: its failed calls
// in a row, and its ejections.
type outlierAddr struct {
	addr  string
	fails atomic.Int32

	// Guarded by dialHealth.mu.
	refs      int         // the round trippers of addr
	ejected   bool        // out of the balancing until timer fires
	kept      bool        // an ejection was refused for the limits, and logged, since its last
	ejections int         // the multiplier of its next ejection's time, less the decay
	returned  time.Time   // when its last ejection ended
	timer     *time.Timer // ends its ejection
}

// outlierTransport is the round tripper of one address: it judges each
// call's answer (see judgeHeaders and outlierBody) and reports it to
// the address's record.
type outlierTransport struct {
	next http.RoundTripper
	h    *dialHealth
	addr *outlierAddr // nil: ejection is off
}

func (t *outlierTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		if t.addr != nil && req.Context().Err() == nil && connLost(err) {
			t.h.result(t.addr, true)
		}
		return resp, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols { // that body is also the writer of an upgraded connection
		return resp, nil
	}
	v := verdictOK
	if t.addr != nil {
		v = judgeHeaders(resp)
		switch {
		case v == verdictLater || v == verdictEndStream:
		case v == verdictFailed && req.Context().Err() != nil: // the caller gave up: not judged
		default:
			t.h.result(t.addr, v == verdictFailed)
		}
	}
	if resp.Body == http.NoBody {
		return resp, nil
	}
	body := &resetBody{ReadCloser: resp.Body, ctx: req.Context()}
	switch v { // verdictOK when t.addr is nil
	case verdictLater:
		body.outlier = outlierBody{h: t.h, addr: t.addr, trailer: &resp.Trailer, header: resp.Header, grpcWeb: isGRPCWeb(resp)}
	case verdictEndStream:
		body.outlier = outlierBody{h: t.h, addr: t.addr, header: resp.Header, endStream: true}
	}
	resp.Body = body
	return resp, nil
}

// verdict is what a call's answer says of its address.
type verdict uint8

const (
	verdictOK        verdict = iota // it answered
	verdictFailed                   // it failed the call (see judgeHeaders)
	verdictLater                    // its status is in the trailers
	verdictEndStream                // a Connect stream: an end-stream error may come
)

// judgeHeaders judges a call's address by the response's headers. A
// failure is what Envoy's outlier detection counts as a gateway error, in
// each protocol: HTTP 502, 503 or 504 (Connect's unary unavailable and
// deadline_exceeded), and the gRPC statuses they map to, UNAVAILABLE and
// DEADLINE_EXCEEDED, in the headers (a trailers-only answer) or, told by
// verdictLater, in the trailers (gRPC) or the body's trailer frame
// (gRPC-Web). A Connect stream's error comes in its end-stream message
// (verdictEndStream). Every other answer is a success: the address answered.
func judgeHeaders(resp *http.Response) verdict {
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return verdictFailed
	}
	ct := first(resp.Header, "Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/grpc"):
		if status := first(resp.Header, "Grpc-Status"); status != "" {
			return grpcVerdict(status)
		}
		return verdictLater
	case strings.HasPrefix(ct, "application/connect+"):
		return verdictEndStream
	}
	return verdictOK
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

// isGRPCWeb reports whether resp is a gRPC-Web answer, whose trailers come
// in the body.
func isGRPCWeb(resp *http.Response) bool {
	return strings.HasPrefix(first(resp.Header, "Content-Type"), "application/grpc-web")
}

// grpcVerdict judges a grpc-status.
func grpcVerdict[S string | []byte](status S) verdict {
	switch string(status) {
	case "14", "4": // UNAVAILABLE, DEADLINE_EXCEEDED
		return verdictFailed
	}
	return verdictOK
}

// connectVerdict judges a Connect error code.
func connectVerdict(code string) verdict {
	switch code {
	case connect.CodeUnavailable.String(), connect.CodeDeadlineExceeded.String():
		return verdictFailed
	}
	return verdictOK
}

// outlierBody judges a call whose verdict comes at the end of its body:
// gRPC's trailers, or the last frame of a gRPC-Web or Connect stream.
// Frames are followed by their 5-byte prefixes as the reads pass through;
// the last frame is read where it lies when one read brought it whole,
// and copied otherwise. A last frame whose status cannot be read
// (compressed other than by gzip, or larger than maxTrailerFrame) counts
// as a success: an answer came to its end, and a failure not counted
// leaves an address in, where a success not counted could let failures
// that were not in a row eject it.
type outlierBody struct {
	h       *dialHealth
	addr    *outlierAddr
	trailer *http.Header // gRPC: the response's, filled at the body's end
	header  http.Header  // gRPC-Web and Connect streams: the response's, for its encoding
	grpcWeb bool         // the trailers are the frame flagged 0x80
	// endStream: a Connect stream, whose end-stream message is flagged 0x02.
	endStream bool
	done      bool // judged

	prefix     [5]byte
	have       int    // bytes of prefix read
	left       uint32 // bytes of the current frame's payload still to come
	inLast     bool   // the current frame is the last
	lastMode   uint8  // how the last frame is read: lastPending, lastCopied or lastSkipped
	compressed bool   // the last frame is
	last       []byte // the last frame, when it comes over several reads
	verdict    verdict
}

// How outlierBody reads the last frame.
const (
	lastPending = iota // none of it read yet: read where it lies if one read brings it whole
	lastCopied         // it comes over several reads
	lastSkipped        // it is larger than maxTrailerFrame: not read
)

// maxTrailerFrame bounds the trailer frame read for its status, before
// and after its decompression.
const maxTrailerFrame = 4 << 10

// scan follows the frames of p, and judges the last one once it is whole.
func (b *outlierBody) scan(p []byte) {
	for len(p) > 0 {
		if b.left > 0 {
			n := min(uint32(len(p)), b.left)
			b.left -= n
			if b.inLast {
				if b.lastMode == lastPending && b.left > 0 {
					b.lastMode = lastCopied
					b.last = make([]byte, 0, n+b.left)
				}
				switch b.lastMode {
				case lastPending:
					b.verdict = b.judgeFrame(p[:n])
				case lastCopied:
					b.last = append(b.last, p[:n]...)
					if b.left == 0 {
						b.verdict = b.judgeFrame(b.last)
					}
				}
			}
			p = p[n:]
			continue
		}
		n := copy(b.prefix[b.have:], p)
		b.have += n
		p = p[n:]
		if b.have < len(b.prefix) {
			return
		}
		b.have = 0
		b.left = uint32(b.prefix[1])<<24 | uint32(b.prefix[2])<<16 | uint32(b.prefix[3])<<8 | uint32(b.prefix[4])
		flag := b.prefix[0]
		b.inLast = b.grpcWeb && flag&0x80 != 0 || b.endStream && flag&0x02 != 0
		if b.inLast {
			b.compressed = flag&1 != 0
			switch {
			case b.left == 0:
				b.verdict = b.judgeFrame(nil)
			case b.left > maxTrailerFrame:
				b.lastMode = lastSkipped
			default:
				b.lastMode = lastPending
			}
		}
	}
}

// judgeFrame judges the call by its last frame's payload.
func (b *outlierBody) judgeFrame(payload []byte) verdict {
	if b.compressed {
		z := gunzip(b.header, b.grpcWeb, payload)
		if z == nil {
			return verdictOK
		}
		defer z.release()
		payload = z.out
	}
	if b.grpcWeb {
		return grpcVerdict(grpcWebStatus(payload))
	}
	if !bytes.Contains(payload, []byte(`"error"`)) { // no error: no need to parse it
		return verdictOK
	}
	var end struct {
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(payload, &end) != nil || end.Error == nil {
		return verdictOK
	}
	return connectVerdict(end.Error.Code)
}

// end judges the call at its body's end; a failure is not counted when
// ctx, the call's, is done (the caller gave up).
func (b *outlierBody) end(ctx context.Context) {
	if b.done {
		return
	}
	b.done = true
	v := b.verdict // verdictOK when no last frame was whole
	if b.trailer != nil && !b.grpcWeb {
		v = grpcVerdict(first(*b.trailer, "Grpc-Status"))
	}
	if v == verdictFailed && ctx.Err() != nil {
		return
	}
	b.h.result(b.addr, v == verdictFailed)
}

// gzipReaders keeps the decompressors of gunzip.
var gzipReaders sync.Pool

// unzipper is a gzip reader with its input and output.
type unzipper struct {
	zr  *gzip.Reader
	in  bytes.Reader
	buf [maxTrailerFrame + 1]byte
	out []byte
}

// gunzip returns a decompressor from gzipReaders whose out is payload
// decompressed, when the response's encoding (header's) is gzip, or nil.
// connect-go compresses every frame at or above its compressMinBytes (0
// by default; kit servers' 1 KiB) when the client accepts gzip.
func gunzip(header http.Header, grpcWeb bool, payload []byte) *unzipper {
	encoding := "Connect-Content-Encoding"
	if grpcWeb {
		encoding = "Grpc-Encoding"
	}
	if first(header, encoding) != "gzip" {
		return nil
	}
	z, _ := gzipReaders.Get().(*unzipper)
	if z == nil {
		z = new(unzipper)
	}
	z.in.Reset(payload)
	var err error
	if z.zr == nil {
		z.zr, err = gzip.NewReader(&z.in)
	} else {
		err = z.zr.Reset(&z.in)
	}
	if err != nil {
		z.release()
		return nil
	}
	n, err := io.ReadFull(z.zr, z.buf[:])
	if err != io.ErrUnexpectedEOF && err != io.EOF { // nil: over maxTrailerFrame
		z.release()
		return nil
	}
	z.out = z.buf[:n]
	return z
}

// release puts z back in gzipReaders, holding no caller's bytes.
func (z *unzipper) release() {
	z.in.Reset(nil)
	z.out = nil
	gzipReaders.Put(z)
}

// grpcWebStatus returns the grpc-status of a gRPC-Web trailer frame's
// payload (HTTP/1-style header lines).
func grpcWebStatus(frame []byte) []byte {
	for len(frame) > 0 {
		line := frame
		if i := bytes.IndexByte(frame, '\n'); i >= 0 {
			line, frame = frame[:i], frame[i+1:]
		} else {
			frame = nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("grpc-status")) {
			return bytes.TrimSpace(value)
		}
	}
	return nil
}

// failed judges the call failed: its connection was lost.
func (b *outlierBody) failed() {
	if !b.done {
		b.done = true
		b.h.result(b.addr, true)
	}
}

// result counts a call's verdict on a's address: a success clears its
// failures, and the failures in a row that reach h.failures eject it.
func (h *dialHealth) result(a *outlierAddr, failed bool) {
	if !failed {
		if a.fails.Load() != 0 {
			a.fails.Store(0)
		}
		return
	}
	if a.fails.Add(1) < int32(h.outlier.failures) {
		return
	}
	a.fails.Store(0)
	h.eject(a)
}

// outlierConfig is the ejection's part of [HTTPClientConfig], with the
// logger and metrics of its reports.
type outlierConfig struct {
	failures   int // 0: off
	base       time.Duration
	maxPercent int
	logger     *slog.Logger
	metrics    outlierMetrics
}

// addrOf returns the record of addr's calls, made if it was not, for one
// more round tripper (nil when ejection is off).
func (h *dialHealth) addrOf(addr string) *outlierAddr {
	if h.outlier.failures <= 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.addrs[addr]
	if a == nil {
		a = &outlierAddr{addr: addr}
		h.addrs[addr] = a
	}
	a.refs++
	return a
}

// release drops a round tripper's hold on a: the record goes with the
// last one, unless a is ejected (restore drops it then).
func (h *dialHealth) release(a *outlierAddr) {
	if a == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	a.refs--
	if a.refs == 0 && !a.ejected && h.addrs[a.addr] == a {
		delete(h.addrs, a.addr)
	}
}

// eject takes a's address out of the balancing of each name it is in
// whose limits allow (see mayEjectLocked), for the time nextEjection says.
func (h *dialHealth) eject(a *outlierAddr) {
	h.mu.Lock()
	if a.ejected || h.closed {
		h.mu.Unlock()
		return
	}
	var out []*dialCheck
	for check := range h.tasks[a.addr] {
		if h.mayEjectLocked(check) {
			out = append(out, check)
		}
	}
	if len(out) == 0 {
		first := !a.kept
		a.kept = true
		h.mu.Unlock()
		if !first {
			return
		}
		h.outlier.logger.Warn("HTTP client: address failing calls in a row kept in the balancing: its name has as many addresses left out as it may",
			"addr", a.addr, "failures", h.outlier.failures, "max_ejected_percent", h.outlier.maxPercent)
		return
	}
	d := a.nextEjection(time.Now(), h.outlier.base)
	ejections := a.ejections
	a.ejected = true
	a.kept = false
	for _, check := range out {
		check.ejected = true
	}
	h.wg.Add(1)
	a.timer = time.AfterFunc(d, func() {
		defer h.wg.Done()
		h.restore(a)
	})
	h.mu.Unlock()
	if m := h.outlier.metrics; m.ejections != nil {
		m.ejections.Inc()
		m.ejected.Inc()
	}
	h.outlier.logger.Warn("HTTP client: address left out of the balancing for failing calls in a row",
		"addr", a.addr, "failures", h.outlier.failures, "duration", d.String(), "ejections", ejections)
	for _, check := range out {
		h.mark(check)
	}
}

// nextEjection counts an ejection of a at now, and returns its time: base
// times its ejections (up to maxEjectionMultiplier), less one for each
// base time since its last ejection ended.
func (a *outlierAddr) nextEjection(now time.Time, base time.Duration) time.Duration {
	if !a.returned.IsZero() {
		a.ejections = max(0, a.ejections-int(now.Sub(a.returned)/base))
	}
	a.ejections = min(a.ejections+1, maxEjectionMultiplier)
	return base * time.Duration(a.ejections)
}

// mayEjectLocked reports whether check's connection may be ejected: not
// yet ejected, fewer of its name's connections ejected than the limit (the
// max percent of them, rounded down, and at least one), and another of
// them healthy (neither ejected nor failing to connect).
func (h *dialHealth) mayEjectLocked(check *dialCheck) bool {
	if check.ejected {
		return false
	}
	var total, ejected, healthy int
	for _, checks := range h.tasks {
		for c := range checks {
			if c.tracker != check.tracker || c == check {
				continue
			}
			total++
			switch {
			case c.ejected:
				ejected++
			case !c.probing:
				healthy++
			}
		}
	}
	limit := max(1, (total+1)*h.outlier.maxPercent/100)
	return ejected < limit && healthy > 0
}

// restore puts a's address back in the balancing at the end of its
// ejection.
func (h *dialHealth) restore(a *outlierAddr) {
	h.mu.Lock()
	if !a.ejected {
		h.mu.Unlock()
		return
	}
	a.ejected = false
	a.returned = time.Now()
	a.timer = nil
	a.fails.Store(0)
	var back []*dialCheck
	for check := range h.tasks[a.addr] {
		if check.ejected {
			check.ejected = false
			back = append(back, check)
		}
	}
	if a.refs == 0 && h.addrs[a.addr] == a {
		delete(h.addrs, a.addr)
	}
	h.mu.Unlock()
	if m := h.outlier.metrics; m.ejected != nil {
		m.ejected.Dec()
	}
	h.outlier.logger.Info("HTTP client: address back in the balancing after its ejection", "addr", a.addr)
	for _, check := range back {
		h.mark(check)
	}
}

// stopEjections ends the ejections' timers at the client's close (the
// gauge counts their addresses out no longer).
func (h *dialHealth) stopEjections() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, a := range h.addrs {
		if a.timer != nil && a.timer.Stop() {
			a.timer = nil
			a.ejected = false
			h.wg.Done()
			if m := h.outlier.metrics; m.ejected != nil {
				m.ejected.Dec()
			}
		}
	}
}
