package main

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"buf.build/go/protovalidate"
	"connectrpc.com/authn"
	"connectrpc.com/validate"

	"github.com/connectkit/connectkit/interceptors"
	"github.com/connectkit/connectkit/internal/gen/connectkit/ping/v1/pingv1connect"
	"github.com/connectkit/connectkit/kit"
)

// withoutPiece names the pieces of the default chain that a
// kit-without-PIECE variant leaves out.
var withoutPiece = map[string]func() interceptors.Option{
	"tracing":    interceptors.WithoutTracing,
	"requestid":  interceptors.WithoutRequestID,
	"logging":    interceptors.WithoutLogging,
	"metrics":    interceptors.WithoutMetrics,
	"recovery":   interceptors.WithoutRecovery,
	"validation": interceptors.WithoutValidation,
}

// serveKit serves the ping service on a kit.Server (variants kit,
// kit-otel, kit-native, kit-auth, kit-nochain, kit-nobatch, kit-without-PIECE, kit-pieces,
// kit-own-validator),
// mounted as a user would mount it.
// The log goes to logw in JSON at info, one line per call, as in
// production.
func serveKit(ctx context.Context, f flags, logw io.Writer, ready func(net.Addr)) error {
	if f.variant == "kit-otel" {
		// What an operator sets to have traces ready but record none: the
		// SDK's tracer provider with its batch span processor and OTLP
		// exporter, which otelconnect then drives on every call. The
		// exporter connects to nothing until a span is recorded.
		os.Setenv("OTEL_TRACES_EXPORTER", "otlp")
		os.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	}
	cfg := kit.Config{
		Addr:             f.addr,
		AdminAddr:        kit.AdminOff,
		NoFrameBatching:  f.variant == "kit-nobatch",
		NativeHistograms: f.variant == "kit-native",
	}
	level := new(slog.LevelVar) // info
	opts := []kit.Option{kit.WithLogger(kit.NewLogger(logw, "json", level)), kit.WithLogLevel(level)}
	if f.variant == "kit-nochain" || f.variant == "kit-pieces" {
		opts = append(opts, kit.WithoutDefaultInterceptors())
	}
	if f.variant == "kit-auth" {
		opts = append(opts, kit.WithAuth(benchAuth))
	}
	if f.variant == "kit-own-validator" {
		own, err := protovalidate.New()
		if err != nil {
			return err
		}
		opts = append(opts, kit.WithInterceptorOptions(interceptors.WithValidateOptions(validate.WithValidator(own))))
	}
	if _, piece, cut := strings.Cut(f.variant, "kit-without-"); cut {
		opts = append(opts, kit.WithInterceptorOptions(withoutPiece[piece]()))
	}
	if f.tls {
		cert, err := selfSigned()
		if err != nil {
			return err
		}
		opts = append(opts, kit.WithTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}))
	}
	srv, err := kit.New(cfg, opts...)
	if err != nil {
		return err
	}
	if f.variant == "kit-pieces" {
		var timer pieceTimer
		defer timer.report(os.Stderr)
		if err := mountTimed(srv, &timer); err != nil {
			return err
		}
	} else {
		srv.Mount(pingv1connect.NewPingServiceHandler(pingService{}, srv.HandlerOptions()...))
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	ready(srv.Addr())
	return srv.Run(ctx)
}

// benchCaller is the caller benchAuth lets in.
type benchCaller struct{}

// Principal names the caller in the rpc lines.
func (benchCaller) Principal() string { return "bench" }

// benchAuth lets in the calls with the bearer token "bench", as a service
// with static tokens would (cmd/example's EXAMPLE_API_TOKENS).
func benchAuth(_ context.Context, r *http.Request) (any, error) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(token), []byte("bench")) != 1 {
		return nil, authn.Errorf("missing or unknown bearer token")
	}
	return benchCaller{}, nil
}
