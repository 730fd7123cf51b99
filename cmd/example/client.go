package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	examplev1 "github.com/connectkit/connectkit/gen/example/v1"
	"github.com/connectkit/connectkit/gen/example/v1/examplev1connect"
	"github.com/connectkit/connectkit/kit"
)

// listTimeout bounds the whole listing: kit's client gives calls no
// deadline of its own.
const listTimeout = 30 * time.Second

// closeTimeout bounds Close at the end of the listing.
const closeTimeout = 5 * time.Second

// runList is `example list`: it lists the profiles of a running example,
// one JSON object a line on stdout, calling it as one service calls
// another, through srv.HTTPClient() and srv.ClientOptions(): the client
// chain (logs, metrics, traces, request ids) and, when the KIT_CLIENT_*
// variables or flags turn them on, retries and the circuit breaker.
// ListProfiles is NO_SIDE_EFFECTS, so KIT_CLIENT_RETRY=on retries it. Its
// log level is warn unless KIT_LOG_LEVEL or -log-level says otherwise, so
// that stderr holds only failures. The server is never run (nothing
// listens): Close ends it, writing its last log lines and spans. The
// usage, and why a command line is refused, go to stderr; a refused one
// fails with errUsage. With EXAMPLE_API_TOKEN set, every call carries it
// as "Authorization: Bearer <token>", for an example whose
// EXAMPLE_API_TOKENS has it: an environment variable rather than a flag,
// so that the token stays out of ps and shell histories.
func runList(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	cfg, err := kit.ConfigFromEnv()
	if err != nil {
		return err
	}
	if os.Getenv("KIT_LOG_LEVEL") == "" {
		cfg.LogLevel = slog.LevelWarn
	}
	fs := flag.NewFlagSet("example list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.RegisterFlags(fs)
	target := fs.String("target", "http://localhost:8080", "base URL of the example to call")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // the usage is printed: exit 0, as `example -help` does
		}
		// flag printed the error and the usage: main prints it no more.
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if err := noArguments(fs); err != nil {
		return err
	}
	// It serves nothing: a service's KIT_ADMIN_* settings, which it may
	// share (kubectl exec into the service's Pod), do not apply.
	cfg.AdminAddr = kit.AdminOff
	srv, err := kit.New(cfg)
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		err = errors.Join(err, srv.Close(ctx))
	}()
	opts := srv.ClientOptions()
	if token := os.Getenv("EXAMPLE_API_TOKEN"); token != "" {
		opts = append(opts, connect.WithInterceptors(bearerToken(token)))
	}
	client := examplev1connect.NewProfileServiceClient(srv.HTTPClient(), *target, opts...)
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	req := &examplev1.ListProfilesRequest{}
	for {
		res, err := client.ListProfiles(ctx, connect.NewRequest(req))
		if err != nil {
			return fmt.Errorf("listing the profiles of %s: %w", *target, err)
		}
		for _, p := range res.Msg.GetProfiles() {
			line, err := protojson.Marshal(p)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
				return err
			}
		}
		if req.PageToken = res.Msg.GetNextPageToken(); req.PageToken == "" {
			return nil
		}
	}
}

// bearerToken is a client interceptor that sends token as a bearer token
// on each unary call. Inside the client chain, it sets the header again on
// each of a call's retries.
func bearerToken(token string) connect.UnaryInterceptorFunc {
	value := "Bearer " + token
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", value)
			return next(ctx, req)
		}
	}
}
