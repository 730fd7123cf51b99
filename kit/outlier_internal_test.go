package kit

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/connectkit/connectkit/internal/msgctx"
)

// frame returns an envelope of the gRPC-Web and Connect stream framing.
func frame(flags byte, payload string) []byte {
	b := make([]byte, 5, 5+len(payload))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

// Outcomes of a call for its address's failures in a row (3 before it).
const (
	failed  = "failed"
	cleared = "cleared"
	neither = "neither"
)

// checkFails reports an error unless a's failures in a row, 3 before a
// call, are what want says.
func checkFails(t *testing.T, a *outlierAddr, want string) {
	t.Helper()
	if fails, w := a.fails.Load(), map[string]int32{failed: 4, cleared: 0, neither: 3}[want]; fails != w {
		t.Errorf("failures in a row 3 -> %d, want %d (%s)", fails, w, want)
	}
}

// TestOutlierVerdicts reads answers of each protocol to their end through
// the body of outlierTransport, for a call that carries no outlierSlot (one
// made without [Server.ClientOptions]): the failures it counts are what
// HTTP shows (HTTP 502, 503, 504; gRPC UNAVAILABLE and DEADLINE_EXCEEDED
// in the headers of a trailers-only answer, or in gRPC trailers, read at
// the body's end), every other answer clears the count, errors in the
// body (gRPC-Web, Connect streams) are not read, and a failure
// that comes once the caller gave up (its context done) counts for
// nothing. A call that carries a slot is not judged there: the round
// tripper puts itself in the slot, for outlierInterceptor.
func TestOutlierVerdicts(t *testing.T) {
	t.Parallel()
	connectStream := http.Header{"Content-Type": {"application/connect+proto"}}
	for _, tc := range []struct {
		name    string
		status  int
		header  http.Header
		body    []byte
		trailer http.Header // set at the body's end
		gaveUp  bool        // the call's context is done
		want    string
	}{
		{name: "HTTP 200", status: 200, header: http.Header{"Content-Type": {"application/proto"}}, want: cleared},
		{name: "HTTP 500", status: 500, header: http.Header{"Content-Type": {"application/json"}}, want: cleared},
		{name: "HTTP 502", status: 502, header: http.Header{"Content-Type": {"text/html"}}, want: failed},
		{name: "Connect unary unavailable", status: 503, header: http.Header{"Content-Type": {"application/json"}}, want: failed},
		{name: "Connect unary deadline_exceeded", status: 504, header: http.Header{"Content-Type": {"application/json"}}, want: failed},
		{name: "gRPC trailers-only UNAVAILABLE", status: 200, header: http.Header{"Content-Type": {"application/grpc"}, "Grpc-Status": {"14"}}, want: failed},
		{name: "gRPC trailers-only DEADLINE_EXCEEDED", status: 200, header: http.Header{"Content-Type": {"application/grpc"}, "Grpc-Status": {"4"}}, want: failed},
		{name: "gRPC-Web trailers-only UNAVAILABLE", status: 200, header: http.Header{"Content-Type": {"application/grpc-web+proto"}, "Grpc-Status": {"14"}}, want: failed},
		{name: "gRPC trailers-only NOT_FOUND", status: 200, header: http.Header{"Content-Type": {"application/grpc"}, "Grpc-Status": {"5"}}, want: cleared},
		{name: "gRPC trailers UNAVAILABLE", status: 200, header: http.Header{"Content-Type": {"application/grpc+proto"}},
			body: frame(0, "abc"), trailer: http.Header{"Grpc-Status": {"14"}}, want: failed},
		{name: "gRPC trailers OK", status: 200, header: http.Header{"Content-Type": {"application/grpc+proto"}},
			body: frame(0, "abc"), trailer: http.Header{"Grpc-Status": {"0"}}, want: cleared},
		{name: "gRPC trailers UNAVAILABLE, the caller gone", status: 200, header: http.Header{"Content-Type": {"application/grpc+proto"}},
			body: frame(0, "abc"), trailer: http.Header{"Grpc-Status": {"14"}}, gaveUp: true, want: neither},
		{name: "Connect stream unavailable: not read", status: 200, header: connectStream,
			body: slicesConcat(frame(0, "abc"), frame(2, `{"error":{"code":"unavailable","message":"overloaded"}}`)), want: cleared},
		{name: "Connect unary deadline_exceeded, the caller gone", status: 504, header: http.Header{"Content-Type": {"application/json"}}, gaveUp: true, want: neither},
		{name: "gRPC trailers-only DEADLINE_EXCEEDED, the caller gone", status: 200, header: http.Header{"Content-Type": {"application/grpc"}, "Grpc-Status": {"4"}}, gaveUp: true, want: neither},
		{name: "gRPC trailers OK, the caller gone", status: 200, header: http.Header{"Content-Type": {"application/grpc+proto"}},
			body: frame(0, "abc"), trailer: http.Header{"Grpc-Status": {"0"}}, gaveUp: true, want: cleared},
	} {
		for _, withSlot := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/slot %t", tc.name, withSlot), func(t *testing.T) {
				t.Parallel()
				h := newDialHealth(time.Second, outlierConfig{failures: 100})
				a := h.addrOf("127.0.0.1:1")
				a.fails.Store(3)
				resp := &http.Response{StatusCode: tc.status, Header: tc.header, Body: http.NoBody}
				if tc.body != nil {
					resp.Body = io.NopCloser(&trailerAtEnd{r: bytes.NewReader(tc.body), resp: resp, trailer: tc.trailer})
				}
				rt := &outlierTransport{next: roundTripperFunc(func(*http.Request) (*http.Response, error) { return resp, nil }), h: h, addr: a}
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				if tc.gaveUp {
					cancel()
				}
				var slot *outlierSlot
				if withSlot {
					slot = &outlierSlot{Context: ctx}
					ctx = slot
				}
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:1/", nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err = rt.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				if tc.body == nil && resp.Body != http.NoBody {
					t.Errorf("the body http.NoBody was wrapped")
				}
				got, err := io.ReadAll(resp.Body)
				if err != nil || !bytes.Equal(got, tc.body) && tc.body != nil {
					t.Fatalf("body read %q, %v; want %q", got, err, tc.body)
				}
				if !withSlot {
					checkFails(t, a, tc.want)
					return
				}
				checkFails(t, a, neither)
				if slot.to.Load() != rt {
					t.Errorf("the round tripper did not put itself in the call's slot")
				}
			})
		}
	}
}

