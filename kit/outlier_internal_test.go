package kit

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// frame returns an envelope of the gRPC-Web and Connect stream framing.
func frame(flags byte, payload string) []byte {
	b := make([]byte, 5, 5+len(payload))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	return append(b, payload...)
}

// TestOutlierVerdicts reads answers of each protocol to their end, a byte
// at a time, through the body of outlierTransport: the failures it
// counts are the gateway errors (HTTP 502, 503, 504; gRPC UNAVAILABLE and
// DEADLINE_EXCEEDED in the headers, the trailers or the gRPC-Web trailer
// frame; a Connect stream's end-stream error unavailable or
// deadline_exceeded), every other answer clears the count, and an answer
// whose last frame cannot be read (compressed other than by gzip, or too
// large) is read as a success; a failure that comes once the caller gave
// up (its context done) counts for nothing.
func TestOutlierVerdicts(t *testing.T) {
	t.Parallel()
	const (
		failed  = "failed"
		cleared = "cleared"
		neither = "neither"
	)
	grpcWeb := http.Header{"Content-Type": {"application/grpc-web+proto"}}
	connectStream := http.Header{"Content-Type": {"application/connect+proto"}}
	connectGzip := http.Header{"Content-Type": {"application/connect+proto"}, "Connect-Content-Encoding": {"gzip"}}
	grpcWebGzip := http.Header{"Content-Type": {"application/grpc-web+proto"}, "Grpc-Encoding": {"gzip"}}
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
		{name: "gRPC trailers-only NOT_FOUND", status: 200, header: http.Header{"Content-Type": {"application/grpc"}, "Grpc-Status": {"5"}}, want: cleared},
		{name: "gRPC trailers UNAVAILABLE", status: 200, header: http.Header{"Content-Type": {"application/grpc+proto"}},
			body: frame(0, "abc"), trailer: http.Header{"Grpc-Status": {"14"}}, want: failed},
		{name: "gRPC trailers DEADLINE_EXCEEDED", status: 200, header: http.Header{"Content-Type": {"application/grpc+proto"}},
			body: frame(0, "abc"), trailer: http.Header{"Grpc-Status": {"4"}}, want: failed},
		{name: "gRPC trailers OK", status: 200, header: http.Header{"Content-Type": {"application/grpc+proto"}},
			body: frame(0, "abc"), trailer: http.Header{"Grpc-Status": {"0"}}, want: cleared},
		{name: "gRPC-Web trailer frame UNAVAILABLE", status: 200, header: grpcWeb,
			body: slicesConcat(frame(0, "abc"), frame(0x80, "grpc-message: overloaded\r\ngrpc-status: 14\r\n")), want: failed},
		{name: "gRPC-Web trailer frame OK", status: 200, header: grpcWeb,
			body: slicesConcat(frame(0, "abc"), frame(0, ""), frame(0x80, "Grpc-Status: 0\r\n")), want: cleared},
		{name: "gRPC-Web data frame that reads as a status", status: 200, header: grpcWeb,
			body: slicesConcat(frame(0, "grpc-status: 14\r\n"), frame(0x80, "grpc-status: 0\r\n")), want: cleared},
		{name: "Connect stream unavailable", status: 200, header: connectStream,
			body: slicesConcat(frame(0, "abc"), frame(2, `{"error":{"code":"unavailable","message":"overloaded"}}`)), want: failed},
		{name: "Connect stream deadline_exceeded", status: 200, header: connectStream,
			body: slicesConcat(frame(2, `{"error":{"code":"deadline_exceeded"}}`)), want: failed},
		{name: "Connect stream not_found", status: 200, header: connectStream,
			body: slicesConcat(frame(0, "abc"), frame(2, `{"error":{"code":"not_found"}}`)), want: cleared},
		{name: "Connect stream OK", status: 200, header: connectStream,
			body: slicesConcat(frame(0, "abc"), frame(2, `{"metadata":{"a":["b"]}}`)), want: cleared},
		{name: "Connect stream gzipped end unavailable", status: 200, header: connectGzip,
			body: slicesConcat(frame(1, gzipText(t, "abc")), frame(3, gzipText(t, `{"error":{"code":"unavailable"}}`))), want: failed},
		{name: "Connect stream gzipped end OK", status: 200, header: connectGzip,
			body: slicesConcat(frame(1, gzipText(t, "abc")), frame(3, gzipText(t, `{}`))), want: cleared},
		{name: "gRPC-Web gzipped trailer frame UNAVAILABLE", status: 200, header: grpcWebGzip,
			body: slicesConcat(frame(1, gzipText(t, "abc")), frame(0x81, gzipText(t, "grpc-status: 14\r\n"))), want: failed},
		{name: "gRPC-Web gzipped trailer frame OK, twice", status: 200, header: grpcWebGzip,
			body: slicesConcat(frame(0x81, gzipText(t, "grpc-status: 0\r\n"))), want: cleared},
		{name: "Connect stream end of an encoding unknown: read as a success", status: 200,
			header: http.Header{"Content-Type": {"application/connect+proto"}, "Connect-Content-Encoding": {"br"}},
			body:   slicesConcat(frame(3, "\x1f\x8b...")), want: cleared},
		{name: "gRPC-Web trailer frame too large: read as a success", status: 200, header: grpcWeb,
			body: slicesConcat(frame(0x80, "x: "+strings.Repeat("x", maxTrailerFrame)+"\r\ngrpc-status: 14\r\n")), want: cleared},
		{name: "Connect unary deadline_exceeded, the caller gone", status: 504, header: http.Header{"Content-Type": {"application/json"}}, gaveUp: true, want: neither},
		{name: "gRPC trailers-only DEADLINE_EXCEEDED, the caller gone", status: 200, header: http.Header{"Content-Type": {"application/grpc"}, "Grpc-Status": {"4"}}, gaveUp: true, want: neither},
		{name: "gRPC trailers DEADLINE_EXCEEDED, the caller gone", status: 200, header: http.Header{"Content-Type": {"application/grpc+proto"}},
			body: frame(0, "abc"), trailer: http.Header{"Grpc-Status": {"4"}}, gaveUp: true, want: neither},
		{name: "gRPC trailers OK, the caller gone", status: 200, header: http.Header{"Content-Type": {"application/grpc+proto"}},
			body: frame(0, "abc"), trailer: http.Header{"Grpc-Status": {"0"}}, gaveUp: true, want: cleared},
		{name: "Connect stream deadline_exceeded, the caller gone", status: 200, header: connectStream,
			body: slicesConcat(frame(2, `{"error":{"code":"deadline_exceeded"}}`)), gaveUp: true, want: neither},
	} {
		for _, oneByte := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/one byte a read %t", tc.name, oneByte), func(t *testing.T) {
				t.Parallel()
				h := newDialHealth(time.Second, outlierConfig{failures: 100})
				a := h.addrOf("127.0.0.1:1")
				a.fails.Store(3)
				resp := &http.Response{StatusCode: tc.status, Header: tc.header, Body: http.NoBody}
				if tc.body != nil {
					var r io.Reader = &trailerAtEnd{r: bytes.NewReader(tc.body), resp: resp, trailer: tc.trailer}
					if oneByte {
						r = iotest.OneByteReader(r)
					}
					resp.Body = io.NopCloser(r)
				}
				rt := &outlierTransport{next: roundTripperFunc(func(*http.Request) (*http.Response, error) { return resp, nil }), h: h, addr: a}
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				if tc.gaveUp {
					cancel()
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
				want := map[string]int32{failed: 4, cleared: 0, neither: 3}[tc.want]
				if fails := a.fails.Load(); fails != want {
					t.Errorf("failures in a row 3 -> %d, want %d (%s)", fails, want, tc.want)
				}
			})
		}
	}
}

// gzipText returns s compressed by gzip.
func gzipText(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := io.WriteString(zw, s); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
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
