package kit_test

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"

	"connectrpc.com/authn"

	"github.com/connectkit/connectkit/kit"
)

// WithAuth's fn runs once for a REST call whose body kit ignores by
// serving the call again without it (TestRESTBodyOfARouteThatTakesNoneIsIgnored),
// and the call has the caller fn returned: fn ran for each serving, so that
// a token was introspected twice, and a one-time token (a nonce, a JWT's
// jti kept against replays) was refused the second time, 401.
func TestRESTBodyIgnoredAuthenticatesOnce(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var logs syncBuffer
	s := newPingServer(t, kit.Config{}, nil, kit.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
		kit.WithAuth(func(_ context.Context, r *http.Request) (any, error) {
			if calls.Add(1) > 1 {
				return nil, authn.Errorf("one-time token used already")
			}
			return testCaller{id: "alice"}, nil
		}))
	resp, got := restCall(t, s.HTTP2Client(), http.MethodPost, s.URL+"/v1/fail/5", `{}`, http.Header{"Authorization": {"Bearer once"}})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /v1/fail/5 with body {} = %d %s, want 404 (the method's NotFound)", resp.StatusCode, got)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("WithAuth's fn ran %d times, want once", n)
	}
	lines := logLines(t, &logs, "rpc")
	if len(lines) != 1 || lines[0]["principal"] != "alice" {
		t.Errorf("rpc lines %v, want one with principal alice", lines)
	}
}