// TestOutlierInterceptorVerdicts judges calls by their outcome in connect,
// as outlierInterceptor does, on the address whose round tripper put
// itself in the call's slot: Unavailable and DeadlineExceeded are
// failures, every other outcome and a stream's io.EOF a success, an error
// once the caller gave up counts for nothing (a Canceled would clear the
// count), a slot left empty (a call sent nowhere, or a dial that failed)
// judges nothing, and a second report of a call counts for nothing.
func TestOutlierInterceptorVerdicts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		err    error
		gaveUp bool
		empty  bool // no round tripper put itself in the slot
		want   string
	}{
		{name: "OK", want: cleared},
		{name: "stream's end", err: fmt.Errorf("receive: %w", io.EOF), want: cleared},
		{name: "Unavailable", err: connect.NewError(connect.CodeUnavailable, errors.New("overloaded")), want: failed},
		{name: "DeadlineExceeded", err: connect.NewError(connect.CodeDeadlineExceeded, errors.New("slow")), want: failed},
		{name: "connection lost", err: lost(errors.New("reset")), want: failed},
		{name: "NotFound", err: connect.NewError(connect.CodeNotFound, errors.New("no")), want: cleared},
		{name: "Internal", err: connect.NewError(connect.CodeInternal, errors.New("bug")), want: cleared},
		{name: "DeadlineExceeded, the caller gone", err: connect.NewError(connect.CodeDeadlineExceeded, errors.New("late")), gaveUp: true, want: neither},
		{name: "Canceled, the caller gone", err: connect.NewError(connect.CodeCanceled, context.Canceled), gaveUp: true, want: neither},
		{name: "OK, the caller gone", gaveUp: true, want: cleared},
		{name: "Unavailable, no address", err: connect.NewError(connect.CodeUnavailable, errors.New("no healthy")), empty: true, want: neither},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newDialHealth(time.Second, outlierConfig{failures: 100})
			a := h.addrOf("127.0.0.1:1")
			a.fails.Store(3)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tc.gaveUp {
				cancel()
			}
			slot := &outlierSlot{Context: ctx}
			if !tc.empty {
				slot.to.Store(&outlierTransport{h: h, addr: a})
			}
			slot.report(tc.err)
			checkFails(t, a, tc.want)
			slot.report(connect.NewError(connect.CodeUnavailable, errors.New("again")))
			checkFails(t, a, tc.want)
		})
	}
}

func slicesConcat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// trailerAtEnd reads r, and sets resp's trailer at its end, as net/http's
// HTTP/2 bodies do.
type trailerAtEnd struct {
	r       io.Reader
	resp    *http.Response
	trailer http.Header
}

func (b *trailerAtEnd) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF && b.trailer != nil {
		b.resp.Trailer = b.trailer
	}
	return n, err
}

