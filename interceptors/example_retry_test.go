package interceptors_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
)

// This example calls a server that answers Unavailable twice, then works:
// Ping is idempotent (option idempotency_level = NO_SIDE_EFFECTS), so Retry
// makes it again, and the third attempt succeeds. Fail is not idempotent,
// and is made once.
func ExampleRetry() {
	svc := &retryService{plan: []*connect.Error{unavailable(), unavailable(), unavailable()}}
	mux := http.NewServeMux()
	mux.Handle(pingv1connect.NewPingServiceHandler(svc))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	retry, err := interceptors.Retry(nil, nil, interceptors.WithRetryBackoff(10*time.Millisecond, 100*time.Millisecond, 2))
	if err != nil {
		panic(err)
	}
	// Put it inside Logging and Metrics (chain.Client()...) and outside
	// a CircuitBreaker, as kit's client chain does.
	client := pingv1connect.NewPingServiceClient(srv.Client(), srv.URL, connect.WithInterceptors(retry))
	_, err = client.Fail(context.Background(), connect.NewRequest(&pingv1.FailRequest{Code: 9}))
	fmt.Printf("Fail: %v after %d attempt\n", connect.CodeOf(err), len(svc.requests()))
	_, err = client.Ping(context.Background(), connect.NewRequest(&pingv1.PingRequest{}))
	fmt.Printf("Ping: %v after %d attempts, sent with %s %q\n", err, len(svc.requests())-1,
		interceptors.PreviousAttemptsHeader, svc.requests()[1:])
	// Output:
	// Fail: unavailable after 1 attempt
	// Ping: <nil> after 3 attempts, sent with Grpc-Previous-Rpc-Attempts ["" "1" "2"]
}
