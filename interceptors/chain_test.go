package interceptors_test

import (
	"log/slog"
	"testing"

	"connectrpc.com/connect"
	"github.com/connectkit/connectkit/interceptors"
	pingv1 "github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1"
	"github.com/prometheus/client_golang/prometheus"
)

func TestDefaultOptOut(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name           string
		opt            interceptors.Option
		piece          func(*interceptors.Chain) connect.Interceptor
		server, client int
	}{
		{"tracing", interceptors.WithoutTracing(), func(c *interceptors.Chain) connect.Interceptor { return c.Tracing }, 5, 3},
		{"request id", interceptors.WithoutRequestID(), func(c *interceptors.Chain) connect.Interceptor { return c.RequestID }, 5, 3},
		{"logging", interceptors.WithoutLogging(), func(c *interceptors.Chain) connect.Interceptor { return c.Logging }, 5, 3},
		{"metrics", interceptors.WithoutMetrics(), func(c *interceptors.Chain) connect.Interceptor { return c.Metrics }, 5, 3},
		{"recovery", interceptors.WithoutRecovery(), func(c *interceptors.Chain) connect.Interceptor { return c.Recovery }, 5, 4},
		{"validation", interceptors.WithoutValidation(), func(c *interceptors.Chain) connect.Interceptor { return c.Validation }, 5, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			chain, err := interceptors.Default(logger, reg, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			if tc.piece(chain) != nil {
				t.Errorf("%s is in the chain", tc.name)
			}
			if len(chain.Server()) != tc.server || len(chain.Client()) != tc.client {
				t.Errorf("%d server and %d client interceptors, want %d and %d",
					len(chain.Server()), len(chain.Client()), tc.server, tc.client)
			}
			families, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "metrics" && len(families) != 0 {
				t.Errorf("WithoutMetrics registered %d families", len(families))
			}
		})
	}
}

func TestDefaultRegistry(t *testing.T) {
	t.Parallel()
	if _, err := interceptors.Default(nil, nil); err == nil {
		t.Error("Default without a registry: want an error")
	}
	chain, err := interceptors.Default(nil, nil, interceptors.WithoutMetrics())
	if err != nil {
		t.Fatalf("Default without a registry, WithoutMetrics: %v", err)
	}
	if len(chain.Server()) != 5 {
		t.Errorf("%d server interceptors, want 5", len(chain.Server()))
	}
}

// TestDefaultReorder serves through a chain in another order, built from
// the Chain's pieces, with a piece left out.
func TestDefaultReorder(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, serverConfig{interceptors: func(o *observed) []connect.Interceptor {
		c := o.chain
		return []connect.Interceptor{c.Recovery, c.RequestID, c.Logging, c.Metrics}
	}})
	client := s.pingClient(t)
	if _, err := client.Ping(t.Context(), connect.NewRequest(&pingv1.PingRequest{Number: -1})); err != nil {
		t.Fatalf("without validation, want no error: %v", err)
	}
	line := s.server.logs.waitLine(t, map[string]any{"msg": "rpc"})
	if _, ok := line["trace_id"]; ok || line["request_id"] == nil {
		t.Errorf("line %v: want a request id and, without tracing, no trace id", line)
	}
}