// TestOutlierConfigFromEnv checks the KIT_CLIENT_OUTLIER_* variables: "0"
// and "off" turn ejection off, the others parse, and values out of range,
// or set while ejection is off, are refused with the variable's name.
func TestOutlierConfigFromEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want HTTPClientConfig
		err  string
	}{
		{env: map[string]string{"KIT_CLIENT_OUTLIER_FAILURES": "0"}, want: HTTPClientConfig{OutlierFailures: OutlierOff}},
		{env: map[string]string{"KIT_CLIENT_OUTLIER_FAILURES": "off"}, want: HTTPClientConfig{OutlierFailures: OutlierOff}},
		{env: map[string]string{"KIT_CLIENT_OUTLIER_FAILURES": "3", "KIT_CLIENT_OUTLIER_EJECTION_TIME": "10s", "KIT_CLIENT_OUTLIER_MAX_EJECTED_PERCENT": "100"},
			want: HTTPClientConfig{OutlierFailures: 3, OutlierEjectionTime: 10 * time.Second, OutlierMaxEjectedPercent: 100}},
		{env: map[string]string{"KIT_CLIENT_OUTLIER_FAILURES": "x"}, err: `KIT_CLIENT_OUTLIER_FAILURES="x"`},
		{env: map[string]string{"KIT_CLIENT_OUTLIER_EJECTION_TIME": "-1s"}, err: "(KIT_CLIENT_OUTLIER_EJECTION_TIME)"},
		{env: map[string]string{"KIT_CLIENT_OUTLIER_MAX_EJECTED_PERCENT": "101"}, err: "(KIT_CLIENT_OUTLIER_MAX_EJECTED_PERCENT)"},
		{env: map[string]string{"KIT_CLIENT_OUTLIER_MAX_EJECTED_PERCENT": "-5"}, err: "(KIT_CLIENT_OUTLIER_MAX_EJECTED_PERCENT)"},
		{env: map[string]string{"KIT_CLIENT_OUTLIER_FAILURES": "off", "KIT_CLIENT_OUTLIER_EJECTION_TIME": "10s"}, err: "(KIT_CLIENT_OUTLIER_EJECTION_TIME) \"10s\": needs KIT_CLIENT_OUTLIER_FAILURES above 0"},
		{env: map[string]string{"KIT_CLIENT_OUTLIER_FAILURES": "0", "KIT_CLIENT_OUTLIER_MAX_EJECTED_PERCENT": "20"}, err: "(KIT_CLIENT_OUTLIER_MAX_EJECTED_PERCENT) \"20\": needs KIT_CLIENT_OUTLIER_FAILURES above 0"},
	} {
		cfg, err := configFrom(lookupIn(tc.env))
		if err == nil {
			err = cfg.Validate()
		}
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%v: err = %v, want one naming %s", tc.env, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%v: %v", tc.env, err)
		case tc.err == "" && cfg.HTTPClient != tc.want:
			t.Errorf("%v: HTTPClient = %+v, want %+v", tc.env, cfg.HTTPClient, tc.want)
		}
	}
}

// TestEjectionTimes ejects an address again and again: each ejection lasts
// one base time more than the last, up to ten, and each base time it
// spent back in the balancing since takes one off.
func TestEjectionTimes(t *testing.T) {
	t.Parallel()
	const base = 30 * time.Second
	a := &outlierAddr{}
	now := time.Now()
	var got []time.Duration
	for range 11 {
		got = append(got, a.nextEjection(now, base))
		a.returned = now
	}
	want := []time.Duration{30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("ejection times %v, want %v seconds", got, want)
		}
	}
	if d := a.nextEjection(now.Add(3*base+time.Second), base); d != 8*base {
		t.Errorf("after 3 base times back, the next ejection lasts %v, want %v", d, 8*base)
	}
	if d := a.nextEjection(now.Add(time.Hour), base); d != base {
		t.Errorf("after an hour back, the next ejection lasts %v, want %v", d, base)
	}
}

// TestStaleRecordEjectsNothing ends, failed, a call of an address's round
// tripper closed meanwhile (the address left the names, and came back with
// a new round tripper and a new record): the old record must eject
// nothing, since the client's close stops the ejections of the current
// records only, and would wait for the old one's to end (up to ten
// ejection times), with kit_client_outlier_ejected left at 1.
func TestStaleRecordEjectsNothing(t *testing.T) {
	t.Parallel()
	h := newDialHealth(time.Second, outlierConfig{failures: 1, base: time.Hour, maxPercent: 100, logger: slog.New(slog.DiscardHandler)})
	tracker := &hookTracker{}
	for _, addr := range []string{"10.0.0.1:80", "10.0.0.2:80"} {
		closer := h.New(t.Context(), addrConn{addr: addr}, tracker)
		defer func() { _ = closer.Close() }()
	}
	old := h.addrOf("10.0.0.1:80")
	h.release(old)
	cur := h.addrOf("10.0.0.1:80")
	defer h.release(cur)
	h.result(old, true)
	h.mu.Lock()
	ejected := old.ejected
	if old.timer != nil && old.timer.Stop() {
		h.wg.Done()
	}
	h.mu.Unlock()
	if ejected {
		t.Errorf("a record its round tripper no longer holds ejected its address")
	}
	h.stopEjections()
	h.close()
}

