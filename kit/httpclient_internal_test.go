package kit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"connectrpc.com/connect"

	"github.com/connectkit/connectkit/interceptors"
)

// TestHTTPClientConfigFromEnv checks that the KIT_CLIENT_* variables of the
// HTTP client parse, and that bad values are refused with the variable's
// name.
func TestHTTPClientConfigFromEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, env, value, want string
	}{
		{name: "not a duration", env: "KIT_CLIENT_DIAL_TIMEOUT", value: "5", want: `KIT_CLIENT_DIAL_TIMEOUT="5"`},
		{name: "negative dial timeout", env: "KIT_CLIENT_DIAL_TIMEOUT", value: "-1s", want: "(KIT_CLIENT_DIAL_TIMEOUT)"},
		{name: "negative resolve interval", env: "KIT_CLIENT_RESOLVE_INTERVAL", value: "-1s", want: "(KIT_CLIENT_RESOLVE_INTERVAL)"},
		{name: "negative idle timeout", env: "KIT_CLIENT_IDLE_TIMEOUT", value: "-1m", want: "(KIT_CLIENT_IDLE_TIMEOUT)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := configFrom(lookupIn(map[string]string{tc.env: tc.value}))
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s=%s: err = %v, want one naming %s", tc.env, tc.value, err, tc.want)
			}
		})
	}
	cfg, err := configFrom(lookupIn(map[string]string{"KIT_CLIENT_DIAL_TIMEOUT": "2s", "KIT_CLIENT_RESOLVE_INTERVAL": "10s", "KIT_CLIENT_IDLE_TIMEOUT": "1m"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := (HTTPClientConfig{DialTimeout: 2 * time.Second, ResolveInterval: 10 * time.Second, IdleTimeout: time.Minute}); cfg.HTTPClient != want {
		t.Errorf("HTTPClient = %+v, want %+v", cfg.HTTPClient, want)
	}
}

// TestResetBodyCodes reads responses whose connection was lost in each way
// net/http reports it: each read, and each RoundTrip failing so, fails with
// Unavailable caused by interceptors.ErrConnectionLost while the call's
// context is live (connect-go would say Internal, 'incomplete envelope',
// or Canceled), and a read fails as it came once the context is done.
func TestResetBodyCodes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
	}{
		{name: "reset", err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}},
		{name: "broken pipe", err: &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}},
		{name: "closed", err: io.ErrUnexpectedEOF},
		{name: "closed after another stream's write failed", err: errors.New("http2: client connection force closed via ClientConn.Close")},
		{name: "ping unanswered", err: errors.New("http2: client connection lost")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := &resetBody{ReadCloser: io.NopCloser(iotest.ErrReader(tc.err)), ctx: t.Context()}
			_, err := body.Read(make([]byte, 5))
			if connect.CodeOf(err) != connect.CodeUnavailable || !errors.Is(err, tc.err) || !errors.Is(err, interceptors.ErrConnectionLost) {
				t.Errorf("Read = %v (code %v), want code unavailable wrapping %v and ErrConnectionLost", err, connect.CodeOf(err), tc.err)
			}
			err = peerGone(t.Context(), &url.Error{Op: "Post", URL: "http://ping.test/", Err: tc.err}) // from RoundTrip
			if connect.CodeOf(err) != connect.CodeUnavailable || !errors.Is(err, tc.err) || !errors.Is(err, interceptors.ErrConnectionLost) {
				t.Errorf("RoundTrip's error = %v (code %v), want code unavailable wrapping %v and ErrConnectionLost", err, connect.CodeOf(err), tc.err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			body = &resetBody{ReadCloser: io.NopCloser(iotest.ErrReader(tc.err)), ctx: ctx}
			if _, err := body.Read(make([]byte, 5)); err != tc.err { // the same error, not wrapped
				t.Errorf("Read with the context done = %v, want %v as it came", err, tc.err)
			}
		})
	}
}

// TestNeverSentIsErrNotSent: the errors of the balancer for a call that
// never left the client are interceptors.ErrNotSent: httplb's for a name
// whose resolution gave no address (which httplb 0.4.0 replaces at once by
// "no healthy connections", so that no test through it can make it),
// naming the host, and a dial's that failed on every address tried.
func TestNeverSentIsErrNotSent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"no addresses", errors.New(httplbNoAddresses), "no addresses for users:8080"},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, "dial tcp: connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rt := redial{roundTripperFunc(func(*http.Request) (*http.Response, error) { return nil, tc.err })}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://users:8080/u.v1.U/Get", http.NoBody)
			if err != nil {
				t.Fatal(err)
			}
			_, err = rt.RoundTrip(req)
			if !errors.Is(err, interceptors.ErrNotSent) || !errors.Is(err, tc.err) || !strings.Contains(fmt.Sprint(err), tc.want) {
				t.Errorf("RoundTrip = %v; want interceptors.ErrNotSent and %v, saying %q", err, tc.err, tc.want)
			}
		})
	}
}

// TestReplayedCallIsNotErrNotSent: net/http sends a GET again on a new
// connection when its kept-alive HTTP/1.1 connection closed after the
// server read it (a server that crashed mid-call), and a dial of that
// attempt that fails (the server gone) ended the call as
// interceptors.ErrNotSent, "certainly not sent", though its handler ran.
// It is a connection lost (interceptors.ErrConnectionLost), as the same
// call fails when net/http does not send it again.
func TestReplayedCallIsNotErrNotSent(t *testing.T) {
	t.Parallel()
	var handled atomic.Int32
	var ts *httptest.Server
	ts = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if handled.Add(1) == 1 {
			_, _ = io.WriteString(w, "ok")
			return
		}
		// The second call reached its handler: the server goes away
		// without answering, its listener first, so no dial succeeds.
		_ = ts.Listener.Close()
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			_ = conn.Close()
		}
	}))
	ts.StartTLS() // HTTP/1.1 only: net/http replays a GET on its connections
	t.Cleanup(ts.Close)
	tlsConfig := ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	c := newBalancedClient(HTTPClientConfig{}.withDefaults(), tlsConfig, NewStaticNames(ts.Listener.Addr().String()), nil, nil, clientMetrics{})
	t.Cleanup(func() { _ = c.close(context.Background()) })
	get := func() (*http.Response, error) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://example.com/", nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.http.Do(req)
	}
	res, err := get()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	_, err = get()
	if handled.Load() != 2 {
		t.Fatalf("the second call reached %d handlers, want 1 (err %v)", handled.Load()-1, err)
	}
	if err == nil || errors.Is(err, interceptors.ErrNotSent) || !errors.Is(err, interceptors.ErrConnectionLost) {
		t.Errorf("a call whose handler ran, its connection then lost = %v; want ErrConnectionLost, not ErrNotSent (Is: %t)", err, errors.Is(err, interceptors.ErrNotSent))
	}
}