// cutReader reads r, then fails with err, as a body whose connection was
// lost after some of it came.
type cutReader struct {
	r   io.Reader
	err error
}

func (c *cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		return n, c.err
	}
	return n, err
}

// TestOutlierBodyVerdicts judges a call without an outlierSlot whose
// answer has a body once only: an answer whose headers show a failure
// (HTTP 503) is judged by them alone, and an answer whose headers show no failure
// (HTTP 200 of a Connect stream, a gRPC-Web answer or a REST resource) is
// a failure when its connection is lost under a read of its body, and a
// success when the body ends or is closed; the headers' verdict alone
// cleared the count before the connection loss added one, so that an
// address whose every answer was cut so stayed at 1 failure in a row and
// was never left out.
func TestOutlierBodyVerdicts(t *testing.T) {
	t.Parallel()
	connectStream := http.Header{"Content-Type": {"application/connect+proto"}}
	rest := http.Header{"Content-Type": {"application/json"}}
	for _, tc := range []struct {
		name   string
		status int // 0: 200
		header http.Header
		cut    error // the read error after the body's bytes; nil: io.EOF
		close  bool  // closed after one byte, not read to its end
		want   string
	}{
		{name: "Connect stream, connection reset", header: connectStream, cut: syscall.ECONNRESET, want: failed},
		{name: "REST, body cut short", header: rest, cut: io.ErrUnexpectedEOF, want: failed},
		{name: "gRPC-Web, connection reset", header: http.Header{"Content-Type": {"application/grpc-web+proto"}}, cut: syscall.ECONNRESET, want: failed},
		{name: "REST, read to its end", header: rest, want: cleared},
		{name: "REST, closed before its end", header: rest, close: true, want: cleared},
		{name: "Connect stream, other read error", header: connectStream, cut: errors.New("stream error: INTERNAL_ERROR"), want: cleared},
		{name: "HTTP 503, body cut short", status: 503, header: rest, cut: io.ErrUnexpectedEOF, want: failed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newDialHealth(time.Second, outlierConfig{failures: 100})
			a := h.addrOf("127.0.0.1:1")
			a.fails.Store(3)
			var body io.Reader = strings.NewReader("abc")
			if tc.cut != nil {
				body = &cutReader{r: body, err: tc.cut}
			}
			resp := &http.Response{StatusCode: cmp.Or(tc.status, 200), Header: tc.header, Body: io.NopCloser(body)}
			rt := &outlierTransport{next: roundTripperFunc(func(*http.Request) (*http.Response, error) { return resp, nil }), h: h, addr: a}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://127.0.0.1:1/", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err = rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.close {
				if _, err := resp.Body.Read(make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
			} else if _, err := io.ReadAll(resp.Body); (err != nil) != (tc.cut != nil) {
				t.Fatalf("body read: %v, want the error %v", err, tc.cut)
			}
			if err := resp.Body.Close(); err != nil {
				t.Fatal(err)
			}
			checkFails(t, a, tc.want)
		})
	}
}

// publishLike is a request of pubsub's, which presents a publish to the
// client chain.
type publishLike struct {
	connect.AnyRequest
	info msgctx.Info
}

func (r *publishLike) MessageInfo() *msgctx.Info { return &r.info }

// TestOutlierInterceptorSkipsMessages: a publish presented to the client
// chain gets no slot in its context (an allocation a message, which no
// HTTP client would read), while a call does.
func TestOutlierInterceptorSkipsMessages(t *testing.T) {
	t.Parallel()
	var slotted bool
	judge := outlierInterceptor{}.WrapUnary(func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
		_, slotted = ctx.Value(outlierSlotKey{}).(*outlierSlot)
		return nil, nil
	})
	call := connect.NewRequest(&emptypb.Empty{})
	if _, _ = judge(t.Context(), call); !slotted {
		t.Error("a call got no slot")
	}
	if _, _ = judge(t.Context(), &publishLike{AnyRequest: call, info: msgctx.Info{Operation: msgctx.Publish, Topic: "t"}}); slotted {
		t.Error("a publish got a slot")
	}
}
